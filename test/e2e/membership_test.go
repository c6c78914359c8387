//go:build linux

// Package e2e runs real clusterd binaries in network namespaces and injects
// faults. The tests need root; without it they skip and say why.
package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/testnet"
)

func TestFormsFromAnyStartOrder(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	// Last first: node3 and node2 join targets that are not up yet and
	// must keep trying.
	for i := len(n.Nodes) - 1; i >= 0; i-- {
		n.Nodes[i].Start()
		time.Sleep(300 * time.Millisecond)
	}
	n.WaitConverged(15 * time.Second)
	s, err := n.Nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Members) != 3 || !s.Converged {
		t.Fatalf("want 3 converged members, got %+v", s)
	}
}

func TestKill9MarksFailedOnEverySurvivor(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	n.Start()
	n.WaitConverged(15 * time.Second)
	victim := n.Nodes[2]
	start := time.Now()
	victim.Kill()
	n.WaitState(3*time.Second, victim, "failed")
	took := time.Since(start)
	t.Logf("kill -9: failed on every survivor after %s (includes status polling)", took)
	if took > time.Second {
		t.Errorf("failure detection took %s, target is 1s", took)
	}
	// It comes back as active after a restart.
	victim.Start()
	n.WaitConverged(10 * time.Second)
	ev, _ := n.Nodes[0].Events()
	var types []string
	for _, e := range ev {
		if e.Node == victim.Name {
			types = append(types, string(e.Type))
		}
	}
	if !contains(types, "node_failed") || strings.Count(strings.Join(types, ","), "node_joined") < 2 {
		t.Errorf("want node_joined, node_failed, node_joined for %s; got %v", victim.Name, types)
	}
}

func TestPrivateCableWithoutBackupPathFails(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	n.Start()
	n.WaitConverged(15 * time.Second)
	v := n.Nodes[1]
	v.Cable(testnet.Private, false)
	n.WaitState(3*time.Second, v, "failed")
	v.Cable(testnet.Private, true)
	n.WaitConverged(10 * time.Second)
}

func TestPrivateCableWithBackupPathStaysActive(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true})
	n.Start()
	n.WaitConverged(15 * time.Second)
	v := n.Nodes[1]
	observer := n.Nodes[0]

	v.Cable(testnet.Private, false)
	n.WaitFor(3*time.Second, "private path shown down", func() bool {
		s, err := observer.Status()
		if err != nil {
			return false
		}
		for _, m := range s.Members {
			if m.Name == v.Name {
				return m.Paths["private"] == false && m.Paths["backup"]
			}
		}
		return false
	})
	// Well past the failure timeout, it is still active everywhere.
	time.Sleep(time.Second)
	for _, nd := range n.Nodes {
		if nd != v {
			if st := nd.MemberState(v.Name); st != "active" {
				t.Fatalf("%s sees %s as %s with its backup path up", nd.Name, v.Name, st)
			}
		}
	}
	out, _ := observer.Ctl("status")
	if !strings.Contains(out, "private(DOWN)") {
		t.Errorf("status table does not show the lost path:\n%s", out)
	}

	// Both paths cut: failed.
	v.Cable(testnet.Public, false)
	n.WaitState(3*time.Second, v, "failed")

	// Mended: active again on every node.
	v.Cable(testnet.Public, true)
	v.Cable(testnet.Private, true)
	n.WaitConverged(10 * time.Second)
}

