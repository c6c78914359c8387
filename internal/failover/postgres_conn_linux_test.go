package failover

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/postmaster"
)

// The agent's lasting connection to a real server: answers read as psql
// -At prints them; a server whose pg_hba.conf lacks the mapping (set up by
// an earlier release) is given it once; the connection comes back after
// the server restarts.
func TestLocalSQLOnARealServer(t *testing.T) {
	p := realPrimary(t, 15439)
	ctx := context.Background()

	if got, err := p.sql(ctx, "SELECT 1, NULL, true, 'a b'; SELECT 'x' UNION ALL SELECT 'y'"); err != nil || got != "1||t|a b\nx\ny" {
		t.Fatalf("answer %q, %v", got, err)
	}
	if _, err := p.sql(ctx, "SELECT nosuchcolumn"); err == nil || !strings.Contains(err.Error(), "42703") {
		t.Fatalf("a bad question: %v", err)
	}
	if got, _ := p.sql(ctx, "SELECT 2"); got != "2" {
		t.Fatalf("after an error: %q", got)
	}
	if h, err := p.Monitor(ctx); h != Primary {
		t.Fatalf("monitor: %v %v", h, err)
	}

	// An earlier release's pg_hba.conf: no mapping for the agent.
	p.closeConn()
	hba := filepath.Join(p.rc.DataDir, "pg_hba.conf")
	b, _ := os.ReadFile(hba)
	old := strings.Replace(string(b), "local all postgres peer map="+identMap+"\n", "", 1)
	os.WriteFile(hba, []byte(old), 0o600)
	if err := p.pgctl(ctx, "reload"); err != nil {
		t.Fatal(err)
	}
	if got, err := p.sql(ctx, "SELECT 3"); err != nil || got != "3" {
		t.Fatalf("without the mapping: %q, %v", got, err)
	}
	if b, _ := os.ReadFile(hba); !strings.Contains(string(b), "peer map="+identMap) {
		t.Fatal("pg_hba.conf was not given the mapping back")
	}

	// The server restarts under the connection.
	if err := p.pgctl(ctx, "-m", "fast", "-w", "stop"); err != nil {
		t.Fatal(err)
	}
	if err := p.startServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The first question after it finds the old connection dead and is
	// asked again on a new one (a failed promote in the chaos campaign).
	if got, err := p.sql(ctx, "SELECT 5"); err != nil || got != "5" {
		t.Fatalf("after a restart: %q, %v", got, err)
	}

	// kill -9 of the postmaster: not running at once, whether or not
	// init has reaped it yet, and stopping it does not wait.
	b, _ = os.ReadFile(filepath.Join(p.rc.DataDir, "postmaster.pid"))
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(first)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for h, _ := p.Monitor(ctx); h != NotRunning; h, _ = p.Monitor(ctx) {
		if time.Since(start) > time.Second {
			t.Fatalf("a killed postmaster is %v after %v", h, time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(ctx); err != nil || time.Since(start) > time.Second {
		t.Fatalf("stopping a killed server: %v after %v", err, time.Since(start))
	}
}

// A postmaster that dies while pg_ctl stops it (killed in the moment
// Monitor still saw it alive) is stopped as soon as it is dead, not when
// init reaps it: pg_ctl waits for the pid file a killed postmaster never
// removes until its pid is gone, then fails (1.6 s in a chaos run).
func TestStopADyingServer(t *testing.T) {
	p := realPrimary(t, 15442)
	ctx := context.Background()
	pid, _ := p.postmasterPID()
	// Stopped, the postmaster takes pg_ctl's SIGQUIT only when it runs
	// again; it is killed first.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	killed := make(chan time.Time, 1)
	go func() {
		// Killed once pg_ctl's SIGQUIT waits in its pending signals.
		for deadline := time.Now().Add(5 * time.Second); !quitPending(pid) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		killed <- time.Now()
	}()
	start := time.Now()
	if err := p.stopServer(ctx, "immediate", 30); err != nil {
		t.Fatalf("stopping a server killed meanwhile: %v", err)
	}
	if took := time.Since(<-killed); took > 500*time.Millisecond {
		t.Fatalf("stopped %v after the kill (%v after the stop began)", took, time.Since(start))
	}
}

// An agent started under a German locale still reads pg_controldata
// (whose field names are translated): the parsed tools run in the C
// locale, and the server the agent creates keeps the agent's.
func TestToolsUnderAForeignLocale(t *testing.T) {
	if _, err := os.Stat("/usr/share/locale/de/LC_MESSAGES/pg_controldata-15.mo"); err != nil {
		t.Skip("needs PostgreSQL's German messages (/usr/share/locale/de)")
	}
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("LC_ALL", "")
	t.Setenv("LANGUAGE", "de")
	p := realPrimary(t, 15441)
	ctx := context.Background()
	// The translation is there to be avoided: the tool alone speaks German.
	cmd := exec.Command(p.bin("pg_controldata"), "-D", p.rc.DataDir)
	if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "Datenbank") {
		t.Skipf("pg_controldata does not speak German here: %.80q", out)
	}
	out, _, err := p.run(ctx, 10*time.Second, "pg_controldata", "-D", p.rc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if tl, err := dataTimeline(out); err != nil || tl != 1 {
		t.Fatalf("timeline %d, %v from %.200q", tl, err, out)
	}
	if got, err := p.sql(ctx, "SHOW lc_collate"); err != nil || got != "C.UTF-8" {
		t.Fatalf("the cluster's collation is %q (%v), not the agent's C.UTF-8", got, err)
	}
}

// quitPending says whether SIGQUIT waits in pid's pending signals
// (/proc/PID/status, ShdPnd: bit 2 of the mask is signal 3).
func quitPending(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "ShdPnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(syscall.SIGQUIT-1)) != 0
		}
	}
	return false
}

// realPrimary is realServer's agent, its server started as the primary
// (epoch 1) and stopped at the end of the test.
func realPrimary(t *testing.T, port int) *postgres {
	t.Helper()
	p := realServer(t, port)()
	ctx := context.Background()
	if err := p.Promote(ctx, Params{Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); p.pgctl(ctx, "-m", "immediate", "stop") })
	return p
}

