//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// TestNLBOneWayPartition: frames from node1 to node2 are dropped on both
// networks while node2 → node1 flows (a half-broken switch port). Before
// reachability was mutual the views never converged: node2 took node1's
// buckets while node1 kept serving them, so new flows were answered by
// two nodes (resets). Now the three nodes agree to leave one of the pair
// out (the same choice on each: see heartbeat.agreeReach), the one left
// out stops taking new flows before the others take its buckets (make
// before break), and the cluster is whole again after the heal.
func TestNLBOneWayPartition(t *testing.T) {
	x := newNLB(t, 3, "multicast", true)
	time.Sleep(time.Second)
	poll := startVIPPoller(x.Net, 5*time.Millisecond, true)
	time.Sleep(500 * time.Millisecond)
	cut := time.Now()
	t.Logf("one-way cut node1 → node2 at %s", cut.Format("15:04:05.000"))
	x.OneWay(x.Nodes[:1], x.Nodes[1:2])
	time.Sleep(3 * time.Second)
	// The views agree within a few heartbeat timeouts: every node
	// computes the same two owners.
	x.WaitFor(5*time.Second, "the three nodes agree on two owners", func() bool {
		for _, nd := range x.Nodes {
			s, err := nd.Status()
			if err != nil || !s.Converged || len(s.VIPs) == 0 || len(s.VIPs[0].Rules[0].Owners) != 2 {
				return false
			}
		}
		return true
	})
	agreed := time.Now()
	time.Sleep(3 * time.Second)
	healed := time.Now()
	x.HealOneWay()
	x.waitOwners(3)
	time.Sleep(time.Second)
	res := poll.halt()
	resets, dropped := 0, 0
	var lateDrops int
	by := map[string]int{}
	for _, r := range res {
		switch {
		case r.Err == nil:
			by[r.Node]++
		case strings.Contains(r.Err.Error(), "reset"):
			resets++
			t.Logf("a new connection at %s was reset (answered by two nodes): %v", r.At.Format("15:04:05.000"), r.Err)
		default:
			dropped++
			t.Logf("a new connection at +%s lost its first SYN: %v", r.At.Sub(cut).Round(time.Millisecond), r.Err)
			if r.At.After(agreed) && r.At.Before(healed) {
				lateDrops++
			}
		}
	}
	t.Logf("%d new connections: %d reset, %d lost their first SYN (%d between agreement and heal); answered by %v; cut %s, agreed +%s, healed +%s",
		len(res), resets, dropped, lateDrops, by, cut.Format("15:04:05.000"), agreed.Sub(cut).Round(time.Millisecond), healed.Sub(cut).Round(time.Millisecond))
	if resets > 0 {
		t.Errorf("%d new connections were reset during a one-way partition (two nodes answered them)", resets)
	}
	if lateDrops > 0 {
		t.Errorf("%d new connections lost their SYN between the views' agreement and the heal (buckets nobody serves)", lateDrops)
	}
	for _, nd := range x.Nodes {
		if s, err := nd.Status(); err == nil {
			for _, m := range s.Members {
				if m.State != "active" {
					t.Errorf("after the heal %s sees %s as %s", nd.Name, m.Name, m.State)
				}
			}
		}
	}
	_ = testnet.Public
}