func TestSIGTERMLeaves(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	n.Start()
	n.WaitConverged(15 * time.Second)
	v := n.Nodes[2]
	if !v.Term(5 * time.Second) {
		t.Fatal("SIGTERM did not stop the agent within 5s")
	}
	n.WaitState(3*time.Second, v, "left")
	// It must never have been called failed.
	time.Sleep(600 * time.Millisecond)
	for _, nd := range n.Nodes[:2] {
		ev, _ := nd.Events()
		for _, e := range ev {
			if e.Node == v.Name && e.Type == "node_failed" {
				t.Errorf("%s reported a graceful leave as a failure", nd.Name)
			}
		}
	}
	// forget removes it; unknown nodes are exit 1.
	if out, code := n.Nodes[0].Ctl("forget", v.Name); code != 0 {
		t.Fatalf("forget: %d %s", code, out)
	}
	n.WaitFor(3*time.Second, "forgotten on both survivors", func() bool {
		return n.Nodes[0].MemberState(v.Name) == "" && n.Nodes[1].MemberState(v.Name) == ""
	})
	if _, code := n.Nodes[0].Ctl("forget", "nosuchnode"); code != 1 {
		t.Errorf("forget of an unknown node: exit %d, want 1", code)
	}
	if _, code := n.Nodes[0].Ctl("forget", n.Nodes[1].Name); code != 1 {
		t.Errorf("forget of an active node: exit %d, want 1", code)
	}
	// The operator event names the caller's uid.
	out, _ := n.Nodes[0].Ctl("events", "--json")
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]string
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("events --json line %q: %v", l, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, e["time"]); err != nil || !strings.Contains(e["time"], ".") {
			t.Errorf("time %q is not RFC 3339 with a fraction", e["time"])
		}
		if e["type"] == "operator" && strings.Contains(e["detail"], "root (uid 0) ran clusterctl forget "+v.Name) {
			found = true
		}
	}
	if !found {
		t.Errorf("no operator event for forget:\n%s", out)
	}
	// events --follow streams what happens next, one JSON object per line.
	follow := exec.Command(filepath.Join(n.Bin, "clusterctl"), "--socket", n.Nodes[0].Socket, "events", "--follow", "--json")
	pipe, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The past events come first: once one arrives, the follower is
	// subscribed (the agent takes both in one step).
	select {
	case <-lines:
	case <-time.After(3 * time.Second):
		t.Fatal("events --follow printed nothing")
	}
	n.Nodes[0].Ctl("forget", "stillnobody")
	deadline := time.After(3 * time.Second)
	for got := false; !got; {
		select {
		case l := <-lines:
			got = strings.Contains(l, `"type":"operator"`) && strings.Contains(l, "forget stillnobody")
		case <-deadline:
			t.Fatal("events --follow did not stream the new event")
		}
	}
	// A stopped agent: exit 3 with one line.
	out, code := v.Ctl("status")
	if code != 3 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("status against a stopped agent: exit %d, output %q", code, out)
	}
}

func TestWrongKeyNeverJoins(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	other := n.Dir + "/other.key"
	k, _ := config.NewKey()
	os.WriteFile(other, []byte(k), 0o600)
	cfg, _ := os.ReadFile(n.Nodes[2].Config)
	os.WriteFile(n.Nodes[2].Config, []byte(strings.Replace(string(cfg), n.Key, other, 1)), 0o644)
	n.Start()
	n.WaitFor(10*time.Second, "both sides to log the refusal", func() bool {
		return strings.Contains(n.Nodes[0].Log()+n.Nodes[1].Log(), "decrypt") &&
			strings.Contains(n.Nodes[2].Log(), "no peer answered the join")
	})
	for _, nd := range n.Nodes[:2] {
		if st := nd.MemberState(n.Nodes[2].Name); st != "" {
			t.Errorf("%s lists the wrong-key node as %s", nd.Name, st)
		}
	}
	s, _ := n.Nodes[2].Status()
	if len(s.Members) != 1 {
		t.Errorf("the wrong-key node sees members: %+v", s.Members)
	}
	if !strings.Contains(n.Nodes[0].Log()+n.Nodes[1].Log(), "decrypt") {
		t.Errorf("the cluster's logs do not say why the node was refused")
	}
	if !strings.Contains(n.Nodes[2].Log(), "no peer answered the join") {
		t.Errorf("the wrong-key node's log does not say it cannot join:\n%s", n.Nodes[2].Log())
	}
}

func TestDuplicateNameAndPriorityRefused(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 4})
	// node3 claims node2's priority, node4 claims node2's name.
	n.Nodes[2].WriteConfig("")
	setLine(t, n.Nodes[2].Config, "  priority: 3", "  priority: 2")
	setLine(t, n.Nodes[3].Config, "  name: node4", "  name: node2")
	setLine(t, n.Nodes[3].Config, "  priority: 4", "  priority: 9")
	n.Nodes[0].Start()
	n.Nodes[1].Start()
	n.WaitFor(10*time.Second, "node1 and node2 active", func() bool {
		return n.Nodes[0].MemberState("node2") == "active"
	})
	n.Nodes[2].Start()
	n.Nodes[3].Start()
	n.WaitFor(10*time.Second, "both refusals shown", func() bool {
		s3, err3 := n.Nodes[2].Status()
		s4, err4 := n.Nodes[3].Status()
		return err3 == nil && err4 == nil && hasProblem(s3.Problems, "priority 2") && hasProblem(s4.Problems, "already used")
	})
	s1, _ := n.Nodes[0].Status()
	if len(s1.Members) != 2 {
		t.Errorf("node1 admitted a duplicate: %+v", s1.Members)
	}
	if !hasProblem(s1.Problems, "refused node3") {
		t.Errorf("node1's status does not show the refusal: %v", s1.Problems)
	}
}

