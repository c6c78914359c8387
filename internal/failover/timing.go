package failover

import "time"

// Timing is the failover tier's clock: how fast the quorum elects a
// leader and how long an owner's lease lasts.
type Timing struct {
	// Election is raft's heartbeat and election timeout: a follower that
	// hears no leader this long starts an election.
	Election time.Duration
	// LeaderLease is how long a leader keeps acting without hearing a
	// majority; after it, it steps down (raft requires <= Election).
	LeaderLease time.Duration
	// Lease is how long a granted group lease lasts. The owner is primary
	// only inside it; a new owner is appointed only after it ran out.
	Lease time.Duration
	// Renew is how often an owner asks for its lease again.
	Renew time.Duration
}

// TimingFor gives the figures of a heartbeat profile.
func TimingFor(profile string) Timing {
	if profile == "fast" {
		return Timing{Election: 300 * time.Millisecond, LeaderLease: 150 * time.Millisecond, Lease: 600 * time.Millisecond, Renew: 100 * time.Millisecond}
	}
	return Timing{
		// Well above a LAN's round trip and a busy node's scheduling
		// stalls, well below the 3 s failover target.
		Election:    500 * time.Millisecond,
		LeaderLease: 250 * time.Millisecond,
		// Five renewals per lease: one or two lost messages do not cost
		// the primary its lease.
		Lease: time.Second,
		Renew: 200 * time.Millisecond,
	}
}

// hold is how long a new leader waits before it appoints a new owner for
// a group whose lease it did not grant itself: any lease the previous
// leader granted runs out by then. The previous leader grants at most
// until it steps down (LeaderLease after losing its majority, which
// happens before this node could be elected), and a grant lasts Lease.
// Renew is margin for the owner's and this node's clocks running apart.
func (t Timing) hold() time.Duration { return t.Lease + t.LeaderLease + t.Renew }
