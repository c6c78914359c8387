//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// TestStatusCheck: `clusterctl status --check` as a Nagios/Icinga plugin
// returns each exit code: 0 with all well, 1 with a node failed, 2 with
// quorum lost, 3 with the agent gone; one line with perfdata, and the
// same conditions under PROBLEMS of the table view.
func TestStatusCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := groupConfig(t, dir)
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return cfg }})
	n.Start()
	node1, node2, node3 := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	groupOn(t, n, node1, "node1", 20*time.Second)
	check := func(nd *testnet.Node) (string, int) {
		out, code := nd.Ctl("status", "--check")
		if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, " | ") {
			t.Errorf("not one line with perfdata: %q", out)
		}
		return out, code
	}
	var out string
	var code int
	n.WaitFor(10*time.Second, "status --check OK", func() bool { out, code = check(node1); return code == 0 })
	t.Logf("all well: %s", out)
	if !strings.HasPrefix(out, "CLUSTERD OK - ") || !strings.Contains(out, "members_active=3") {
		t.Errorf("all well: %q", out)
	}

	node3.Kill()
	// Not the first WARNING: for a moment node3 is only unheard here (the
	// others have not timed it out yet) before the vote fails it.
	n.WaitFor(10*time.Second, "status --check WARNING, node3 failed", func() bool {
		out, code = check(node1)
		return code == 1 && strings.Contains(out, "member node3 failed")
	})
	t.Logf("node3 killed: %s", out)
	if !strings.Contains(out, "member node3 failed") || !strings.Contains(out, "members_failed=1") {
		t.Errorf("node3 killed: %q", out)
	}
	table, _ := node1.Ctl("status")
	if !strings.Contains(table, "WARNING: member node3 failed") {
		t.Errorf("the table's PROBLEMS lack the failed member:\n%s", table)
	}

	node2.Kill()
	n.WaitFor(15*time.Second, "status --check CRITICAL", func() bool { out, code = check(node1); return code == 2 })
	t.Logf("node2 and node3 killed: %s", out)
	if !strings.Contains(out, "quorum lost") {
		t.Errorf("quorum lost: %q", out)
	}

	node1.Kill()
	out, code = node1.Ctl("status", "--check")
	t.Logf("agent gone: %s", out)
	if code != 3 || !strings.HasPrefix(out, "CLUSTERD UNKNOWN - ") {
		t.Errorf("agent gone: exit %d %q, want 3 and UNKNOWN", code, out)
	}
}
