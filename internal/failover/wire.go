package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/vocab"
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
	// Cooling: could take over but for the cool-down after its resource
	// failed; taken only when no owner is Ready (a leader of an earlier
	// release ignores it and waits, as it did).
	Cooling  bool   `json:"c,omitempty"`
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
	Stale     bool   `json:"x,omitempty"` // the report was older than one already taken: ignore
	Owner     string `json:"o,omitempty"`
	OwnerAddr string `json:"a,omitempty"`
	Epoch     uint64 `json:"e"`
	Target    string `json:"t,omitempty"`
	SyncWith  string `json:"s,omitempty"` // the record's synchronous standby
	LeaseMS   int64  `json:"l,omitempty"` // granted lease, 0 if none
	// Ask: not an answer but the leader's call to a node it has just
	// appointed owner, to report at once instead of at its next Renew
	// (up to 200 ms of the failover). It grants nothing: the lease comes
	// with the answer to that report. An agent of an earlier release
	// drops it (no report of its has Seq 0) and reports on its tick.
	Ask bool `json:"A,omitempty"`
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
	// Retry: Err is the quorum's passing state (a leadership transfer or
	// an election under way), not an answer about the move. Absent from
	// an older leader's reply: then no retry, as before.
	Retry bool `json:"r,omitempty"`
}

func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// summary is a group's state as the leader publishes it in its node
// metadata, for every node's status, SNMP and events. Metadata is limited
// to 512 bytes per node and the leader carries every group's summary, so
// it is written compactly: node names as their index in the group's
// owners, the fixed words (state, replication, reason) as one letter.
type summary struct {
	Owner     string
	Epoch     uint64
	State     vocab.GroupState
	Repl      string
	Reason    string
	Prev      string
	Failovers uint64
	LagBytes  uint64
	Standby   string
}

// Letters of the fixed words. A word without a letter (a newer version's)
// is written whole after "=", as is a node that is not an owner.
var (
	stateCodes  = codes{string(vocab.GroupOnline): "o", string(vocab.GroupDegraded): "d", string(vocab.GroupFailingOver): "f", string(vocab.GroupOffline): "x"}
	replCodes   = codes{"none": "n", "async": "a", "sync": "s"}
	reasonCodes = codes{reasonPlaced: "p", reasonFailed: "f", reasonLease: "l", reasonResource: "r", reasonLeft: "t",
		reasonMove: "m", reasonFailback: "b", reasonNoTarget: "n"}
)

type codes map[string]string

func (c codes) enc(w string) string {
	if w == "" {
		return ""
	}
	if l, ok := c[w]; ok {
		return l
	}
	return "=" + w
}

func (c codes) dec(l string) (string, error) {
	if l == "" {
		return "", nil
	}
	if w, ok := strings.CutPrefix(l, "="); ok {
		return w, nil
	}
	for w, x := range c {
		if x == l {
			return w, nil
		}
	}
	return "", fmt.Errorf("unknown code %q", l)
}

func encNode(owners []string, n string) string {
	if n == "" {
		return ""
	}
	if i := slices.Index(owners, n); i >= 0 {
		return strconv.Itoa(i)
	}
	return "=" + n
}

