//go:build linux

package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const groupVIP6 = testnet.PubNet6 + "200"

// TestGroupFailoverIPv6: a group VIP on IPv6 (the public LAN dual-stack):
// the owner answers on it; kill -9 of the owner's agent moves it to the
// other owner, whose unsolicited neighbour advertisement points the client
// at its MAC, and the killed agent's node, its backend still running,
// answers nothing more for the VIP once its kernel lease runs out.
func TestGroupFailoverIPv6(t *testing.T) {
	dir := t.TempDir()
	res, err := testnet.MarkerResource(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testnet.FailoverGroup("db", groupVIP6+"/64", res)
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, IPv6: true, Extra: func(int) string { return cfg }})
	for _, nd := range n.Nodes[:2] {
		nd.Serve(80)
	}
	n.Start()
	groupOn(t, n, n.Nodes[2], "node1", 20*time.Second)
	c := n.NewClient(300 * time.Millisecond)
	get := func() testnet.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		return c.Get(ctx, "http://["+groupVIP6+"]/")
	}
	n.WaitFor(5*time.Second, "the IPv6 VIP answered by node1", func() bool { return get().Node == "node1" })
	if !hasAddr6(n.Nodes[0], groupVIP6) || hasAddr6(n.Nodes[1], groupVIP6) {
		t.Fatalf("the VIP should be on node1 only")
	}

	killed := time.Now()
	n.Nodes[0].Kill()
	n.WaitFor(5*time.Second, "the IPv6 VIP answered by node2", func() bool { return get().Node == "node2" })
	took := time.Since(killed)
	// A second more: the killed agent's node (its backend and address
	// still there) must stay silent for the VIP.
	var wrong []string
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if r := get(); r.Node != "" && r.Node != "node2" {
			wrong = append(wrong, r.At.Format("15:04:05.000")+" "+r.Node)
		}
	}
	if len(wrong) > 0 {
		t.Errorf("after node2 took over, answered by another node: %v", wrong)
	}
	t.Logf("kill -9 of the owner: the IPv6 VIP answered by node2 after %s", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("failover took %s", took)
	}
}

func hasAddr6(nd *testnet.Node, addr string) bool {
	out, _ := exec.Command("ip", "-n", nd.NS, "-6", "-o", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+addr+"/")
}

const vip6 = testnet.PubNet6 + "100"

// TestNLBIPv6: a load-balanced VIP on IPv6, in both frame-delivery modes.
// The client resolves the VIP by Neighbour Discovery to the cluster MAC;
// every connection is answered and the load spreads over the 3 nodes;
// clusterctl owner names the node that answered each flow (the Go hash
// predicts the kernel's over 16-byte addresses); kill -9 of one agent,
// its web server still running, leaves it answering nothing new once its
// kernel liveness runs out, and the survivors take its buckets with no
// request failing. The nodes serve an IPv4 VIP besides (both families on
// one node, a table each): it answers too, before and after.
func TestNLBIPv6(t *testing.T) { inModes(t, testNLBIPv6) }

func testNLBIPv6(t *testing.T, mode string) {
	// Both VIPs: the IPv6 one first (waitOwners looks at the first).
	both := lbConfigAt(vip6+"/64", 50, mode) + strings.TrimPrefix(lbConfigAt(vipAddr+"/24", 50, mode), "load_balancing:\n")
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, IPv6: true, Extra: func(int) string { return both }})
	v4 := &nlb{Net: n, client: n.NewClient(2 * time.Second), url: "http://" + vipAddr + "/"}
	x := &nlb{Net: n, client: n.NewClient(2 * time.Second), url: "http://[" + vip6 + "]/"}
	for _, nd := range n.Nodes {
		x.backends = append(x.backends, nd.Serve(80))
	}
	n.Start()
	x.waitOwners(3)

	x.spreadAndOwner(t, 300, vip6, testnet.ClientIP6)
	cmac := map[string]string{"multicast": "03:bf:00:00:01:00", "unicast": "02:bf:00:00:01:00"}[mode]
	out, _ := exec.Command("ip", "-n", n.Client, "-6", "neigh", "show", vip6).CombinedOutput()
	if !strings.Contains(string(out), cmac) {
		t.Errorf("the client's neighbour entry for the VIP: %q, want %s", out, cmac)
	}
	for _, nd := range n.Nodes {
		if hasAddr6(nd, vip6) {
			t.Errorf("%s: the VIP is on eth0 (it belongs on lo, out of the node's own Neighbour Discovery)", nd.Name)
		}
	}
	checkFloodedAt(t, x, mode, vip6, cmac)
	if m4, errs := tally(v4.burst(90, 8)); len(errs) > 0 || len(m4) != 3 {
		t.Errorf("the IPv4 VIP beside it: served %v, %d failed (%v)", m4, len(errs), errs)
	}

	victim := n.Nodes[2]
	victim.Kill()
	killed := time.Now()
	n.WaitState(3*time.Second, victim, "failed")
	x.waitOwners(2)
	m, errs := tally(x.burst(200, 8))
	if len(errs) > 0 {
		t.Errorf("%d of 200 requests failed after takeover: %v", len(errs), errs[0])
	}
	if m[victim.Name] > 0 {
		t.Errorf("the node whose agent died still took %d new flows %s after the kill", m[victim.Name], time.Since(killed))
	}
	t.Logf("after kill -9 of %s: %v", victim.Name, m)
	if m4, errs := tally(v4.burst(60, 8)); len(errs) > 0 || m4[victim.Name] > 0 {
		t.Errorf("the IPv4 VIP after the kill: served %v, %d failed (%v)", m4, len(errs), errs)
	}
}
