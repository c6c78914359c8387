//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// inNS runs a command in a node's namespace and returns its output and
// exit code.
func inNS(nd *testnet.Node, stdin string, args ...string) (string, int) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", nd.NS}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	b, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return string(b), code
}

// leftovers says what of clusterd's a node's kernel still holds: tables,
// VIP addresses, the changed arp_announce.
func leftovers(t *testing.T, nd *testnet.Node) []string {
	t.Helper()
	var out []string
	rs, _ := inNS(nd, "", "nft", "list", "ruleset")
	for _, l := range strings.Split(rs, "\n") {
		if strings.HasPrefix(l, "table ") && strings.Contains(l, "clusterd") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(l), " {"))
		}
	}
	for _, a := range []string{vipAddr, groupVIP} {
		if hasAddr(nd, a) {
			out = append(out, "address "+a)
		}
	}
	if v, _ := inNS(nd, "", "cat", "/proc/sys/net/ipv4/conf/eth0/arp_announce"); strings.TrimSpace(v) != "0" {
		out = append(out, "arp_announce "+strings.TrimSpace(v))
	}
	return out
}

// TestCleanupAfterKill: a node serving the load-balanced VIP and owning a
// failover group (VIP, kernel fence) is killed with -9; clusterd cleanup
// removes every table, address and setting it left, a second run finds
// nothing, and it refuses while an agent runs. A clean SIGTERM leaves
// nothing either. While the agents run, `nft list ruleset` loads back
// (`nft -c -f -`), as a Debian admin saving it to /etc/nftables.conf needs.
func TestCleanupAfterKill(t *testing.T) {
	dir := t.TempDir()
	// unicast: its netdev ingress table is one more a dead agent leaves.
	cfg := groupConfig(t, dir) + lbConfig(50, "unicast")
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return cfg }})
	for _, nd := range n.Nodes {
		nd.Serve(80)
	}
	n.Start()
	groupOn(t, n, n.Nodes[2], "node1", 20*time.Second)
	n.WaitConverged(10 * time.Second)
	node1, node2, node3 := n.Nodes[0], n.Nodes[1], n.Nodes[2]

	for _, nd := range []*testnet.Node{node1, node2} {
		rs, _ := inNS(nd, "", "nft", "list", "ruleset")
		if out, code := inNS(nd, rs, "nft", "-c", "-f", "-"); code != 0 {
			t.Errorf("%s: nft list ruleset does not load back while clusterd runs (exit %d):\n%s\nruleset:\n%s", nd.Name, code, out, rs)
		}
	}

	clusterd := filepath.Join(n.Bin, "clusterd")
	if out, code := inNS(node3, "", clusterd, "cleanup", "--config", node3.Config); code != 1 || !strings.Contains(out, "an agent is running") {
		t.Errorf("cleanup while the agent runs: exit %d, want 1 and a refusal:\n%s", code, out)
	}
	if l := leftovers(t, node3); len(l) == 0 {
		t.Error("the refused cleanup removed the running agent's state")
	}

	node1.Kill()
	left := leftovers(t, node1)
	t.Logf("after kill -9: %s", strings.Join(left, "; "))
	if len(left) < 4 {
		t.Errorf("after kill -9 the node should still hold the tables, both VIPs and arp_announce: %q", left)
	}
	out, code := inNS(node1, "", clusterd, "cleanup", "--config", node1.Config)
	t.Logf("clusterd cleanup:\n%s", out)
	if code != 0 {
		t.Fatalf("cleanup: exit %d\n%s", code, out)
	}
	if l := leftovers(t, node1); len(l) != 0 {
		t.Errorf("after cleanup: %q", l)
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "node1.state", "sysctl.json")); err == nil {
		t.Error("the sysctl record is still there after cleanup")
	}
	if out, code := inNS(node1, "", clusterd, "cleanup", "--config", node1.Config); code != 0 || !strings.Contains(out, "nothing of clusterd's left") {
		t.Errorf("second cleanup: exit %d, want 0 and nothing to do:\n%s", code, out)
	}
	// Without a config: tables and labelled addresses still go.
	if out, code := inNS(node1, "", clusterd, "cleanup"); code != 0 {
		t.Errorf("cleanup without --config: exit %d\n%s", code, out)
	}

	groupOn(t, n, node3, "node2", 20*time.Second)
	if !node2.Term(10 * time.Second) {
		t.Fatal("node2 did not stop on SIGTERM")
	}
	if l := leftovers(t, node2); len(l) != 0 {
		t.Errorf("after a clean SIGTERM: %q", l)
	}
}

// TestListenerThatCannotOpenFailsTheStart: a metrics or SNMP agent address
// the agent cannot listen on (not this host's) fails `clusterd run` with a
// non-zero exit and the setting in the message, so the supervisor acts;
// before, the agent logged it and ran without the endpoint.
func TestListenerThatCannotOpenFailsTheStart(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 1})
	nd := n.Nodes[0]
	for _, tc := range []struct{ extra, want string }{
		{"metrics:\n  listen: 10.99.99.99:9464\n", "metrics.listen 10.99.99.99:9464"},
		{"snmp:\n  agent:\n    listen: 10.99.99.99:1161\n    community: public\n", "snmp.agent.listen 10.99.99.99:1161"},
	} {
		nd.WriteConfig(tc.extra)
		start := time.Now()
		out, code := inNS(nd, "", filepath.Join(n.Bin, "clusterd"), "run", "--config", nd.Config)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d after %s:\n%s", tc.want, code, time.Since(start).Round(time.Millisecond), out)
		}
	}
}
