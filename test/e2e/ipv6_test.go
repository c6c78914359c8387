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
