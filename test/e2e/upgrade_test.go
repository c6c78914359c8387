//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// previousRelease is the last release before this tree (the last stop
// whose CI passed): the rolling-upgrade test starts the cluster on it.
// Move it forward when a release lands.
const previousRelease = "7b83264"

// vipPoller opens a new connection to the load-balanced VIP every
// `every` and keeps every result. Concurrent: each request in its own
// goroutine, so a slow one delays none (every SYN a gap drops shows);
// otherwise one at a time, so a gap costs one request.
type vipPoller struct {
	c    *testnet.Client
	mu   sync.Mutex
	res  []testnet.Result
	stop chan struct{}
	done chan struct{}
}

func startVIPPoller(n *testnet.Net, every time.Duration, concurrent bool) *vipPoller {
	p := &vipPoller{c: n.NewClient(time.Second), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var inner sync.WaitGroup
		defer inner.Wait()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tk.C:
			}
			get := func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r := p.c.Get(ctx, "http://"+vipAddr+"/")
				cancel()
				p.mu.Lock()
				p.res = append(p.res, r)
				p.mu.Unlock()
			}
			if !concurrent {
				get()
				continue
			}
			inner.Add(1)
			go func() { defer inner.Done(); get() }()
		}
	}()
	return p
}

// vipTally sorts a poller's results: answered (by node), reset (two nodes
// answered: an overlap) and lost (the first SYN dropped, retransmitted
// past the client's 1 s timeout: a gap).
type vipTally struct {
	by           map[string]int
	resets, lost []testnet.Result
}

// tallyVIP sorts res and logs each failure with its time after origin.
func tallyVIP(t *testing.T, res []testnet.Result, origin time.Time) vipTally {
	t.Helper()
	v := vipTally{by: map[string]int{}}
	for _, r := range res {
		switch {
		case r.Err == nil:
			v.by[r.Node]++
		case strings.Contains(r.Err.Error(), "reset"):
			v.resets = append(v.resets, r)
			t.Logf("a new connection at +%s was reset (answered by two nodes): %v", r.At.Sub(origin).Round(time.Millisecond), r.Err)
		default:
			v.lost = append(v.lost, r)
			t.Logf("a new connection at +%s lost its first SYN: %v", r.At.Sub(origin).Round(time.Millisecond), r.Err)
		}
	}
	return v
}

// halt stops polling and returns every result once the last request ended.
func (p *vipPoller) halt() []testnet.Result {
	close(p.stop)
	<-p.done
	return p.res
}

