// Package api holds the control endpoint's wire types, shared by clusterd
// and clusterctl, and the typed client. It imports no other clusterd
// package but the vocabulary (internal/vocab).
package api

import (
	"encoding/json"
	"time"

	"github.com/clusterd/clusterd/internal/vocab"
)

// Version prefixes every route; a breaking change gets /v2.
const Version = "v1"

// Status is `clusterctl status --json`, exactly as SPEC.md shows it, plus
// fields operators need (paths, mismatches, problems).
type Status struct {
	Cluster   string         `json:"cluster"`
	Node      string         `json:"node"`
	Converged bool           `json:"converged"`
	Members   []Member       `json:"members"`
	VIPs      []VIP          `json:"vips"`
	Groups    []Group        `json:"groups"`
	Quorum    *Quorum        `json:"quorum,omitempty"`
	Problems  []string       `json:"problems"`
	Heartbeat HeartbeatStats `json:"heartbeat"`
}

// Member is one cluster member.
type Member struct {
	Name     string            `json:"name"`
	Priority int               `json:"priority"`
	Address  string            `json:"address"`
	State    vocab.MemberState `json:"state"`
	Healthy  bool              `json:"healthy"`
	Buckets  int               `json:"buckets"`
	// Paths: heartbeat path name -> reachable ("private", "backup").
	Paths          map[string]bool `json:"paths"`
	ConfigMismatch []string        `json:"config_mismatch"`
	Connections    int             `json:"connections"` // established connections (reported while draining)
	Since          time.Time       `json:"since"`
	StateChanges   uint64          `json:"state_changes"`
	Self           bool            `json:"self,omitempty"`
	// Added to SPEC's fields: the member's build and the cluster protocol
	// it speaks (a rolling upgrade shows two versions for a while; a
	// release before these fields shows "" and protocol 1).
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	// Reachability (added to SPEC's fields): Unheard, this node hears
	// nothing from the member but another member does, so it stays; Cut,
	// it and another live member cannot hear each other and it is left
	// out (it takes no new flows), the same one on every node.
	Unheard bool `json:"unheard,omitempty"`
	Cut     bool `json:"cut,omitempty"`
}

// VIP is one load-balanced virtual IP.
type VIP struct {
	Address         string `json:"address"`
	Mode            string `json:"mode"`
	MAC             string `json:"mac"`
	Generation      uint64 `json:"generation"`
	PacketsAccepted uint64 `json:"packets_accepted"`
	PacketsDropped  uint64 `json:"packets_dropped"`
	Rules           []Rule `json:"rules"`
}

// Rule is one port rule's bucket ownership.
type Rule struct {
	Ports        string         `json:"ports"`
	Protocol     string         `json:"protocol"`
	BucketsTotal int            `json:"buckets_total"`
	Owners       map[string]int `json:"owners"`
	// Added to SPEC's fields: the buckets that changed owner at the
	// rule's last table change, and when ("" from or to: nobody).
	LastMoves []BucketMove `json:"last_moves,omitempty"`
	MovedAt   *time.Time   `json:"moved_at,omitempty"`
}

// BucketMove is a number of buckets that went from one owner to another.
type BucketMove struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Buckets int    `json:"buckets"`
}

// Group is one failover group.
type Group struct {
	Name        string           `json:"name"`
	Owner       string           `json:"owner"`
	State       vocab.GroupState `json:"state"`
	VIP         string           `json:"vip"`
	Replication string           `json:"replication"`
	// Added to SPEC's fields: the lease epoch (bumps on every owner
	// change), owner changes so far, the standby's replication lag, and
	// why the owner last changed.
	Epoch     uint64 `json:"epoch"`
	Failovers uint64 `json:"failovers"`
	LagBytes  uint64 `json:"lag_bytes"`
	Reason    string `json:"reason,omitempty"`
	Standby   string `json:"standby,omitempty"`
}

// Quorum is the voters' state.
type Quorum struct {
	Voters    int    `json:"voters"`
	Alive     int    `json:"alive"`
	HasQuorum bool   `json:"has_quorum"`
	Leader    string `json:"leader"`
}

// HeartbeatStats counts fast-heartbeat packets on this node.
type HeartbeatStats struct {
	Profile  string `json:"profile"`
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
	// Stale: authentic heartbeats that were not fresh (replayed,
	// duplicated, of an earlier incarnation) and were dropped.
	Stale uint64 `json:"stale"`
	// Unsent: heartbeats this node could not send (a peer unreachable, a
	// path whose socket stayed full for a whole interval).
	Unsent uint64 `json:"unsent"`
}

// Event is one entry of the event log; its JSON form is SPEC.md's
// {"time", "type", "node", "detail"} with an RFC 3339 time that always
// carries a fraction.
type Event struct {
	Time   time.Time       `json:"time"`
	Type   vocab.EventType `json:"type"`
	Node   string          `json:"node"`
	Detail string          `json:"detail"`
	// group_failover only: the group and its previous owner (Node is the
	// new one), so traps and scripts need not parse Detail.
	Group string `json:"group,omitempty"`
	From  string `json:"from,omitempty"`
}

// TimeFormat is RFC 3339 with a fixed microsecond fraction.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// MarshalJSON writes the time with its fraction even when it is zero.
func (e Event) MarshalJSON() ([]byte, error) {
	type wire struct {
		Time   string          `json:"time"`
		Type   vocab.EventType `json:"type"`
		Node   string          `json:"node"`
		Detail string          `json:"detail"`
		Group  string          `json:"group,omitempty"`
		From   string          `json:"from,omitempty"`
	}
	return json.Marshal(wire{e.Time.Format(TimeFormat), e.Type, e.Node, e.Detail, e.Group, e.From})
}

// DrainRequest asks a node to take no new flows.
type DrainRequest struct {
	Node    string `json:"node"`              // "" = the agent's own node
	Rule    string `json:"rule,omitempty"`    // only this rule's ports
	Timeout string `json:"timeout,omitempty"` // server-side: drained after this long even with connections left
}

// MoveRequest asks for a planned switchover of a failover group.
type MoveRequest struct {
	Group string `json:"group"`
	Node  string `json:"node,omitempty"` // "" = the next preferred owner that is ready
}

// MoveResponse names the node taking the group over.
type MoveResponse struct {
	Target string `json:"target"`
}

// NodeRequest names a node ("" = the agent's own).
type NodeRequest struct {
	Node string `json:"node"`
}

// OwnerRequest asks which node serves a flow.
type OwnerRequest struct {
	VIP    string `json:"vip"`    // VIP:PORT
	Client string `json:"client"` // CLIENT_IP:CLIENT_PORT
	Proto  string `json:"proto"`  // tcp | udp
}

// OwnerResponse explains which bucket and node serve a flow.
type OwnerResponse struct {
	Rule      string `json:"rule"`
	Filtering string `json:"filtering,omitempty"`
	Affinity  string `json:"affinity,omitempty"`
	Bucket    int    `json:"bucket"`
	Node      string `json:"node"`
	Note      string `json:"note,omitempty"`
}

// ForgetRequest asks the agent to forget a failed or left member.
type ForgetRequest struct {
	Node string `json:"node"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}
