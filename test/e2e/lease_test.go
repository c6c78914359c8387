//go:build linux

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// TestLeaseRidesEveryPath: the owner's lease reports and the leader's
// verdicts go as datagrams on both heartbeat paths, so neither 10 % loss
// on the owner's private NIC nor that cable pulled (the backup path up)
// costs the owner its group. Before, they went over one TCP connection each
// on the private address: a lost SYN (1 s to retransmit) used the whole
// 1 s lease, and the group failed over about a second into 10 % loss and
// on a 5 s private cut although the node stayed active. The owners are not
// voters, so that the quorum itself (raft on the private network) is not
// what the faults take away.
func TestLeaseRidesEveryPath(t *testing.T) {
	dir := t.TempDir()
	res, err := testnet.MarkerResource(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`quorum:
  voters: [node1, node2, node3]
failover:
  groups:
    - name: db
      owners: [node4, node5]
      vip: { address: %s/24, interface: eth0 }
      resource: %s
`, groupVIP, res)
	n := testnet.New(t, testnet.Options{Nodes: 5, Backup: true, Extra: func(int) string { return cfg }})
	n.Start()
	n.WaitConverged(30 * time.Second)
	owner := n.Nodes[3]
	g0 := groupOn(t, n, n.Nodes[0], owner.Name, 30*time.Second)
	time.Sleep(2 * time.Second) // the standby's reports are in too

	check := func(phase string) {
		t.Helper()
		s, err := n.Nodes[0].Status()
		if err != nil {
			t.Fatal(err)
		}
		g := s.Groups[0]
		if g.Owner != owner.Name || g.Epoch != g0.Epoch || g.Failovers != g0.Failovers {
			t.Errorf("after %s: group on %s (epoch %d, %d owner changes; before %s, epoch %d): %s",
				phase, g.Owner, g.Epoch, g.Failovers, g0.Owner, g0.Epoch, g.Reason)
		}
		ev, err := owner.Events()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev {
			if e.Type == "lease_expired" || e.Type == "group_failover" {
				t.Errorf("after %s: %s %s %s", phase, e.Type, e.Node, e.Detail)
			}
		}
		hb := s.Heartbeat
		t.Logf("after %s: group on %s, epoch %d; node1 heartbeats sent %d received %d unsent %d", phase, g.Owner, g.Epoch, hb.Sent, hb.Received, hb.Unsent)
	}

	n.Loss(10, testnet.Private, owner)
	time.Sleep(20 * time.Second)
	n.HealLoss()
	check("20 s of 10 % loss on the owner's private NIC")

	owner.Cable(testnet.Private, false)
	time.Sleep(8 * time.Second)
	owner.Cable(testnet.Private, true)
	n.WaitConverged(15 * time.Second)
	check("8 s with the owner's private cable pulled")
}
