//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const (
	pgBin = testnet.PGBin
	dbVIP = "10.77.1.201"
)

func pgConfig(dir string, i int) string { return testnet.PostgresGroup("db", dbVIP+"/24", dir, i) }

// startPG starts three nodes running group db (PostgreSQL, node1 and node2
// its owners, all three voters) and returns them and the data directory;
// a failed test logs the owners' failover lines and PostgreSQL log tails.
func startPG(t *testing.T) (*testnet.Net, string) {
	t.Helper()
	if _, err := os.Stat(pgBin + "/postgres"); err != nil {
		t.Skip("skipping: PostgreSQL 15 is not installed (apt-get install postgresql-15)")
	}
	dir := pgDir(t)
	if err := os.WriteFile(filepath.Join(dir, "replication.pass"), []byte("repl-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(i int) string { return pgConfig(dir, i) }})
	n.Start()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, nd := range n.Nodes[:2] {
			t.Logf("--- %s log (failover lines):", nd.Name)
			for _, l := range strings.Split(nd.Log(), "\n") {
				if strings.Contains(l, "component=failover") && !strings.Contains(l, "raft") {
					t.Log(l)
				}
			}
			pl, _ := os.ReadFile(filepath.Join(n.Dir, nd.Name+".state", "pg-db", "postgresql.log"))
			t.Logf("--- %s postgresql.log (tail):\n%s", nd.Name, tail(string(pl), 3000))
		}
	})
	return n, dir
}

// pgDir is a test's directory for its nodes' PostgreSQL data; the servers
// in it are killed when the test ends, after its agents stopped (the
// servers of standbys and of killed agents outlive them).
func pgDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		for i := 1; i <= 5; i++ {
			testnet.KillServer(filepath.Join(dir, fmt.Sprintf("node%d", i), "pgdata"))
		}
	})
	return dir
}

// writer inserts 1, 2, 3 ... through the VIP from the client namespace,
// one psql per row, and remembers which inserts were acknowledged.
type writer struct {
	n     *testnet.Net
	mu    sync.Mutex
	acked []int
	at    []time.Time
	next  int
	stop  chan struct{}
	done  chan struct{}
}

func (w *writer) insert(id int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", w.n.Client, pgBin+"/psql", "-X", "-q",
		"-h", dbVIP, "-U", "app", "-d", "postgres", "-c", fmt.Sprintf("INSERT INTO t VALUES (%d)", id))
	cmd.Env = append(os.Environ(), "PGPASSWORD=app-pass", "PGCONNECT_TIMEOUT=1")
	return cmd.Run() == nil
}

func (w *writer) start() {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			w.next++
			id := w.next
			w.mu.Unlock()
			if w.insert(id) {
				w.mu.Lock()
				w.acked = append(w.acked, id)
				w.at = append(w.at, time.Now())
				w.mu.Unlock()
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
}

// resume starts writing again and returns once a write went through.
func (w *writer) resume(n *testnet.Net) {
	from := time.Now()
	w.start()
	n.WaitFor(10*time.Second, "writes acknowledged again", func() bool { _, ok := w.firstAckAfter(from); return ok })
}

func (w *writer) halt() {
	close(w.stop)
	<-w.done
}

// firstAckAfter is the first acknowledged insert after t.
func (w *writer) firstAckAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.at {
		if a.After(t) {
			return a, true
		}
	}
	return time.Time{}, false
}

// outage is the longest span between consecutive acknowledged inserts
// from 2 s before t on.
func (w *writer) outage(t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	for i := 1; i < len(w.at); i++ {
		if w.at[i].After(t.Add(-2*time.Second)) && w.at[i].Sub(w.at[i-1]) > longest {
			longest = w.at[i].Sub(w.at[i-1])
		}
	}
	return longest
}

