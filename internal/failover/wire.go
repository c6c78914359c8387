package failover

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Message kinds on membership's encrypted channel (16 and 17 are drain
// and resume).
const (
	msgReport    byte = 20 // owner candidate -> leader: my state; renew my lease
	msgVerdict   byte = 21 // leader -> candidate: the record, and a lease if it owns the group
	msgMove      byte = 22 // any node -> leader: clusterctl move
	msgMoveReply byte = 23 // leader -> that node
)

// report is what a node that may own a group tells the leader every
// Timing.Renew. For the owner it is also the lease request: the lease runs
// from the moment the owner sent it (its Seq), so the owner's idea of the
// lease always ends before the leader's.
type report struct {
	Group    string `json:"g"`
	Node     string `json:"n"`
	Seq      uint64 `json:"q"`
	Primary  uint64 `json:"p,omitempty"` // epoch this node is primary for, 0 if none
	Released uint64 `json:"r,omitempty"` // epoch this node gave up (planned move, failed resource)
	Ready    bool   `json:"k,omitempty"` // can take over now
	Leaving  bool   `json:"x,omitempty"` // the agent is stopping (SIGTERM)
	Health   string `json:"h,omitempty"`
	Mode     string `json:"m,omitempty"` // replication mode in force (as primary)
	LagBytes uint64 `json:"l,omitempty"`
	SyncWith string `json:"s,omitempty"` // as primary: the synchronous standby
}

// verdict is the leader's answer to a report.
type verdict struct {
	Group     string `json:"g"`
	Seq       uint64 `json:"q"`
	NotLeader bool   `json:"N,omitempty"`
	Owner     string `json:"o,omitempty"`
	OwnerAddr string `json:"a,omitempty"`
	Epoch     uint64 `json:"e"`
	Target    string `json:"t,omitempty"`
	SyncWith  string `json:"s,omitempty"` // the record's synchronous standby
	LeaseMS   int64  `json:"l,omitempty"` // granted lease, 0 if none
}

type moveRequest struct {
	ID    uint64 `json:"i"`
	From  string `json:"f"`
	Group string `json:"g"`
	Node  string `json:"n"`
}

type moveReply struct {
	ID     uint64 `json:"i"`
	Target string `json:"t"`
	Err    string `json:"e,omitempty"`
}

func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// summary is a group's state as the leader publishes it in its node
// metadata, for every node's status, SNMP and events. It is kept compact
// (metadata is limited to 512 bytes per node).
type summary struct {
	Owner     string
	Epoch     uint64
	State     string
	Repl      string
	Reason    string
	Prev      string
	Failovers uint64
	LagBytes  uint64
	Standby   string
}

func (s summary) String() string {
	return strings.Join([]string{s.Owner, strconv.FormatUint(s.Epoch, 10), s.State, s.Repl, s.Reason, s.Prev,
		strconv.FormatUint(s.Failovers, 10), strconv.FormatUint(s.LagBytes, 10), s.Standby}, "|")
}

func parseSummary(v string) (summary, error) {
	f := strings.Split(v, "|")
	if len(f) != 9 {
		return summary{}, fmt.Errorf("group summary %q: want 9 fields", v)
	}
	var s summary
	var err error
	s.Owner, s.State, s.Repl, s.Reason, s.Prev, s.Standby = f[0], f[2], f[3], f[4], f[5], f[8]
	if s.Epoch, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return summary{}, fmt.Errorf("group summary %q: %w", v, err)
	}
	if s.Failovers, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return summary{}, fmt.Errorf("group summary %q: %w", v, err)
	}
	if s.LagBytes, err = strconv.ParseUint(f[7], 10, 64); err != nil {
		return summary{}, fmt.Errorf("group summary %q: %w", v, err)
	}
	return s, nil
}

// Metadata keys.
const (
	extLeader = "ql" // a voter's view of the quorum: "leader:term"
	extGroup  = "g." // + group name: the leader's summary
)
