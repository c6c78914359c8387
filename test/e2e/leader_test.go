//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestPostgresQuorumLeaderDeath: the quorum leader is the witness (node3;
// the owner hands leadership to a voter that owns no group), and its agent
// is killed while a client writes through the group VIP. No owner changes,
// no standby changes: the client must not notice. Before, the owner's 1 s
// lease ran out during the election and it stopped its server.
func TestPostgresQuorumLeaderDeath(t *testing.T) {
	n, _ := startPG(t)
	node1, node2, node3 := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	waitGroup(t, n, node2, 60*time.Second, "db online on node1 with node2 as synchronous standby", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})
	createAppTable(t, n, node1)
	leader := func() string {
		s, err := node1.Status()
		if err != nil || s.Quorum == nil {
			return ""
		}
		return s.Quorum.Leader
	}
	w := &writer{n: n}
	for round := 1; round <= 2; round++ {
		n.WaitFor(30*time.Second, "the witness node3 leads the quorum", func() bool { return leader() == "node3" })
		resumed := time.Now()
		w.resume(n)
		time.Sleep(time.Second)
		killed := time.Now()
		node3.Kill()
		n.WaitFor(10*time.Second, "a new quorum leader", func() bool { l := leader(); return l != "" && l != "node3" })
		elected := time.Since(killed)
		time.Sleep(3 * time.Second)
		gap := w.longestGapSince(resumed)
		w.halt()
		t.Logf("round %d: leader %s elected %v after the kill; longest time without an acknowledged write %v",
			round, leader(), elected.Round(time.Millisecond), gap.Round(time.Millisecond))
		if strings.Contains(node1.Log(), "lease lost: fencing") {
			t.Errorf("round %d: the owner lost its lease while the quorum elected a new leader", round)
		}
		if gap > 500*time.Millisecond {
			t.Errorf("round %d: writes stalled for %v when the quorum leader died, want <= 500 ms", round, gap)
		}
		w.checkNoneLost(t, n, "after the quorum leader's death")
		node3.Start()
	}
}