func decNode(owners []string, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if n, ok := strings.CutPrefix(v, "="); ok {
		return n, nil
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 || i >= len(owners) || strconv.Itoa(i) != v {
		return "", fmt.Errorf("no owner %q", v)
	}
	return owners[i], nil
}

// encode writes s for a group with these owners.
func (s summary) encode(owners []string) string {
	return strings.Join([]string{encNode(owners, s.Owner), strconv.FormatUint(s.Epoch, 10), stateCodes.enc(string(s.State)),
		replCodes.enc(s.Repl), reasonCodes.enc(s.Reason), encNode(owners, s.Prev),
		strconv.FormatUint(s.Failovers, 10), strconv.FormatUint(s.LagBytes, 10), encNode(owners, s.Standby)}, "|")
}

// parseSummary reads a summary of a group with these owners.
func parseSummary(v string, owners []string) (summary, error) {
	f := strings.Split(v, "|")
	if len(f) != 9 {
		return summary{}, fmt.Errorf("group summary %q: want 9 fields", v)
	}
	var s summary
	var errs [9]error
	s.Owner, errs[0] = decNode(owners, f[0])
	s.Epoch, errs[1] = strconv.ParseUint(f[1], 10, 64)
	var st string
	st, errs[2] = stateCodes.dec(f[2])
	s.State = vocab.GroupState(st)
	s.Repl, errs[3] = replCodes.dec(f[3])
	s.Reason, errs[4] = reasonCodes.dec(f[4])
	s.Prev, errs[5] = decNode(owners, f[5])
	s.Failovers, errs[6] = strconv.ParseUint(f[6], 10, 64)
	s.LagBytes, errs[7] = strconv.ParseUint(f[7], 10, 64)
	s.Standby, errs[8] = decNode(owners, f[8])
	if err := errors.Join(errs[:]...); err != nil {
		return summary{}, fmt.Errorf("group summary %q: %w", v, err)
	}
	return s, nil
}

// WorstExt is the largest metadata this node's failover part can announce
// under cfg (a voter that leads: the quorum view and every group's
// summary), for the metadata budget check.
func WorstExt(cfg *config.Config) map[string]string {
	out := map[string]string{}
	if cfg.Quorum == nil || !slices.Contains(cfg.Quorum.Voters, cfg.Node.Name) {
		return out
	}
	longest := func(names []string) string {
		l := ""
		for _, n := range names {
			if len(n) > len(l) {
				l = n
			}
		}
		return l
	}
	// Counters at ten digits (four billion failovers), lag at 13 (9 TB).
	const big, lag = 9_999_999_999, 9_999_999_999_999
	out[extLeader] = longest(cfg.Quorum.Voters) + ":" + strconv.FormatUint(big, 10)
	for _, g := range cfg.Failover.Groups {
		o := longest(g.Owners)
		out[extGroup+g.Name] = summary{Owner: o, Epoch: big, State: vocab.GroupFailingOver, Repl: "async",
			Reason: reasonResource, Prev: o, Failovers: big, LagBytes: lag, Standby: o}.encode(g.Owners)
	}
	return out
}

// Metadata keys.
const (
	extLeader = vocab.ExtLeader // a voter's view of the quorum: "leader:term"
	extGroup  = vocab.ExtGroup  // + group name: the leader's summary (compact)
	// extGroupWords: the summary as protocol 1 (the release before the
	// compact form) writes and reads it, node names and words in full. A
	// leader publishes it instead of the compact one while a member of
	// that release is in the cluster (a rolling upgrade), and reads it
	// from such a leader.
	extGroupWords = vocab.ExtGroupText
)

// words writes s as protocol 1 does.
func (s summary) words() string {
	return strings.Join([]string{s.Owner, strconv.FormatUint(s.Epoch, 10), string(s.State), s.Repl, s.Reason, s.Prev,
		strconv.FormatUint(s.Failovers, 10), strconv.FormatUint(s.LagBytes, 10), s.Standby}, "|")
}

// parseWords reads a summary that protocol 1 wrote.
func parseWords(v string) (summary, error) {
	f := strings.Split(v, "|")
	if len(f) != 9 {
		return summary{}, fmt.Errorf("group summary %q: want 9 fields", v)
	}
	s := summary{Owner: f[0], State: vocab.GroupState(f[2]), Repl: f[3], Reason: f[4], Prev: f[5], Standby: f[8]}
	var errs [3]error
	s.Epoch, errs[0] = strconv.ParseUint(f[1], 10, 64)
	s.Failovers, errs[1] = strconv.ParseUint(f[6], 10, 64)
	s.LagBytes, errs[2] = strconv.ParseUint(f[7], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return summary{}, fmt.Errorf("group summary %q: %w", v, err)
	}
	return s, nil
}

// leaderSummary reads group g's summary from the leader's metadata, in
// whichever form it wrote it.
func leaderSummary(ext map[string]string, g config.GroupConfig) (summary, bool) {
	if v := ext[extGroup+g.Name]; v != "" {
		s, err := parseSummary(v, g.Owners)
		return s, err == nil
	}
	if v := ext[extGroupWords+g.Name]; v != "" {
		s, err := parseWords(v)
		return s, err == nil
	}
	return summary{}, false
}