// longestGapSince is the longest span between consecutive acknowledged
// inserts, both at or after from.
func (w *writer) longestGapSince(from time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	for i := 1; i < len(w.at); i++ {
		if !w.at[i-1].Before(from) && w.at[i].Sub(w.at[i-1]) > longest {
			longest = w.at[i].Sub(w.at[i-1])
		}
	}
	return longest
}

// rows reads every id in table t through the VIP.
func rows(t *testing.T, n *testnet.Net) map[int]bool {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.Client, pgBin+"/psql", "-X", "-Atq", "-h", dbVIP, "-U", "app", "-d", "postgres", "-c", "SELECT id FROM t")
	cmd.Env = append(os.Environ(), "PGPASSWORD=app-pass", "PGCONNECT_TIMEOUT=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reading the table: %v\n%s", err, out)
	}
	got := map[int]bool{}
	for _, l := range strings.Fields(string(out)) {
		id, _ := strconv.Atoi(l)
		got[id] = true
	}
	return got
}

func (w *writer) checkNoneLost(t *testing.T, n *testnet.Net, what string) {
	t.Helper()
	got := rows(t, n)
	w.mu.Lock()
	defer w.mu.Unlock()
	lost := 0
	for _, id := range w.acked {
		if !got[id] {
			lost++
		}
	}
	t.Logf("%s: %d inserts acknowledged, %d rows in the table, %d acknowledged rows missing", what, len(w.acked), len(got), lost)
	if lost > 0 {
		t.Errorf("%s: %d acknowledged writes lost", what, lost)
	}
}

// createAppTable makes the application's user and table on the primary
// nd, as the DBA would.
func createAppTable(t *testing.T, n *testnet.Net, nd *testnet.Node) {
	t.Helper()
	sock := filepath.Join(n.Dir, nd.Name+".state", "pg-db")
	setup := exec.Command("ip", "netns", "exec", nd.NS, "runuser", "-u", "postgres", "--", pgBin+"/psql", "-X", "-h", sock, "-U", "postgres", "-d", "postgres",
		"-c", "CREATE ROLE app LOGIN PASSWORD 'app-pass'", "-c", "CREATE TABLE t (id int PRIMARY KEY)", "-c", "GRANT ALL ON t TO app")
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("creating the app's table: %v\n%s", err, out)
	}
}

func waitGroup(t *testing.T, n *testnet.Net, nd *testnet.Node, within time.Duration, what string, ok func(owner, state, repl, standby string) bool) {
	t.Helper()
	n.WaitFor(within, what, func() bool {
		s, err := nd.Status()
		if err != nil || len(s.Groups) != 1 {
			return false
		}
		g := s.Groups[0]
		return ok(g.Owner, string(g.State), g.Replication, g.Standby)
	})
}

