package heartbeat

import (
	"fmt"
	"time"
)

// Profile is the timing of the fast heartbeat.
//
// Every node sends a heartbeat to every other node on every path each
// Interval. A peer is failed when no heartbeat has arrived on any path for
// Timeout. Counting from the moment a node dies, each survivor marks it
// failed after
//
//	Timeout - U(0, Interval) + U(0, Check)
//
// (the last heartbeat left up to one Interval before the death; the checker
// runs every Check). For lan that is 350..410 ms, for fast 220..245 ms,
// independent of the cluster size: all-to-all costs N-1 small packets per
// path per Interval per node, ~620 packets/s per path at 32 nodes (lan),
// which a LAN does not notice.
//
// Above ScaleAbove members a member sends every Interval only to its
// Watchers (3) ring neighbours, on every path, and every
// Interval × ⌈N/ScaleAbove⌉ to the others, each heartbeat announcing its
// interval; a receiver times a sender out after Timeout/Interval of the
// intervals it announces. A node then sends ~Watchers + ScaleAbove
// packets per Interval per path whatever N is. A watcher that times a
// member out after Timeout tells every member at once (a verdict, with the
// last sequence number it heard), and each fails it unless it heard a
// newer heartbeat itself: detection stays Timeout (plus a packet's way) at
// any size, and a fault between one watcher and its member alone fails
// nobody. The others' own timeout (1.6 s at 32 members, lan) remains as a
// backstop should every watcher die with the member.
//
// A node whose own checker ran late (its process was starved, the VM
// paused) does not trust its silence: it waits for one more Timeout before
// failing anyone (Pause guard), the way corosync refuses to act on a token
// it could not have seen.
type Profile struct {
	Name     string
	Interval time.Duration
	Timeout  time.Duration
	Check    time.Duration
	// JoinTimeout: a node that finds no peer in this time forms the
	// cluster alone (becomes active) and keeps trying to join.
	JoinTimeout time.Duration
	// ScaleAbove: the member count above which a member sends every
	// Interval only to its Watchers, and less often to the others.
	ScaleAbove int
	// Watchers: how many ring neighbours watch each member above
	// ScaleAbove members.
	Watchers int
}

// IntervalFor is the interval at which a member sends to those that do
// not watch it, in a cluster of n members.
func (p Profile) IntervalFor(n int) time.Duration {
	k := 1
	if p.ScaleAbove > 0 && n > p.ScaleAbove {
		k = (n + p.ScaleAbove - 1) / p.ScaleAbove
	}
	return p.Interval * time.Duration(k)
}

// TimeoutFor is how long a peer that sends every interval may be silent.
func (p Profile) TimeoutFor(interval time.Duration) time.Duration {
	if interval <= p.Interval {
		return p.Timeout
	}
	return p.Timeout * interval / p.Interval
}

// Profiles by name.
var (
	ProfileLAN  = Profile{Name: "lan", Interval: 50 * time.Millisecond, Timeout: 400 * time.Millisecond, Check: 10 * time.Millisecond, JoinTimeout: 5 * time.Second, ScaleAbove: 8, Watchers: 3}
	ProfileFast = Profile{Name: "fast", Interval: 20 * time.Millisecond, Timeout: 240 * time.Millisecond, Check: 5 * time.Millisecond, JoinTimeout: 3 * time.Second, ScaleAbove: 8, Watchers: 3}
)

// LookupProfile returns a profile by its config name.
func LookupProfile(name string) (Profile, error) {
	switch name {
	case "", "lan":
		return ProfileLAN, nil
	case "fast":
		return ProfileFast, nil
	}
	return Profile{}, fmt.Errorf("unknown heartbeat profile %q", name)
}