func TestConfigMismatchFlagged(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	n.Nodes[2].WriteConfig("quorum:\n  voters: [node1, node2, node3]\n")
	n.Start()
	n.WaitConverged(15 * time.Second)
	n.WaitFor(5*time.Second, "mismatch flagged", func() bool {
		s, err := n.Nodes[0].Status()
		if err != nil {
			return false
		}
		for _, m := range s.Members {
			if m.Name == "node3" && contains(m.ConfigMismatch, "quorum") {
				return !s.Converged
			}
		}
		return false
	})
	if !strings.Contains(n.Nodes[0].Log(), "config_mismatch") {
		t.Error("node1's log does not name the mismatch")
	}
}

// TestKeyRotation rotates the cluster key across a running cluster with
// the documented three steps, each followed by SIGHUP on every node; the
// cluster never loses a member.
func TestKeyRotation(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3})
	n.Start()
	n.WaitConverged(15 * time.Second)
	oldKey, _ := os.ReadFile(n.Key)
	newKey, _ := config.NewKey()
	steps := []string{
		string(oldKey) + newKey, // 1: add the new key (old still encrypts)
		newKey + string(oldKey), // 2: encrypt with the new key
		newKey,                  // 3: drop the old key
	}
	for i, content := range steps {
		os.WriteFile(n.Key, []byte(content), 0o600)
		for _, nd := range n.Nodes {
			nd.HUP()
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second)
		for _, nd := range n.Nodes {
			for _, other := range n.Nodes {
				if st := nd.MemberState(other.Name); st != "active" {
					t.Fatalf("after step %d, %s sees %s as %q", i+1, nd.Name, other.Name, st)
				}
			}
		}
	}
	for _, nd := range n.Nodes {
		ev, _ := nd.Events()
		for _, e := range ev {
			if e.Type == "node_failed" {
				t.Errorf("a node failed during key rotation: %+v", e)
			}
		}
	}
	// A node restarted with only the old key can no longer join.
	n.Nodes[2].Kill()
	n.WaitState(3*time.Second, n.Nodes[2], "failed") // the old incarnation is gone first
	if strings.Contains(n.Nodes[2].Log(), "no peer answered the join") {
		t.Fatal("node3 logged a failed join before the key change")
	}
	os.WriteFile(n.Dir+"/old.key", oldKey, 0o600)
	setLine(t, n.Nodes[2].Config, "  key_file: "+n.Key, "  key_file: "+n.Dir+"/old.key")
	n.Nodes[2].Start()
	n.WaitFor(10*time.Second, "node3's join refused", func() bool {
		return strings.Contains(n.Nodes[2].Log(), "no peer answered the join")
	})
	if st := n.Nodes[0].MemberState("node3"); st == "active" {
		t.Errorf("a node with the retired key rejoined")
	}
}

func setLine(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), old+"\n") {
		t.Fatalf("%s has no line %q", path, old)
	}
	os.WriteFile(path, []byte(strings.Replace(string(b), old+"\n", new+"\n", 1)), 0o644)
}

func hasProblem(ps []string, sub string) bool {
	for _, p := range ps {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestLongPrivateCutWithBackupPath: the private cable of one node of six
// is pulled for 10 s, in both profiles. Its private datagrams queue for
// neighbours that never resolve until that socket is full (~2.7 s); that
// path's sender then waits, and before each path had its own sender the
// backup path went quiet with it and the peers failed a node they could
// reach (3 false failures per peer in a 10 s cut). Now no peer ever sees
// it fail.
func TestLongPrivateCutWithBackupPath(t *testing.T) {
	for _, profile := range []string{"lan", "fast"} {
		t.Run(profile, func(t *testing.T) {
			n := testnet.New(t, testnet.Options{Nodes: 6, Backup: true, Profile: profile})
			n.Start()
			n.WaitConverged(30 * time.Second)
			v := n.Nodes[1]
			t0 := time.Now()
			v.Cable(testnet.Private, false)
			time.Sleep(10 * time.Second)
			v.Cable(testnet.Private, true)
			n.WaitConverged(15 * time.Second)
			for _, nd := range n.Nodes {
				if nd == v {
					continue
				}
				ev, err := nd.Events()
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ev {
					if e.Node == v.Name && e.Type == "node_failed" && e.Time.After(t0) {
						t.Errorf("%s failed %s at +%s during a private cut with the backup path up: %s",
							nd.Name, v.Name, e.Time.Sub(t0).Round(time.Millisecond), e.Detail)
					}
				}
			}
			// The cut node itself counted what it could not send.
			s, err := v.Status()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: heartbeats sent %d, unsent %d", v.Name, s.Heartbeat.Sent, s.Heartbeat.Unsent)
		})
	}
}
