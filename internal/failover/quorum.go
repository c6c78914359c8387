package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// QuorumOptions configure this node's vote.
type QuorumOptions struct {
	Name   string
	Voters []string
	Bind   string // heartbeat.bind: the quorum listens here
	Port   int
	Dir    string // persistent raft log and snapshots
	Keys   [][]byte
	// Resolve gives a voter's heartbeat address; voters are named in the
	// config and their addresses come from membership.
	Resolve func(name string) (string, bool)
	Timing  Timing
	Logger  *slog.Logger
}

// Quorum is this node's raft voter. Raft gives the group records a single
// writer (the leader), a majority behind every change, and persistence
// across restarts; hashicorp/raft is the implementation Consul and Nomad
// run in production.
type Quorum struct {
	name   string
	voters []string
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	stream *tlsStream
	trans  *raft.NetworkTransport
	store  *raftboltdb.BoltStore

	t Timing

	mu          sync.Mutex
	leaderSince time.Time // when this node last became leader; zero if it is not
	hurried     bool      // raft's timeouts are cut (hurry)

	closeOnce sync.Once
}

// addrProvider resolves a voter's name to its quorum address at dial time,
// so the raft configuration holds names and a voter that moves to another
// address (a re-IPed node) is still reached.
type addrProvider struct {
	resolve func(string) (string, bool)
	port    int
}

func (p addrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	a, ok := p.resolve(string(id))
	if !ok {
		return "", fmt.Errorf("no address known yet for voter %q (not a member)", id)
	}
	return raft.ServerAddress(net.JoinHostPort(a, strconv.Itoa(p.port))), nil
}

// NewQuorum opens (or creates) this voter's state and starts raft. A voter
// with no state bootstraps the configured voter set; every voter doing the
// same with the same set is what raft documents as safe.
func NewQuorum(o QuorumOptions) (*Quorum, error) {
	if !slices.Contains(o.Voters, o.Name) {
		return nil, fmt.Errorf("%s is not one of quorum.voters", o.Name)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the quorum directory: %w", err)
	}
	q := &Quorum{name: o.Name, voters: o.Voters, log: o.Logger, fsm: newFSM(), t: o.Timing}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: newHclogWriter(o.Logger)})

	l, err := net.Listen("tcp", net.JoinHostPort(o.Bind, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("opening the quorum port: %w", err)
	}
	q.stream, err = newTLSStream(l, o.Keys)
	if err != nil {
		l.Close()
		return nil, err
	}
	q.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addrProvider{resolve: o.Resolve, port: o.Port},
		Logger:                hl,
		Stream:                q.stream,
		MaxPool:               3,
		Timeout:               2 * time.Second,
	})
	q.store, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(o.Dir, "raft.db"),
		// bbolt waits forever for a lock held by another process; a
		// second agent on the same state_dir should fail, and say so.
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		q.trans.Close()
		return nil, fmt.Errorf("opening %s (is another clusterd using this state_dir?): %w", filepath.Join(o.Dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(o.Dir, 2, hl)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("opening quorum snapshots: %w", err)
	}
	logs, err := raft.NewLogCache(256, q.store)
	if err != nil {
		q.close()
		return nil, err
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(o.Name)
	conf.Logger = hl
	conf.HeartbeatTimeout = o.Timing.Election
	conf.ElectionTimeout = o.Timing.Election
	conf.LeaderLeaseTimeout = o.Timing.LeaderLease
	conf.CommitTimeout = 20 * time.Millisecond
	// Records are tiny and change rarely: snapshot seldom, keep a short
	// tail of log for followers that were briefly away.
	conf.SnapshotThreshold = 512
	conf.TrailingLogs = 1024

	has, err := raft.HasExistingState(logs, q.store, snaps)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("reading quorum state: %w", err)
	}
	if !has {
		var servers []raft.Server
		for _, v := range o.Voters {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
		}
		if err := raft.BootstrapCluster(conf, logs, q.store, snaps, q.trans, raft.Configuration{Servers: servers}); err != nil {
			q.close()
			return nil, fmt.Errorf("bootstrapping the quorum: %w", err)
		}
	}
	q.raft, err = raft.NewRaft(conf, q.fsm, logs, q.store, snaps, q.trans)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("starting the quorum: %w", err)
	}
	return q, nil
}

func (q *Quorum) close() {
	if q.trans != nil {
		q.trans.Close()
	}
	if q.store != nil {
		q.store.Close()
	}
}

