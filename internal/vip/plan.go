package vip

import (
	"net"
	"net/netip"
	"time"
)

// VIPPlan is what the datapath needs to know about one VIP; it does not
// change while the agent runs.
type VIPPlan struct {
	Index     int
	Addr      netip.Prefix
	Interface string
	Mode      string
	MAC       net.HardwareAddr
	Seed      uint32
	Rules     []RulePlan
}

// RulePlan is one port rule of a VIP.
type RulePlan struct {
	Lo, Hi    uint16
	Protos    []uint8 // 6 tcp, 17 udp
	Affinity  string
	Filtering string
}

// Ownership is what changes at each convergence: the buckets this node
// accepts new flows in, per VIP and rule, and whether it is the VIP's
// default host (ICMP and traffic no rule matches).
type Ownership struct {
	Owned   map[[2]int][]uint32
	Default map[int]bool
}

// buckets counts the buckets owned, over every VIP and rule.
func (o Ownership) buckets() int {
	n := 0
	for _, bs := range o.Owned {
		n += len(bs)
	}
	return n
}

// Counters are a VIP's packet counters on this node.
type Counters struct {
	Accepted, Dropped uint64
}

// datapath is the kernel side of the NLB tier. The Linux one is nftables;
// elsewhere there is none (Windows nodes do not take VIP traffic).
type datapath interface {
	// Setup installs the VIP addresses, the ruleset (owning nothing) and
	// the ARP responders. A ruleset left by a previous agent is replaced
	// in the same transaction, so established flows never see a gap.
	Setup(vips []VIPPlan, liveTTL time.Duration) error
	// Apply replaces the owned buckets in one atomic transaction.
	Apply(o Ownership) error
	// Stage prepares one or two ownerships without changing what the node
	// accepts; each Commit then switches to the next in one small
	// transaction. A planned switch stages ahead of its instant (its drops,
	// then its takes), so that at the instant every node only flips (a big
	// bucket set takes tens of milliseconds to install).
	Stage(os ...Ownership) error
	// StageAt prepares o and has the kernel switch to it at the instant
	// by its own clock; Commit afterwards makes it final. An error means
	// the kernel cannot (before Linux 5.4): the caller switches by timer.
	StageAt(at time.Time, o Ownership) error
	Commit() error
	// Refresh renews the liveness element: if the agent stops refreshing
	// (kill -9), the node stops taking new flows after liveTTL.
	Refresh() error
	// StopNew makes the node take no new flows at once (shutdown).
	StopNew() error
	// Counters reads the per-VIP packet counters.
	Counters() (map[int]Counters, error)
	// Connections counts established TCP connections to the VIPs.
	Connections() (int, error)
	// Close removes the ruleset, the addresses and the responders.
	Close() error
}
