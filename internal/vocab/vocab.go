// Package vocab is clusterd's vocabulary, in one place: the event types
// (and which of them are SNMP notifications), member and group states, the
// kinds of message on the cluster channel, and the keys of the metadata
// each member publishes. Every other package names these through the
// constants here, never as repeated strings. It is a leaf: it imports no
// other clusterd package.
package vocab

// EventType names an event: the "type" of `clusterctl events --json`,
// SPEC.md's event types.
type EventType string

// Event types.
const (
	NodeJoined     EventType = "node_joined"
	NodeFailed     EventType = "node_failed"
	NodeLeft       EventType = "node_left"
	NodeDraining   EventType = "node_draining"
	NodeDrained    EventType = "node_drained"
	NodeResumed    EventType = "node_resumed"
	NodeUnhealthy  EventType = "node_unhealthy"
	NodeHealthy    EventType = "node_healthy"
	ConfigMismatch EventType = "config_mismatch"
	Converged      EventType = "converged"
	GroupFailover  EventType = "group_failover"
	QuorumLost     EventType = "quorum_lost"
	QuorumRegained EventType = "quorum_regained"
	Operator       EventType = "operator"
	NodeRefused    EventType = "node_refused"
	PathDown       EventType = "path_down"
	PathUp         EventType = "path_up"
	// A member (or this node) left out of the cluster by agreement: it and
	// another live member cannot hear each other (a one-way fault).
	NodeUnreachable EventType = "node_unreachable"
	NodeReachable   EventType = "node_reachable"
)

// Events lists every event type, in the MIB's order, then the ones that
// are not notifications.
var Events = []EventType{NodeJoined, NodeFailed, NodeLeft, NodeDraining, NodeDrained, NodeResumed,
	NodeUnhealthy, NodeHealthy, ConfigMismatch, Converged, GroupFailover, QuorumLost, QuorumRegained,
	Operator, NodeUnreachable, NodeReachable, NodeRefused, PathDown, PathUp}

// Notification is the number of each trapped event type's notification
// in CLUSTERD-MIB (cdNotifications.N).
var Notification = map[EventType]int{
	NodeJoined: 1, NodeFailed: 2, NodeLeft: 3, NodeDraining: 4, NodeDrained: 5, NodeResumed: 6,
	NodeUnhealthy: 7, NodeHealthy: 8, ConfigMismatch: 9, Converged: 10, GroupFailover: 11,
	QuorumLost: 12, QuorumRegained: 13, Operator: 14, NodeUnreachable: 15, NodeReachable: 16,
}

// NotTrapped are the event types that are not sent as SNMP notifications,
// and why. They never enter the trap queue.
var NotTrapped = map[EventType]string{
	NodeRefused: "a stranger's (or a misconfigured node's) packets: a flood of them must not become a trap storm; counted in status and logged",
	PathDown:    "one heartbeat path of several: the member is still reachable; status, metrics (clusterd_member_path_up) and the member table show it",
	PathUp:      "the counterpart of path_down",
}

// Trapped reports whether events of type t are SNMP notifications.
func Trapped(t EventType) bool {
	_, ok := Notification[t]
	return ok
}

// MemberState is a member's state, as status, the MIB and metrics name it.
type MemberState string

// Member states.
const (
	Joining  MemberState = "joining"
	Active   MemberState = "active"
	Draining MemberState = "draining"
	Drained  MemberState = "drained"
	Failed   MemberState = "failed"
	Left     MemberState = "left"
)

// MemberStates in the MIB's order (cdMemberState 1..6).
var MemberStates = []MemberState{Joining, Active, Draining, Drained, Failed, Left}

// GroupState is a failover group's state.
type GroupState string

// Group states.
const (
	GroupOnline      GroupState = "online"
	GroupFailingOver GroupState = "failing_over"
	GroupOffline     GroupState = "offline"
	GroupDegraded    GroupState = "degraded"
)

// GroupStates in the MIB's order (cdGroupState 1..4).
var GroupStates = []GroupState{GroupOnline, GroupFailingOver, GroupOffline, GroupDegraded}

// MsgKind is the first byte of a message on the cluster channel
// (memberlist's user messages, encrypted with the cluster key): it says
// which component the message is for.
type MsgKind byte

// Message kinds. Values are part of the wire protocol: never reuse one.
const (
	MsgForget    MsgKind = 1  // clusterctl forget: drop a failed member everywhere
	MsgDrain     MsgKind = 16 // clusterctl drain of another node
	MsgResume    MsgKind = 17 // clusterctl resume of another node
	MsgReport    MsgKind = 20 // group owner candidate -> quorum leader: my state; renew my lease
	MsgVerdict   MsgKind = 21 // leader -> candidate: the record, and a lease if it owns the group
	MsgMove      MsgKind = 22 // any node -> leader: clusterctl move
	MsgMoveReply MsgKind = 23 // leader -> that node
)

// MsgKinds lists every message kind.
var MsgKinds = []MsgKind{MsgForget, MsgDrain, MsgResume, MsgReport, MsgVerdict, MsgMove, MsgMoveReply}

// Metadata keys: each member publishes a small map of component state in
// its heartbeat metadata (heartbeat.Meta.Ext). Keys are short because the
// metadata travels in every heartbeat.
const (
	ExtRules     = "lb" // NLB: per VIP ";", per rule ",": "weight/handling_priority"
	ExtHealth    = "hl" // NLB: per VIP '1' healthy, '0' not
	ExtInputs    = "tb" // NLB: hash of the convergence inputs; equal on all nodes = converged
	ExtConns     = "cn" // NLB: established connections while draining
	ExtSwitch    = "hs" // NLB: a planned switch's instant (unix ms)
	ExtLeader    = "ql" // failover: a voter's view of the quorum, "leader:term"
	ExtGroup     = "G." // failover, + group name: the leader's group summary (compact)
	ExtGroupText = "g." // failover, + group name: the summary as protocol 1 reads it
)

// ExtKeys lists the metadata keys (the two group keys are prefixes).
var ExtKeys = []string{ExtRules, ExtHealth, ExtInputs, ExtConns, ExtSwitch, ExtLeader, ExtGroup, ExtGroupText}