// TestPostgresFailover: a real PostgreSQL 15 primary and synchronous
// streaming standby as failover group db. A client writes through the
// group VIP all along. kill -9 of the owner's agent (its postgres keeps
// running): the standby is promoted, and every insert the client saw
// acknowledged is in the table. The old owner comes back as a standby
// (pg_rewind), and a planned move hands the group back, again without a
// lost write.
func TestPostgresFailover(t *testing.T) {
	n, dir := startPG(t)
	waitGroup(t, n, n.Nodes[2], 60*time.Second, "db online on node1 with node2 as synchronous standby", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})
	createAppTable(t, n, n.Nodes[0])
	w := &writer{n: n}
	w.start()
	n.WaitFor(10*time.Second, "writes acknowledged through the VIP", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acked) > 20
	})

	// kill -9 of the owner's agent; its postgres runs on, unfenced but for
	// the lease in the kernel and synchronous replication.
	killed := time.Now()
	n.Nodes[0].Kill()
	waitGroup(t, n, n.Nodes[2], 15*time.Second, "db online on node2", func(o, s, r, sb string) bool {
		return o == "node2" && (s == "online" || s == "degraded")
	})
	// The write outage the client saw: the longest time between two
	// acknowledged inserts around the kill.
	n.WaitFor(10*time.Second, "writes acknowledged by the new primary", func() bool {
		_, ok := w.firstAckAfter(killed.Add(3 * time.Second))
		return ok || w.outage(killed) > 0 && time.Since(killed) > 5*time.Second
	})
	gap := w.outage(killed)
	t.Logf("kill -9 of the owner: longest time without an acknowledged write: %v", gap)
	if gap > 3*time.Second {
		t.Errorf("writes stalled for %v, want <= 3 s", gap)
	}
	time.Sleep(time.Second)
	w.halt()
	w.checkNoneLost(t, n, "after kill -9 of the owner")

	// The old owner comes back: its stale primary is stopped, rewound and
	// made a standby; commits wait for it again.
	n.Nodes[0].Start()
	waitGroup(t, n, n.Nodes[2], 60*time.Second, "db online on node2 with node1 as synchronous standby", func(o, s, r, sb string) bool {
		return o == "node2" && s == "online" && r == "sync" && sb == "node1"
	})

	// Planned move back while writing.
	w.resume(n)
	out, code := n.Nodes[2].Ctl("move", "db", "node1")
	if code != 0 {
		t.Fatalf("move: exit %d\n%s", code, out)
	}
	t.Logf("clusterctl move:\n%s", out)
	time.Sleep(time.Second)
	w.halt()
	w.checkNoneLost(t, n, "after the planned move")
	waitGroup(t, n, n.Nodes[2], 60*time.Second, "db online on node1 with node2 as synchronous standby again", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})

	// The standby's cables are pulled: commits wait for it until the
	// primary knows it is gone and the quorum has dropped it from the
	// record, then go on without it (degraded). It comes back, catches up
	// and is synchronous again.
	resumed := time.Now()
	w.resume(n)
	cut := time.Now()
	n.Nodes[1].Cable(testnet.Public, false)
	n.Nodes[1].Cable(testnet.Private, false)
	waitGroup(t, n, n.Nodes[2], 20*time.Second, "db degraded on node1", func(o, s, r, sb string) bool {
		return o == "node1" && s == "degraded" && sb == ""
	})
	degraded := time.Now()
	n.WaitFor(20*time.Second, "writes acknowledged without the standby", func() bool {
		_, ok := w.firstAckAfter(degraded)
		return ok
	})
	t.Logf("standby cut off: longest time without an acknowledged write: %v (cut %v after writes resumed)", w.longestGapSince(resumed), cut.Sub(resumed).Round(time.Millisecond))
	n.Nodes[1].Cable(testnet.Public, true)
	n.Nodes[1].Cable(testnet.Private, true)
	waitGroup(t, n, n.Nodes[2], 30*time.Second, "db online on node1 with node2 synchronous after the cables are back", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})
	w.checkNoneLost(t, n, "after the standby was cut off and came back")

	// kill -9 of the primary's postmaster (its agent lives): the group
	// fails over, and the old primary comes back as a synchronous standby
	// (it must rewind from the new primary only once that has finished
	// promoting, or its own crash recovery runs past the fork and it can
	// never follow).
	pmKilled := time.Now()
	if err := testnet.SignalPostmaster(filepath.Join(dir, "node1", "pgdata"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, n, n.Nodes[2], 20*time.Second, "db online on node2 after the postmaster was killed", func(o, s, r, sb string) bool {
		return o == "node2" && (s == "online" || s == "degraded")
	})
	t.Logf("postmaster killed: group online on node2 after %v", time.Since(pmKilled).Round(10*time.Millisecond))
	waitGroup(t, n, n.Nodes[2], 60*time.Second, "the old primary back as node2's synchronous standby", func(o, s, r, sb string) bool {
		return o == "node2" && s == "online" && r == "sync" && sb == "node1"
	})
	t.Logf("postmaster killed: node1 synchronous standby again after %v", time.Since(pmKilled).Round(10*time.Millisecond))
	w.halt()
	w.checkNoneLost(t, n, "after the postmaster was killed")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
