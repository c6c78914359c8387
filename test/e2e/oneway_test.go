//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/testnet"
)

// TestNLBOneWayPartition: frames from some nodes to others are dropped on
// both networks while the other direction flows (a half-broken switch
// port, a one-way ACL). A client opens a new connection every 5 ms
// throughout; no new connection may be reset (answered by two nodes),
// none may lose its SYN once the views agree, and the cluster is whole
// again after the heal.
//
//   - node1 → node2: before reachability was mutual the views never
//     converged (node2 took node1's buckets while node1 kept serving
//     them: ~1,000 flows answered twice in 30 s). Now the three nodes
//     agree to leave node2 out (the pair's larger priority: the same
//     choice on each, heartbeat.agreeReach); it lets go of its buckets
//     before the others take them.
//   - node1 → node2 and node3: node1 hears everyone and nobody hears it.
//     The others fail it and take its buckets; node1 reads that in their
//     heartbeats and stops taking new flows at once (before: it kept
//     serving them, a second answer to every new flow in its buckets).
func TestNLBOneWayPartition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		from   []int
		to     []int
		agreed func(node string, s *api.Status) bool
	}{
		{"node1 to node2", []int{0}, []int{1}, func(_ string, s *api.Status) bool {
			for _, m := range s.Members {
				if m.Cut != (m.Name == "node2") {
					return false
				}
			}
			return true
		}},
		{"node1 to the others", []int{0}, []int{1, 2}, func(node string, s *api.Status) bool {
			for _, m := range s.Members {
				if m.Name == "node1" && (node == "node1" && !m.Cut || node != "node1" && m.State != "failed") {
					return false
				}
			}
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newNLB(t, 3, "multicast", true)
			time.Sleep(time.Second)
			pick := func(idx []int) []*testnet.Node {
				var out []*testnet.Node
				for _, i := range idx {
					out = append(out, x.Nodes[i])
				}
				return out
			}
			poll := startVIPPoller(x.Net, 5*time.Millisecond, true)
			time.Sleep(500 * time.Millisecond)
			cut := time.Now()
			x.OneWay(pick(tc.from), pick(tc.to))
			time.Sleep(3 * time.Second)
			// The views agree within a few heartbeat timeouts: every
			// node computes the same two owners.
			x.WaitFor(5*time.Second, "the three nodes agree on two owners", func() bool {
				for _, nd := range x.Nodes {
					s, err := nd.Status()
					if err != nil || !s.Converged || len(s.VIPs) == 0 || len(s.VIPs[0].Rules[0].Owners) != 2 || !tc.agreed(nd.Name, s) {
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
			v := tallyVIP(t, res, cut)
			resets, dropped, lateDrops, by := len(v.resets), len(v.lost), 0, v.by
			for _, r := range v.lost {
				if r.At.After(agreed) && r.At.Before(healed) {
					lateDrops++
				}
			}
			t.Logf("%d new connections: %d reset, %d lost their first SYN (%d between agreement and heal); answered by %v; agreed +%s, healed +%s",
				len(res), resets, dropped, lateDrops, by, agreed.Sub(cut).Round(time.Millisecond), healed.Sub(cut).Round(time.Millisecond))
			if resets > 0 {
				t.Errorf("%d new connections were reset during a one-way partition (two nodes answered them)", resets)
			}
			if lateDrops > 0 {
				t.Errorf("%d new connections lost their SYN between the views' agreement and the heal (buckets nobody serves)", lateDrops)
			}
			for _, nd := range x.Nodes {
				if s, err := nd.Status(); err == nil {
					for _, m := range s.Members {
						if m.State != "active" || m.Cut || m.Unheard {
							t.Errorf("after the heal %s sees %s as %s (cut %v, unheard %v)", nd.Name, m.Name, m.State, m.Cut, m.Unheard)
						}
					}
				}
			}
		})
	}
}
