package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/hashicorp/raft"
)

// Record is the quorum's word on one group: who owns it, under which
// epoch, and whether a planned move is under way. Every change of owner
// bumps the epoch, so "primary of epoch N" names one activation of the
// resource on one node, and a lease names the epoch it covers.
type Record struct {
	Owner  string `json:"owner,omitempty"`
	Epoch  uint64 `json:"epoch"`
	Target string `json:"target,omitempty"` // planned move: the node taking over
	Prev   string `json:"prev,omitempty"`   // the owner before the last change
	Reason string `json:"reason,omitempty"` // why the last change happened
	// Failovers counts owner changes (the MIB's group failover counter).
	Failovers uint64 `json:"failovers"`
	// SyncWith is the standby that holds every commit the owner has
	// acknowledged ("" when the owner runs without a synchronous standby):
	// the only node a replicated group may fail over to automatically.
	SyncWith string `json:"sync_with,omitempty"`
}

// command is one entry of the replicated log: a compare-and-set of a
// group's record, refused when the epoch moved on since it was read.
type command struct {
	Group  string `json:"group"`
	Expect uint64 `json:"expect"` // epoch the writer read
	Record Record `json:"record"`
}

// errStale is a compare-and-set that lost to another change.
var errStale = errors.New("group record changed meanwhile")

// fsm is the replicated state: a record per group.
type fsm struct {
	mu     sync.RWMutex
	groups map[string]Record
	notify func() // called after every applied change
}

func newFSM() *fsm { return &fsm{groups: map[string]Record{}} }

// Apply runs on every voter for every committed entry, in log order.
func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("decoding quorum log entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	cur := f.groups[c.Group]
	if cur.Epoch != c.Expect {
		f.mu.Unlock()
		return errStale
	}
	f.groups[c.Group] = c.Record
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify()
	}
	return nil
}

func (f *fsm) get(group string) Record {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.groups[group]
}

func (f *fsm) all() map[string]Record {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.groups)
}

// Snapshot captures the state; raft writes it out and truncates the log.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot(f.all()), nil
}

// Restore replaces the state with a snapshot (on start and when a
// follower falls too far behind).
func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	g := map[string]Record{}
	if err := json.NewDecoder(r).Decode(&g); err != nil {
		return fmt.Errorf("reading quorum snapshot: %w", err)
	}
	f.mu.Lock()
	f.groups = g
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify()
	}
	return nil
}

type snapshot map[string]Record

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(map[string]Record(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