// Close stops voting. Idempotent. A leader first hands leadership to
// another voter (bounded by transferWait): a planned stop of the leader
// then costs no election, during which no lease could be renewed.
func (q *Quorum) Close() error {
	var err error
	q.closeOnce.Do(func() {
		if q.raft != nil {
			if q.raft.State() == raft.Leader {
				f := q.raft.LeadershipTransfer()
				done := make(chan struct{})
				go func() { defer close(done); f.Error() }()
				select {
				case <-done:
				case <-time.After(transferWait):
				}
				defer func() { <-done }() // the future ends with Shutdown at the latest
			}
			if e := q.raft.Shutdown().Error(); e != nil {
				err = fmt.Errorf("stopping the quorum: %w", e)
			}
		}
		q.close()
	})
	return err
}

// transferWait bounds the leadership hand-over at a stop: a few election
// timeouts.
const transferWait = 2 * time.Second

// SetKeys installs rotated cluster keys for new quorum connections.
func (q *Quorum) SetKeys(keys [][]byte) error { return q.stream.setKeys(keys) }

// Leader is the current leader's name as this voter knows it, and the
// term it leads in; "" when there is none (no majority, or an election).
func (q *Quorum) Leader() (string, uint64) {
	_, id := q.raft.LeaderWithID()
	return string(id), q.raft.CurrentTerm()
}

// leading reports whether this node leads, and since when. The time is
// taken the first time a caller sees leadership, which is at or after the
// real moment: waiting from it is never shorter than waiting from the
// real one, which is the direction the lease arithmetic needs.
func (q *Quorum) leading() (bool, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.raft.State() != raft.Leader {
		q.leaderSince = time.Time{}
		return false, time.Time{}
	}
	if q.leaderSince.IsZero() {
		q.leaderSince = time.Now()
	}
	return true, q.leaderSince
}

// hurry cuts raft's heartbeat and election timeouts to LeaderLease (the
// least raft allows) while on, and puts them back when off. Raft notices
// a dead leader only when its randomised heartbeat timer fires after a
// full timeout without contact: 1–3 timeouts after the last one (0.8–1.2 s
// measured with 500 ms), which outlasts an owner's lease (0.9 s less a
// Renew): the death of a witness that led the quorum cost the database
// its primary for 2.7 s. Membership fails the leader's node sooner
// (~0.4 s); with the timeout cut, raft's timer fires at once, finds the
// leader silent for longer than the new timeout and starts the election.
// Safety is raft's: only when an election starts changes.
func (q *Quorum) hurry(on bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hurried == on {
		return
	}
	rc := q.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = q.t.Election, q.t.Election
	if on {
		rc.HeartbeatTimeout, rc.ElectionTimeout = q.t.LeaderLease, q.t.LeaderLease
	}
	if err := q.raft.ReloadConfig(rc); err != nil {
		q.log.Warn("changing the quorum's election timeouts", slog.Bool("hurry", on), slog.Any("error", err))
		return
	}
	q.hurried = on
	if on {
		q.log.Info("the quorum leader's node failed: starting an election now")
	}
}

// hurryRank is how many loop ticks after membership failed the leader's
// node this voter starts an election (hurry), or -1 if it should not:
// the leader is alive (by membership), unknown, or this node. Voters go
// one tick apart, in name order, so that they do not all stand at once
// and split the vote: the first ones' pre-votes are refused by voters that
// still follow the dead leader, and a later one's pre-vote is granted by
// the earlier ones (which no longer follow anybody) and it wins.
func hurryRank(self, leader string, voters []string, down func(string) bool) int {
	if leader == "" || leader == self || !down(leader) {
		return -1
	}
	rank := 0
	for _, v := range voters {
		if v != leader && v < self && !down(v) {
			rank++
		}
	}
	return rank
}

// errNotLeader is a write tried on a voter that does not lead.
var errNotLeader = errors.New("this node does not lead the quorum")

// set commits a group record if its epoch is still expect.
func (q *Quorum) set(group string, expect uint64, r Record) error {
	if q.raft.State() != raft.Leader {
		return errNotLeader
	}
	b, err := json.Marshal(command{Group: group, Expect: expect, Record: r})
	if err != nil {
		return err
	}
	f := q.raft.Apply(b, 2*time.Second)
	if err := f.Error(); err != nil {
		return fmt.Errorf("committing group %s: %w", group, err)
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// barrier waits until this leader has applied everything committed before
// it took over, so its reads of the records are current.
func (q *Quorum) barrier() error { return q.raft.Barrier(2 * time.Second).Error() }
