// Package heartbeat is cluster membership: who is in the cluster, in what
// state, and over which paths they can be reached.
//
// memberlist does discovery, joins, gossip of metadata and refusing
// conflicting nodes. Failure is decided by a dedicated fast heartbeat
// (prober.go) that every node sends to every other node on every path: its
// timing is deterministic (a node is failed a fixed time after the last
// heartbeat on any path), which memberlist's randomised probing with
// suspicion is not, and it covers the backup path that memberlist, bound to
// one address, cannot see.
package heartbeat

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strings"

	"github.com/hashicorp/memberlist"

	"github.com/clusterd/clusterd/internal/vocab"
)

// State is a member's state, as shown in status and SNMP.
type State int

// Member states. Their String values are the wire names of SPEC.md.
const (
	StateJoining State = iota
	StateActive
	StateDraining
	StateDrained
	StateFailed
	StateLeft
)

// stateNames: vocab's names, in the order of the constants above.
var stateNames = vocab.MemberStates

func (s State) String() string {
	if int(s) < len(stateNames) {
		return string(stateNames[s])
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState reads a wire name.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if string(n) == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown member state %q", s)
}

// MarshalText writes the wire name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the wire name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Down reports whether the state is failed or left.
func (s State) Down() bool { return s == StateFailed || s == StateLeft }

// Meta is what a node tells the others about itself. It rides in
// memberlist's node metadata (limit 512 bytes) and in every fast heartbeat,
// so it stays current even when memberlist's own path is cut.
type Meta struct {
	Priority  int               `json:"p"`
	State     State             `json:"s"`
	Healthy   bool              `json:"h"`
	Backup    string            `json:"b,omitempty"` // backup-path address
	ProbePort int               `json:"pp"`          // fast heartbeat port
	Boot      int64             `json:"bt"`          // start time (unix ns): tells a restart apart
	Config    map[string]string `json:"c,omitempty"` // hashes of shared config sections
	Ext       map[string]string `json:"x,omitempty"` // other components' small state (drain counts, generation)
	// Version is the build's version (status, rolling upgrades); Proto the
	// cluster protocol it speaks (ProtocolVersion). A release before
	// these fields sends neither: protocol 1.
	Version string `json:"ver,omitempty"`
	Proto   int    `json:"pv,omitempty"`
}

// ProtocolVersion is the cluster protocol this build speaks: the heartbeat
// and metadata formats, the failover messages. A change that an older
// node would misread raises it. Nodes whose protocols differ by one
// interoperate (a rolling upgrade has both for a while); a node two or
// more apart is refused, with the reason on both sides.
//
// 3: datagram messages on the heartbeat sockets (Datagram; a member of 2
// gets the failover tier's messages over memberlist as before), watchers'
// verdicts in heartbeats (a member of 2 ignores them and times members out
// by itself).
//
// 4: heartbeats name the members their sender does not hear (reach.go); a
// member of 3 ignores the lists, and its silence about a member is not
// taken for hearing it.
const ProtocolVersion = 4

// DatagramProto is the first protocol whose members take Datagram messages.
const DatagramProto = 3

// TimedSwitchProto is the first protocol whose members switch planned
// bucket hand-overs by the kernel's clock (internal/vip).
const TimedSwitchProto = 3

// MaxVersionLen bounds the version string in the metadata (a longer one
// from ldflags is cut): it counts against memberlist's 512 bytes.
const MaxVersionLen = 48

// proto is the protocol a member's metadata says it speaks.
func (m Meta) proto() int {
	if m.Proto == 0 {
		return 1 // releases before the field
	}
	return m.Proto
}

// protocolClash says why a member speaking protocol p cannot be in a
// cluster with this node, or "".
func protocolClash(name string, p int) string {
	switch {
	case p < ProtocolVersion-1:
		return fmt.Sprintf("%s speaks cluster protocol %d, too old for this node's %d (it accepts %d..%d): upgrade %s", name, p, ProtocolVersion, ProtocolVersion-1, ProtocolVersion+1, name)
	case p > ProtocolVersion+1:
		return fmt.Sprintf("%s speaks cluster protocol %d, too new for this node's %d (it accepts %d..%d): upgrade this node first, one release at a time", name, p, ProtocolVersion, ProtocolVersion-1, ProtocolVersion+1)
	}
	return ""
}

func (m Meta) clone() Meta {
	m.Config = maps.Clone(m.Config)
	m.Ext = maps.Clone(m.Ext)
	return m
}

func (m Meta) encode() ([]byte, error) { return json.Marshal(m) }

// MetaLimit is how much node metadata memberlist carries: a node whose
// metadata is larger is not accepted by its peers.
const MetaLimit = memberlist.MetaMaxSize

// WorstMetaSize is the encoded size of the largest metadata a node
// announces with these settings, shared-config hashes and the other parts'
// largest values (ext): the longest state name and a full boot time.
func WorstMetaSize(priority int, backup string, probePort int, shared, ext map[string]string) int {
	b, _ := Meta{Priority: priority, State: StateDraining, Healthy: true, Backup: backup, ProbePort: probePort,
		Boot: math.MaxInt64, Config: shared, Ext: ext, Version: strings.Repeat("v", MaxVersionLen), Proto: 99}.encode()
	return len(b)
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("empty node metadata")
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

// mismatch lists the shared config sections in which a and b differ; a
// section in optional may be absent on one side (that node takes no part).
func mismatch(a, b map[string]string, optional map[string]bool) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; ok && w != v || !ok && !optional[k] {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && !optional[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