// TestRollingUpgrade: a 4-node cluster on the previous release (built
// from this repository's history): node1 and node2 own the PostgreSQL
// group (synchronous standby), all four serve the load-balanced VIP,
// node1-3 vote. A client opens a connection to the VIP every 20 ms and a
// writer inserts through the group VIP all along. Each node in turn is
// upgraded with the procedure of docs/operations.md (move its group away,
// drain, stop, new binary, start, resume). Every VIP request is answered,
// no acknowledged write is lost, the group changes owner only at the
// planned moves, and in the end every member announces the new version.
func TestRollingUpgrade(t *testing.T) {
	if _, err := os.Stat(pgBin + "/postgres"); err != nil {
		t.Skip("skipping: PostgreSQL 15 is not installed (apt-get install postgresql-15)")
	}
	const oldVersion = "0.0.0-test-previous"
	old := testnet.BuildAt(t, previousRelease, oldVersion)
	dir := pgDir(t)
	os.WriteFile(filepath.Join(dir, "replication.pass"), []byte("repl-pass\n"), 0o600)
	n := testnet.New(t, testnet.Options{Nodes: 4, Backup: true, Extra: func(i int) string {
		return pgConfig(dir, i) + lbConfig(50, "multicast")
	}})
	for _, nd := range n.Nodes {
		nd.Bin = old
		nd.Serve(80)
	}
	n.Start()
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range n.Nodes {
				t.Logf("--- %s log (tail):\n%s", nd.Name, tail(nd.Log(), 4000))
			}
		}
	})
	waitGroup(t, n, n.Nodes[3], 60*time.Second, "db online on node1 with node2 as synchronous standby", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})
	n.WaitConverged(20 * time.Second)
	createAppTable(t, n, n.Nodes[0])
	w := &writer{n: n}
	w.start()
	poll := startVIPPoller(n, 20*time.Millisecond, false)
	n.WaitFor(10*time.Second, "writes acknowledged through the group VIP", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acked) > 10
	})

	moves := 0
	owner := "node1"
	// handoffs: when a node on the previous release was drained. That
	// release lets go of the node's buckets before the others take them
	// (break before make), so a new connection whose SYN falls into it is
	// dropped once and, with this client's 1 s timeout, fails. This
	// release hands over at an announced instant (a planned switch): its
	// drains, resumes and stops must fail nothing.
	var handoffs []time.Time
	// switches: this release's planned switches (the resumes): a SYN can
	// still fall into the few ms between the nodes' switches (see
	// TestPlannedStopLosesNothing): at most one per switch.
	var switches []time.Time
	// whole: every member active, converged, the quorum complete with a
	// leader, the group online on its owner with a synchronous standby;
	// held for 3 s, as an operator checks before the next node (a restart
	// shows in status only after a moment).
	whole := func(from *testnet.Node, what string) {
		t.Helper()
		var since time.Time
		n.WaitFor(90*time.Second, what, func() bool {
			s, err := from.Status()
			ok := err == nil && s.Converged && s.Quorum != nil && s.Quorum.HasQuorum && s.Quorum.Leader != "" &&
				s.Quorum.Alive == s.Quorum.Voters && len(s.Groups) == 1
			if ok {
				g := s.Groups[0]
				ok = g.Owner == owner && g.State == "online" && g.Replication == "sync" && g.Standby != ""
				for _, m := range s.Members {
					ok = ok && m.State == "active"
				}
			}
			if !ok {
				since = time.Time{}
				return false
			}
			if since.IsZero() {
				since = time.Now()
			}
			return time.Since(since) >= 3*time.Second
		})
	}
	whole(n.Nodes[3], "the cluster whole before the upgrade")
	for _, nd := range []*testnet.Node{n.Nodes[3], n.Nodes[2], n.Nodes[1], n.Nodes[0]} {
		other := n.Nodes[3]
		if nd == other {
			other = n.Nodes[0]
		}
		if nd.Name == owner {
			to := map[string]string{"node1": "node2", "node2": "node1"}[owner]
			// From an upgraded node (any node's clusterctl acts on any
			// node); a leader change just now (the last restart) is retried,
			// as an operator would.
			var out string
			code := -1
			for try := 0; try < 5 && code != 0; try++ {
				if out, code = other.Ctl("move", "db", to); code != 0 && strings.Contains(out, "does not lead") {
					time.Sleep(time.Second)
					continue
				}
				break
			}
			if code != 0 {
				t.Fatalf("move db from %s to %s: exit %d\n%s", nd.Name, to, code, out)
			}
			moves++
			owner = to
		}
		handoffs = append(handoffs, time.Now()) // nd still runs the previous release
		if out, code := nd.Ctl("drain", "--wait", "--timeout", "20s"); code != 0 {
			t.Fatalf("%s: drain: exit %d\n%s", nd.Name, code, out)
		}
		if !nd.Term(30 * time.Second) {
			t.Fatalf("%s did not stop on SIGTERM", nd.Name)
		}
		nd.Bin = "" // this tree's build
		nd.Start()
		// The drain is kept across the restart: resume it.
		n.WaitFor(20*time.Second, nd.Name+" back as drained", func() bool {
			return other.MemberState(nd.Name) == "drained" || other.MemberState(nd.Name) == "draining"
		})
		switches = append(switches, time.Now())
		if out, code := nd.Ctl("resume"); code != 0 {
			t.Fatalf("%s: resume: exit %d\n%s", nd.Name, code, out)
		}
		whole(other, "the cluster whole after upgrading "+nd.Name)
		t.Logf("%s upgraded", nd.Name)
	}
	time.Sleep(time.Second)
	results := poll.halt()
	w.halt()

	within := func(ts []time.Time, at time.Time) bool {
		for _, h := range ts {
			if !at.Before(h.Add(-100*time.Millisecond)) && at.Before(h.Add(1500*time.Millisecond)) {
				return true
			}
		}
		return false
	}
	failed, atHandoff, atSwitch := 0, 0, 0
	for _, r := range results {
		if r.Err == nil {
			continue
		}
		if within(switches, r.At) {
			atSwitch++
			t.Logf("VIP request at %s failed at a planned switch (a resume): %v", r.At.Format("15:04:05.000"), r.Err)
			continue
		}
		if within(handoffs, r.At) {
			atHandoff++
			t.Logf("VIP request at %s failed in the drain of a node on the previous release: %v", r.At.Format("15:04:05.000"), r.Err)
			continue
		}
		failed++
		t.Errorf("VIP request at %s failed outside the previous release's drains: %v", r.At.Format("15:04:05.000"), r.Err)
	}
	t.Logf("VIP requests: %d; failed in the previous release's %d drains: %d; at this release's %d planned switches: %d; otherwise: %d",
		len(results), len(handoffs), atHandoff, len(switches), atSwitch, failed)
	if atSwitch > len(switches) {
		t.Errorf("%d VIP requests failed at %d planned switches, want at most one each", atSwitch, len(switches))
	}
	w.checkNoneLost(t, n, "after the rolling upgrade")
	s, err := n.Nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Members {
		if m.Version != testnet.CurrentVersion || m.State != "active" {
			t.Errorf("after the upgrade %s is %s at version %q, want active at %s", m.Name, m.State, m.Version, testnet.CurrentVersion)
		}
	}
	if len(s.Groups) != 1 || s.Groups[0].Failovers != uint64(moves) {
		t.Errorf("group db changed owner %d times, want only the %d planned moves: %+v", s.Groups[0].Failovers, moves, s.Groups)
	}
	if ev, err := n.Nodes[0].Events(); err == nil {
		for _, e := range ev {
			if e.Type == "node_refused" || (e.Type == "group_failover" && !strings.Contains(e.Detail, "move")) {
				t.Logf("event: %s %s %s", e.Type, e.Node, e.Detail)
			}
		}
	}
}