// realServer skips unless a real PostgreSQL 15 server can run here (root,
// runuser) and returns a maker of agents for a group with one owner, n1,
// whose data lives in a fresh directory and whose server listens on
// port. Each call is a new agent on the same data (an agent restart).
func realServer(t *testing.T, port int) func() *postgres {
	t.Helper()
	const bin = "/usr/lib/postgresql/15/bin"
	if os.Geteuid() != 0 {
		t.Skip("needs root (the server runs as user postgres)")
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		t.Skip("needs PostgreSQL 15 in " + bin)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Skip("needs runuser")
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := config.GroupConfig{Name: "db", Owners: []string{"n1"}, Resource: config.ResourceConfig{Type: "postgresql", BinDir: bin,
		DataDir: filepath.Join(dir, "data"), Port: port, OSUser: "postgres", ReplicationUser: "replicator", PasswordFile: pw}}
	return func() *postgres {
		res, err := newPostgres(g, "n1", dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.(*postgres)
	}
}

// Fence freezes a real server: a commit on a session opened before waits
// (no acknowledgement while the lease is out), the agent asks nothing of
// it meanwhile, Promote thaws it and the commit completes; an agent that
// starts while the server is frozen sees it frozen, and Stop kills it
// without thawing it.
func TestFenceFreezesTheServer(t *testing.T) {
	newAgent := realServer(t, 15440)
	p := newAgent()
	ctx := context.Background()
	if err := p.Promote(ctx, Params{Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pid, _ := p.postmasterPID(); pid != 0 {
			postmaster.Kill(pid)
		}
		p.Close()
	})
	if _, err := p.sql(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	client, err := p.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)

	if err := p.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if h, _ := p.Monitor(ctx); h != Primary || !p.Fenced() {
		t.Fatalf("frozen server: monitor %v, fenced %v", h, p.Fenced())
	}
	if _, err := p.sql(ctx, "SELECT 1"); err == nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("a question to the frozen server: %v after %v", err, time.Since(start))
	}
	done := make(chan error, 1)
	go func() { _, err := client.Exec(ctx, "INSERT INTO t VALUES (1)").ReadAll(); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a commit returned (%v) while the server was frozen", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := p.Promote(ctx, Params{Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the commit after the thaw: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the commit did not complete after the thaw")
	}
	if got, err := p.sql(ctx, "SELECT count(*) FROM t"); err != nil || got != "1" {
		t.Fatalf("after the thaw: %q, %v", got, err)
	}

	// Frozen, then the agent restarts: the new one sees it, and its Stop
	// kills the server without letting it run.
	if err := p.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	p2 := newAgent()
	defer p2.Close()
	if !p2.Fenced() {
		t.Fatal("a new agent does not see the frozen server")
	}
	if err := p2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := p2.Monitor(ctx); h != NotRunning || p2.Fenced() {
		t.Fatalf("after Stop: %v %v, fenced %v", h, err, p2.Fenced())
	}
}
