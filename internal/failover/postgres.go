package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/postmaster"
	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/jackc/pgx/v5/pgconn"
)

// postgres drives a PostgreSQL primary and its streaming standbys with the
// server's own tools (initdb, pg_ctl, pg_basebackup, pg_rewind) and asks
// the local server over one lasting connection (sql).
//
// No acknowledged write is lost: with synchronous: true the primary names
// the other owners in synchronous_standby_names, so a commit returns only
// once a standby has flushed it, and it reports that standby to the
// quorum, which records it (Record.SyncWith); only that standby may be
// promoted automatically. When the standby goes away the primary keeps
// waiting (commits stall) until the quorum's record no longer names the
// standby, and only then stops waiting: from that moment no node is known
// to hold every commit, so none is promoted automatically.
type postgres struct {
	rc      config.ResourceConfig
	log     *slog.Logger
	group   string
	node    string
	owners  []string
	sockDir string
	logFile string
	pass    string // replication password (from password_file)
	passDir string // where the libpq password file lives

	// down reports whether membership says a node failed or left: a
	// dead standby's connection lingers until the WAL sender times out.
	down func(node string) bool

	mu       sync.Mutex
	absentAt time.Time // when the primary last saw no streaming standby (zero: one is there)
	// A standby's walreceiver: not streaming since silentSince (zero: it
	// streams); rewind: rewind before the next start.
	silentSince time.Time
	rewind      bool
	// stuck: the standby's starts since it last streamed that found it
	// on the primary's timeline (nothing to rewind) after it did not
	// stream (stuckAgain).
	stuck int
	// syncFrom: per synchronous standby, the primary's WAL position when
	// it was first seen synchronous (see Replication).
	syncFrom map[string]uint64
	// frozen: the server is fenced in place (Fence): every process of it
	// stopped with SIGSTOP. Nothing may be asked of it until Promote
	// thaws it or Stop kills it.
	frozen        bool
	frozenChecked bool // Fenced has looked for a server frozen before this agent

	// connMu guards the lasting connection to the local server (sql);
	// mapped: pg_ident.conf was rewritten after a refused connection.
	connMu sync.Mutex
	conn   *pgconn.PgConn
	mapped bool
}

func newPostgres(g config.GroupConfig, node, stateDir string, log *slog.Logger, down func(string) bool) (Resource, error) {
	rc := g.Resource
	b, err := os.ReadFile(rc.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("group %s: reading resource.password_file: %w", g.Name, err)
	}
	pass := strings.TrimSpace(string(b))
	if pass == "" || strings.ContainsAny(pass, ":\\\n'") {
		return nil, fmt.Errorf("group %s: %s must hold one password without ':', '\\' or quotes", g.Name, rc.PasswordFile)
	}
	// What would otherwise fail at the first promote, every time, with
	// the group bouncing between owners: say it at start.
	if _, err := os.Stat(binPath(rc.BinDir, "pg_ctl")); err != nil {
		return nil, fmt.Errorf("group %s: resource.bin_dir %s has no pg_ctl (is PostgreSQL installed? Debian: apt-get install postgresql-15)", g.Name, rc.BinDir)
	}
	if err := runAs(exec.Command("true"), rc.OSUser); err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}
	dir := filepath.Join(stateDir, "pg-"+g.Name)
	if down == nil {
		down = func(string) bool { return false }
	}
	p := &postgres{syncFrom: map[string]uint64{}, rc: rc, log: log, down: down, group: g.Name, node: node, owners: g.Owners, sockDir: dir,
		logFile: filepath.Join(dir, "postgresql.log"), pass: pass, passDir: dir}
	return p, nil
}

func (p *postgres) Roles() bool { return true }

// prepare makes the directories the server and its tools need, owned by
// the server's OS user, and the libpq password file.
func (p *postgres) prepare() error {
	for _, d := range []string{p.sockDir, p.rc.DataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := chownTo(d, p.rc.OSUser); err != nil {
			return err
		}
		// The server's user must reach these directories through the
		// agent's (root's 0700 state_dir, say): make the directories
		// above them traversable, not listable.
		if err := traversable(filepath.Dir(d)); err != nil {
			return err
		}
	}
	pf := filepath.Join(p.passDir, "pgpass")
	line := fmt.Sprintf("*:%d:*:%s:%s\n", p.rc.Port, p.rc.ReplicationUser, p.pass)
	if err := os.WriteFile(pf, []byte(line), 0o600); err != nil {
		return err
	}
	return chownTo(pf, p.rc.OSUser)
}

// traversable adds search (x) permission for everyone to dir and its
// ancestors that lack it.
func traversable(dir string) error {
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if m := fi.Mode().Perm(); m&0o001 == 0 {
			if err := os.Chmod(dir, m|0o011); err != nil {
				return fmt.Errorf("making %s traversable for the database server: %w", dir, err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func binPath(dir, name string) string {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(dir, name)
}

func (p *postgres) bin(name string) string { return binPath(p.rc.BinDir, name) }

// run runs a PostgreSQL tool as the server's OS user.
func (p *postgres) run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin(name), args...)
	cmd.Env = toolEnv(os.Environ(), name, filepath.Join(p.passDir, "pgpass"))
	cmd.Dir = p.sockDir
	if err := runAs(cmd, p.rc.OSUser); err != nil {
		return "", -1, err
	}
	if name == "pg_rewind" || name == "pg_basebackup" {
		// They write the data directory: not past the agent's death
		// (pg_ctl is not: the server it starts outlives the agent).
		dieWithAgent(cmd)
	}
	cmd.WaitDelay = pipeWait
	out, err := cmd.CombinedOutput()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // exited 0; a child of it (a server pg_ctl started) kept the output open
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), fmt.Errorf("%s: exit %d: %s", name, ee.ExitCode(), strings.TrimSpace(string(out)))
	}
	if err != nil {
		return string(out), -1, fmt.Errorf("%s: %w", name, err)
	}
	return string(out), 0, nil
}

// parsedTools are the PostgreSQL tools whose output the agent reads:
// pg_controldata's field names and pg_rewind's messages are translated
// under a non-English locale (LANGUAGE=de gives "Datenbank-Cluster-Status"),
// and the agent would then find no timeline and miss a rewind that rewound
// nothing. They run in the C locale.
var parsedTools = map[string]bool{"pg_controldata": true, "pg_rewind": true, "psql": true}

// toolEnv is the environment a PostgreSQL tool runs in: the agent's, with
// the password file and a connect timeout, and for a tool whose output is
// parsed the C locale. initdb and pg_ctl keep the agent's locale: initdb
// takes the new cluster's collation and messages from it, and the server
// pg_ctl starts inherits it.
func toolEnv(env []string, name, passFile string) []string {
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if parsedTools[name] && (k == "LC_ALL" || k == "LC_MESSAGES" || k == "LANGUAGE") {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "PGPASSFILE="+passFile, "PGCONNECT_TIMEOUT=5")
	if parsedTools[name] {
		// LANGUAGE is emptied too: gettext reads it before LC_MESSAGES
		// under any locale but C, and not every libc counts C.UTF-8 as C.
		out = append(out, "LC_ALL=C", "LANGUAGE=")
	}
	return out
}

func (p *postgres) empty() bool {
	ents, err := os.ReadDir(p.rc.DataDir)
	return err != nil || len(ents) == 0
}

func (p *postgres) exists(name string) bool {
	_, err := os.Stat(filepath.Join(p.rc.DataDir, name))
	return err == nil
}

// conninfo is how a standby reaches the primary.
func (p *postgres) conninfo(addr string) string {
	return fmt.Sprintf("host=%s port=%d user=%s passfile=%s application_name=%s connect_timeout=2",
		addr, p.rc.Port, p.rc.ReplicationUser, filepath.Join(p.passDir, "pgpass"), p.node)
}

// writeConf writes the settings clusterd owns into clusterd.conf (included
// from postgresql.conf) and, for a standby, standby.signal.
func (p *postgres) writeConf(primaryAddr string) error {
	conf := fmt.Sprintf(`# Written by clusterd for group %s; changes are overwritten.
listen_addresses = '*'
port = %d
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 10
# WAL a standby that was away may still find here. pg_rewind (15) copies
# every WAL file of the new primary in full, so this is also what bringing
# an old primary back costs: 512MB made each rewind take 7-8 s (the chaos
# campaign). A standby away for longer is copied afresh.
wal_keep_size = '128MB'
hot_standby = on
wal_log_hints = on
synchronous_commit = on
recovery_target_timeline = 'latest'
# Notice a dead standby (and a dead primary) in seconds, not the default
# minute: commits wait for the synchronous standby until the primary
# knows it is gone.
wal_sender_timeout = '3s'
wal_receiver_timeout = '3s'
wal_receiver_status_interval = '1s'
`, p.group, p.rc.Port, p.sockDir)
	if primaryAddr != "" {
		conf += fmt.Sprintf("primary_conninfo = '%s'\n", p.conninfo(primaryAddr))
	}
	f := filepath.Join(p.rc.DataDir, "clusterd.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := chownTo(f, p.rc.OSUser); err != nil {
		return err
	}
	main := filepath.Join(p.rc.DataDir, "postgresql.conf")
	b, err := os.ReadFile(main)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "include_if_exists = 'clusterd.conf'") {
		b = append(b, []byte("\ninclude_if_exists = 'clusterd.conf'\n")...)
		if err := os.WriteFile(main, b, 0o600); err != nil {
			return err
		}
	}
	if err := p.writeHBA(); err != nil {
		return err
	}
	if primaryAddr != "" {
		sig := filepath.Join(p.rc.DataDir, "standby.signal")
		if err := os.WriteFile(sig, nil, 0o600); err != nil {
			return err
		}
		return chownTo(sig, p.rc.OSUser)
	}
	return nil
}

const (
	hbaBegin = "# clusterd begin: this block is rewritten by clusterd (resource.hba)"
	hbaEnd   = "# clusterd end"
)

// writeHBA keeps clusterd's block at the top of pg_hba.conf (the first
// matching line wins): the replication user's access for standbys and
// pg_rewind, then the operator's resource.hba lines. Every owner gets the
// same block, whichever node it was copied from.
func (p *postgres) writeHBA() error {
	var blk strings.Builder
	if runtime.GOOS != "windows" {
		// The agent's own connection (sql): its OS user maps to the
		// server's role (writeIdent). Windows has no peer authentication.
		fmt.Fprintf(&blk, "local all %s peer map=%s\n", p.rc.OSUser, identMap)
	}
	fmt.Fprintf(&blk, "host replication %[1]s all scram-sha-256\nhost postgres %[1]s all scram-sha-256\n", p.rc.ReplicationUser)
	for _, l := range p.rc.HBA {
		blk.WriteString(l + "\n")
	}
	if err := p.writeBlock("pg_hba.conf", hbaBegin, hbaEnd, blk.String()); err != nil {
		return err
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	return p.writeIdent()
}

// writeBlock puts body between begin and end at the top of the data
// directory's file name, in place of the block written before (the first
// matching line of pg_hba.conf and pg_ident.conf wins). The file is
// replaced atomically: a full disk leaves the old one, never half of it.
func (p *postgres) writeBlock(name, begin, end, body string) error {
	f := filepath.Join(p.rc.DataDir, name)
	b, err := os.ReadFile(f)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	rest := string(b)
	if i := strings.Index(rest, begin); i >= 0 {
		if j := strings.Index(rest[i:], end); j >= 0 {
			rest = rest[:i] + strings.TrimPrefix(rest[i+j+len(end):], "\n")
		}
	}
	if err := statefile.Write(f, []byte(begin+"\n"+body+end+"\n"+rest)); err != nil {
		return err
	}
	return chownTo(f, p.rc.OSUser)
}

func (p *postgres) pgctl(ctx context.Context, args ...string) error {
	a := append([]string{"-D", p.rc.DataDir}, args...)
	_, _, err := p.run(ctx, 90*time.Second, "pg_ctl", a...)
	return err
}

// reload makes the running server read its configuration again.
func (p *postgres) reload(ctx context.Context) error {
	_, err := p.sql(ctx, "SELECT pg_reload_conf()")
	return err
}

// stopServer stops the server with pg_ctl (mode "fast" or "immediate",
// waiting up to secs) and returns as soon as the postmaster is dead where
// the OS tells (postmaster.Alive). pg_ctl counts a dead postmaster that
// init has not reaped yet as running, and waits for its pid file, which a
// killed postmaster never removes, until init reaps it: a chaos run
// (seed 61, kill -9 of the primary's postmaster) lost 1.6 s that way, then
// pg_ctl failed ("server does not shut down"). A postmaster killed in the
// moment between its socket closing and its death looks alive to Monitor,
// so Stop cannot leave this to Monitor alone.
func (p *postgres) stopServer(ctx context.Context, mode string, secs int) error {
	pid, _ := p.postmasterPID()
	dead := func() bool {
		alive, known := postmaster.Alive(pid)
		return pid != 0 && known && !alive
	}
	if dead() {
		return nil // pg_ctl would signal a zombie and wait, or fail on a reaped pid
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.pgctl(ctx, "-m", mode, "-w", "-t", strconv.Itoa(secs), "stop") }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && dead() {
				return nil // "server does not shut down": it died, and was reaped
			}
			return err
		case <-tick.C:
			if dead() {
				cancel() // pg_ctl has nothing left to wait for
				<-done
				if cur, _ := p.postmasterPID(); cur == pid {
					// It died without removing its pid file: killed.
					p.log.Info("the postmaster is dead (killed): stopped without waiting for init to reap it", slog.Int("pid", pid))
				}
				return nil
			}
		}
	}
}

func (p *postgres) startServer(ctx context.Context) error {
	if err := p.clearStalePID(); err != nil {
		return err
	}
	return p.pgctl(ctx, "-w", "-t", "60", "-l", p.logFile, "start")
}

// clearStalePID removes a postmaster.pid whose process is dead. A killed
// postmaster stays a zombie until init reaps it, and PostgreSQL (the
// server, and pg_rewind's single-user crash recovery) takes a pid that
// still exists for a running server: "lock file postmaster.pid already
// exists". Where init reaps lazily (a container's minimal init), every
// rewind after a postmaster kill failed that way and the standby was
// copied afresh instead (TestPostgresFailover's logs).
func (p *postgres) clearStalePID() error {
	pid, _ := p.postmasterPID()
	if pid == 0 {
		return nil
	}
	if alive, known := postmaster.Alive(pid); !known || alive {
		return nil
	}
	f := filepath.Join(p.rc.DataDir, "postmaster.pid")
	if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing the dead postmaster's %s: %w", f, err)
	}
	p.log.Info("removed the pid file of a dead postmaster", slog.Int("pid", pid))
	return nil
}

// initPrimary creates the cluster on the first owner: initdb with data
// checksums (pg_rewind needs them or wal_log_hints), replication access
// for the replication user, and the user itself.
func (p *postgres) initPrimary(ctx context.Context) error {
	if _, _, err := p.run(ctx, 120*time.Second, "initdb", "-D", p.rc.DataDir, "--data-checksums", "-U", p.rc.OSUser,
		"--auth-local=peer", "--auth-host=scram-sha-256"); err != nil {
		return err
	}
	if err := p.writeConf(""); err != nil {
		return err
	}
	if err := p.startServer(ctx); err != nil {
		return err
	}
	u := p.rc.ReplicationUser
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %q WITH REPLICATION LOGIN PASSWORD '%s'", u, p.pass),
		// What pg_rewind reads on the source.
		fmt.Sprintf("GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO %q", u),
		fmt.Sprintf("GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO %q", u),
		fmt.Sprintf("GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO %q", u),
		fmt.Sprintf("GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO %q", u),
	} {
		if _, err := p.sql(ctx, q); err != nil {
			return fmt.Errorf("setting up replication: %w", err)
		}
	}
	return nil
}

// Start runs this node as a standby of p.Primary: a fresh copy of the
// primary when it has no data, a rewind when its data was a primary's.
func (p *postgres) Start(ctx context.Context, pr Params) error {
	if err := p.prepare(); err != nil {
		return err
	}
	if pr.PrimaryAddr == "" {
		return errors.New("no primary to follow")
	}
	if err := p.checkInterruptedRewind(); err != nil {
		return err
	}
	h, _ := p.Monitor(ctx)
	switch {
	case p.empty():
		if err := p.clone(ctx, pr); err != nil {
			return err
		}
	case h == Standby:
		// Already a standby: point it at the (new) primary.
		if err := p.writeConf(pr.PrimaryAddr); err != nil {
			return err
		}
		return p.reload(ctx)
	case !p.exists("standby.signal"):
		// This node's data was a primary's: wind it back to where the new
		// primary's history forked, so it can follow. Only from a primary
		// that has finished promoting: rewinding from one still on our
		// timeline finds "no rewind required" while our own WAL has
		// already run past the fork.
		if err := p.sourcePromoted(ctx, pr.PrimaryAddr); err != nil {
			return err
		}
		if err := p.rewindFrom(ctx, pr, h); err != nil {
			return err
		}
	case p.takeRewind():
		// A standby that did not stream.
		switch theirs, ours, err := p.timelines(ctx, pr.PrimaryAddr); {
		case err != nil || theirs > ours:
			// Its history forked off the primary's (or that is not
			// known: pg_rewind finds out).
			if err := p.rewindFrom(ctx, pr, h); err != nil {
				return err
			}
		case p.stuckAgain():
			// On the primary's timeline, the primary reachable, and a
			// restart did not make it stream: its own WAL is damaged
			// (PostgreSQL then waits forever for WAL it will not take).
			if h != NotRunning {
				if err := p.stopServer(ctx, "immediate", 30); err != nil {
					return fmt.Errorf("stopping a standby that does not stream: %w", err)
				}
			}
			aside, err := p.moveAside("not-streaming")
			if err != nil {
				return fmt.Errorf("moving aside the data of a standby that does not stream: %w", err)
			}
			p.log.Warn("the standby did not stream again after a restart although the primary is reachable on its timeline: copying the primary afresh",
				slog.String("kept", aside))
			if err := p.clone(ctx, pr); err != nil {
				return err
			}
		}
	}
	if err := p.writeConf(pr.PrimaryAddr); err != nil {
		return err
	}
	if h, _ := p.Monitor(ctx); h == Standby {
		return p.reload(ctx)
	}
	p.log.Info("starting the standby", slog.String("primary", pr.Primary))
	// Its grace to start streaming runs from this start, not from when
	// the server before it stopped streaming: a chaos run failed a standby
	// 180 ms after its start (its walreceiver restarting) with "has not
	// streamed for 12s", and the immediate stop mid-recovery left it
	// unable to start.
	p.mu.Lock()
	p.silentSince = time.Time{}
	p.mu.Unlock()
	return p.startServer(ctx)
}

// clone copies the primary into the (empty) data directory.
func (p *postgres) clone(ctx context.Context, pr Params) error {
	p.log.Info("copying the primary for a new standby (pg_basebackup)", slog.String("primary", pr.Primary))
	if _, _, err := p.run(ctx, 30*time.Minute, "pg_basebackup", "-h", pr.PrimaryAddr, "-p", strconv.Itoa(p.rc.Port),
		"-U", p.rc.ReplicationUser, "-D", p.rc.DataDir, "-X", "stream", "--checkpoint=fast"); err != nil {
		os.RemoveAll(p.rc.DataDir)
		return fmt.Errorf("copying the primary: %w", err)
	}
	return nil
}

// rewindFrom stops the server (health h) and pg_rewinds its data from the
// primary; on failure the data is moved aside for the operator and the
// next start copies the primary afresh.
func (p *postgres) rewindFrom(ctx context.Context, pr Params, h Health) error {
	if h != NotRunning {
		if err := p.stopServer(ctx, "fast", 60); err != nil {
			return fmt.Errorf("stopping before the rewind: %w", err)
		}
	}
	p.log.Info("rewinding this node's data to follow the new primary (pg_rewind)", slog.String("primary", pr.Primary))
	// Recorded first: a rewind that does not finish (the agent killed,
	// a restart storm, the host down) leaves the data neither the old
	// history nor the new one — PostgreSQL's docs say to copy afresh —
	// and a second rewind of it "succeeds" into a standby that never
	// streams (a chaos run: degraded for good after a restart storm).
	if err := statefile.Write(p.rewindMark(), []byte(pr.Primary+"\n")); err != nil {
		return fmt.Errorf("recording the rewind in progress: %w", err)
	}
	// A standby that did not shut down cleanly (killed, or stopped while
	// it waited for WAL) is crash-recovered by pg_rewind in single-user
	// mode, which refuses to run with standby.signal ("standby mode is not
	// supported by single-user servers": a chaos run copied the primary
	// afresh for it). writeConf puts the file back after the rewind.
	for _, sig := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(filepath.Join(p.rc.DataDir, sig)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing %s before the rewind: %w", sig, err)
		}
	}
	if err := p.clearStalePID(); err != nil {
		return err
	}
	src := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres", pr.PrimaryAddr, p.rc.Port, p.rc.ReplicationUser)
	out, _, err := p.run(ctx, 30*time.Minute, "pg_rewind", "--target-pgdata", p.rc.DataDir, "--source-server", src)
	if err != nil {
		aside, rerr := p.moveAside("diverged")
		if rerr != nil {
			return fmt.Errorf("pg_rewind failed (%v) and the data could not be moved aside: %w", err, rerr)
		}
		return fmt.Errorf("pg_rewind failed, data kept in %s; a fresh copy follows: %w", aside, err)
	}
	if err := statefile.Remove(p.rewindMark()); err != nil {
		return fmt.Errorf("pg_rewind done, but its record stays (the next start would copy afresh): %w", err)
	}
	p.log.Info("pg_rewind done", slog.String("output", strings.TrimSpace(out)))
	if recoveredOnOwn(out) {
		// pg_rewind ran crash recovery without standby.signal, which ends
		// with a checkpoint written here only, then found the data on
		// the primary's timeline and rewound nothing: this WAL now runs
		// past a point the primary's does not, and the standby would wait
		// forever for WAL it rejects ("invalid resource manager ID", a
		// chaos run: degraded for good). Only a fresh copy follows.
		aside, err := p.moveAside("recovered-apart")
		if err != nil {
			return fmt.Errorf("moving aside data that crash recovery took off the primary's history: %w", err)
		}
		p.log.Warn("crash recovery before the rewind wrote WAL the primary does not have, and nothing was rewound: copying the primary afresh",
			slog.String("kept", aside))
		return p.clone(ctx, pr)
	}
	return nil
}

// recoveredOnOwn reads pg_rewind's output: it completed crash recovery of
// the target (as a primary: standby.signal is removed first) and then
// found no rewind required.
func recoveredOnOwn(out string) bool {
	return strings.Contains(out, "to complete crash recovery") && strings.Contains(out, "no rewind required")
}

// rewindMark is the file that says a rewind of this node's data began
// and has not finished.
func (p *postgres) rewindMark() string { return filepath.Join(p.passDir, "rewind-in-progress") }

// checkInterruptedRewind: if a rewind began and never finished, the data
// is moved aside (for the operator) so that this start copies the
// primary afresh.
func (p *postgres) checkInterruptedRewind() error {
	if !p.rewindInterrupted() {
		return nil
	}
	if !p.empty() {
		aside, err := p.moveAside("rewind-interrupted")
		if err != nil {
			return fmt.Errorf("a rewind of this node's data was interrupted, and the data could not be moved aside: %w", err)
		}
		p.log.Warn("a rewind of this node's data was interrupted (the agent stopped during it): its data cannot be trusted; moved aside, copying the primary afresh",
			slog.String("kept", aside))
	}
	return statefile.Remove(p.rewindMark())
}

// rewindInterrupted says whether a rewind of this node's data began and
// did not finish.
func (p *postgres) rewindInterrupted() bool {
	_, err := os.Stat(p.rewindMark())
	return err == nil
}

// moveAside renames the data directory for the operator to look at (or
// remove) and returns where it went; the next start finds none and copies
// the primary.
func (p *postgres) moveAside(why string) (string, error) {
	aside := p.rc.DataDir + "." + why + "-" + time.Now().Format("20060102-150405.000")
	return aside, os.Rename(p.rc.DataDir, aside)
}

func (p *postgres) Stop(ctx context.Context) error {
	if p.Fenced() {
		return p.kill(ctx)
	}
	if h, _ := p.Monitor(ctx); h == NotRunning {
		return nil
	}
	// Immediate: a fenced primary must stop taking writes now.
	return p.stopServer(ctx, "immediate", 30)
}

// Promote makes this node the primary: initdb on a new cluster, else
// promote the standby (or start former primary data as it is).
//
// Commits wait for no one until a standby is confirmed again, unless the
// quorum's record of this epoch names a synchronous standby
// (pr.SyncWith): then that standby may be promoted if this node is cut
// off, so no commit may be acknowledged without it. That is the case of a
// primary fenced and given its group back under the same epoch (it lost
// and regained its lease); starting it with no synchronous standby lost
// acknowledged writes in the chaos campaign (seed 2, loss on the primary:
// the standby was promoted without them).
func (p *postgres) Promote(ctx context.Context, pr Params) error {
	if p.rewindInterrupted() {
		// Half-rewound data is neither history: never a primary's.
		return errors.New("this node's data is from an interrupted pg_rewind and cannot be promoted; it is copied afresh when it next starts as a standby")
	}
	if p.Fenced() {
		// The lease is back for the epoch this server was frozen in.
		if err := p.thaw(); err != nil {
			return err
		}
	}
	if err := p.prepare(); err != nil {
		return err
	}
	if p.empty() {
		return p.initPrimary(ctx)
	}
	if err := p.writeConf(""); err != nil {
		return err
	}
	sync := ""
	if pr.SyncWith != "" {
		sync = p.syncNames()
	}
	set := "ALTER SYSTEM SET synchronous_standby_names = '" + strings.ReplaceAll(sync, "'", "''") + "'"
	h, _ := p.Monitor(ctx)
	if p.exists("standby.signal") {
		if h == NotRunning {
			if err := p.startServer(ctx); err != nil {
				return err
			}
		}
		if _, err := p.sql(ctx, set); err != nil {
			return err
		}
		if err := p.promoteNow(ctx); err != nil {
			return err
		}
		// The control file shows the new timeline only after a
		// checkpoint; pg_rewind on the old primary reads it there, and
		// would otherwise find "no rewind required" and leave it
		// diverged.
		if _, err := p.sql(ctx, "CHECKPOINT"); err != nil {
			return err
		}
		return p.reload(ctx)
	}
	if h == NotRunning {
		// Former primary data starts as a primary at once: the setting
		// must be in place before the first commit can arrive.
		if err := p.writeAutoSync(sync); err != nil {
			return err
		}
		if err := p.startServer(ctx); err != nil {
			return err
		}
	}
	_, err := p.sql(ctx, set)
	if err == nil {
		err = p.reload(ctx)
	}
	return err
}

// promoteNow ends recovery and returns once the server takes writes.
// pg_ctl promote -w and pg_promote(wait => true) both look every 100 ms;
// asking on the lasting connection every 5 ms costs nothing and takes up
// to 100 ms off every failover.
func (p *postgres) promoteNow(ctx context.Context) error {
	out, err := p.sql(ctx, "SELECT pg_promote(false)")
	if err != nil {
		return fmt.Errorf("promoting: %w", err)
	}
	if out != "t" {
		return fmt.Errorf("promoting: the server refused (pg_promote answered %q)", out)
	}
	ctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		out, err := p.sql(ctx, "SELECT pg_is_in_recovery()")
		switch {
		case err != nil:
			return fmt.Errorf("waiting for the promotion: %w", err)
		case out == "f":
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server still in recovery %s after the promote request: %w", promoteTimeout, ctx.Err())
		case <-t.C:
		}
	}
}

// promoteTimeout bounds a promotion (pg_ctl promote's default wait).
const promoteTimeout = 60 * time.Second

// syncNames is synchronous_standby_names naming every other owner, or ""
// when the group is not synchronous or has no other owner.
func (p *postgres) syncNames() string {
	var others []string
	for _, o := range p.owners {
		if o != p.node {
			others = append(others, strconv.Quote(o))
		}
	}
	if p.rc.Synchronous == nil || !*p.rc.Synchronous || len(others) == 0 {
		return ""
	}
	return "FIRST 1 (" + strings.Join(others, ", ") + ")"
}

// writeAutoSync sets synchronous_standby_names in postgresql.auto.conf
// while the server is down (what ALTER SYSTEM would write), so that the
// server starts with it.
func (p *postgres) writeAutoSync(names string) error {
	f := filepath.Join(p.rc.DataDir, "postgresql.auto.conf")
	b, err := os.ReadFile(f)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", f, err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "synchronous_standby_names") || l == "" {
			continue
		}
		out = append(out, l)
	}
	out = append(out, "synchronous_standby_names = '"+strings.ReplaceAll(names, "'", "''")+"'")
	if err := os.WriteFile(f, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", f, err)
	}
	return chownTo(f, p.rc.OSUser)
}

// Demote is a planned step-down: a fast shutdown sends all WAL to the
// connected standbys before the server exits.
func (p *postgres) Demote(ctx context.Context, pr Params) error {
	return p.stopServer(ctx, "fast", 60)
}

func (p *postgres) Monitor(ctx context.Context) (Health, error) {
	if p.empty() {
		return NotRunning, nil
	}
	if p.Fenced() {
		// A frozen server answers nothing; it was primary when frozen.
		if running, known := p.postmasterRunning(); known && !running {
			p.mu.Lock()
			p.frozen = false
			p.mu.Unlock()
			return NotRunning, nil
		}
		return Primary, nil
	}
	switch running, known := p.postmasterRunning(); {
	case known && !running:
		return NotRunning, nil
	case !known:
		if _, code, _ := p.run(ctx, 10*time.Second, "pg_ctl", "-D", p.rc.DataDir, "status"); code == 3 || code == 4 {
			return NotRunning, nil
		}
	}
	out, err := p.sql(ctx, "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming')")
	if err != nil {
		return Failed, err
	}
	rec, streaming, _ := strings.Cut(out, "|")
	if rec != "t" {
		p.setStreaming(true)
		return Primary, nil
	}
	// A standby that runs but does not stream holds no new commits: it
	// is no heir. Past a grace (a primary restarting, a short cut) it is
	// failed, and the next start rewinds it (its timeline may have forked
	// off the primary's: PostgreSQL then retries forever on its own).
	if streaming != "0" {
		p.setStreaming(true)
		return Standby, nil
	}
	if d := p.setStreaming(false); d > notStreamingGrace {
		p.mu.Lock()
		p.rewind = true
		p.mu.Unlock()
		return Failed, fmt.Errorf("the standby has not streamed from the primary for %s", d.Round(time.Second))
	}
	return Standby, nil
}

// postmasterRunning reads the server's pid file and, where the OS tells
// (postmaster.Alive), whether that postmaster lives; known is false where it
// cannot tell.
func (p *postgres) postmasterRunning() (running, known bool) {
	pid, known := p.postmasterPID()
	if !known || pid == 0 {
		return false, known
	}
	return postmaster.Alive(pid)
}

// postmasterPID is the pid in postmaster.pid (postmaster.PID).
func (p *postgres) postmasterPID() (pid int, known bool) { return postmaster.PID(p.rc.DataDir) }

// Fence freezes the server: the postmaster and every process of it are
// stopped (SIGSTOP), so no commit is acknowledged from now on — not one
// waiting for the standby, not one a session made asynchronous — and
// none is lost: the server's state stays as it was. Promote for the same
// epoch thaws it (the lease is back); Stop kills it (the group moved on).
// Unlike changing synchronous_standby_names, which the WAL senders take
// up at their own pace after a reload, it is in force when Fence returns.
func (p *postgres) Fence(ctx context.Context) error {
	pid, _ := p.postmasterPID()
	if pid == 0 {
		return errors.New("fencing the server: no postmaster.pid")
	}
	if alive, known := postmaster.Alive(pid); known && !alive {
		return errors.New("fencing the server: the postmaster is not running")
	}
	// Not under p.mu: Freeze waits for its signals to act (milliseconds,
	// bounded), and Fenced must not wait with it.
	err := postmaster.Freeze(pid)
	p.mu.Lock()
	p.frozen = true // on an error too: some of it may be stopped, and Stop kills what is left
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fencing the server: %w", err)
	}
	return nil
}

// Fenced says whether the server is frozen (Fence), by this agent or by
// an earlier one that was killed before it thawed or stopped it.
func (p *postgres) Fenced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozenChecked {
		// Once, at the agent's start: a server an earlier agent froze.
		// Not later: a postmaster an operator stops for a moment (a
		// debugger) must not be taken for fenced, and killed.
		p.frozenChecked = true
		if pid, _ := p.postmasterPID(); pid != 0 && postmaster.Stopped(pid) {
			p.frozen = true
		}
	}
	return p.frozen
}

// thaw resumes a frozen server (the lease is back for its epoch).
func (p *postgres) thaw() error {
	pid, _ := p.postmasterPID()
	if alive, _ := postmaster.Alive(pid); pid == 0 || !alive {
		return errors.New("thawing the server: the postmaster is not running")
	}
	if err := postmaster.Thaw(pid); err != nil {
		return fmt.Errorf("thawing the server: %w", err)
	}
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
	return nil
}

// kill ends a frozen server: SIGKILL reaches stopped processes, and a
// thaw first would let them run (and acknowledge) on their way down.
// The data is crash-consistent, as after an immediate stop.
func (p *postgres) kill(ctx context.Context) error {
	pid, _ := p.postmasterPID()
	if alive, _ := postmaster.Alive(pid); pid != 0 && alive {
		if err := postmaster.Kill(pid); err != nil {
			return fmt.Errorf("stopping the frozen server: %w", err)
		}
		for {
			if alive, known := postmaster.Alive(pid); known && !alive {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("stopping the frozen server: %w", ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
	p.closeConn()
	return nil
}

// notStreamingGrace: how long a running standby may go without streaming
// before it is failed and rewound.
const notStreamingGrace = 10 * time.Second

// setStreaming records whether the standby streams and returns for how
// long it has not.
func (p *postgres) setStreaming(ok bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		p.silentSince, p.stuck = time.Time{}, 0
		return 0
	}
	if p.silentSince.IsZero() {
		p.silentSince = time.Now()
	}
	return time.Since(p.silentSince)
}

// takeRewind reports (once) that the standby must be rewound before it
// starts again.
func (p *postgres) takeRewind() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rewind
	p.rewind = false
	return r
}

// stuckAgain counts a start of a standby that did not stream although it
// is on the primary's timeline, and says whether a restart already failed
// to help (the second such start since it last streamed).
func (p *postgres) stuckAgain() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stuck++
	return p.stuck >= 2
}

// sourcePromoted checks that the server at addr has finished promoting:
// its timeline is past the one this node's data is on.
func (p *postgres) sourcePromoted(ctx context.Context, addr string) error {
	theirs, ours, err := p.timelines(ctx, addr)
	if err != nil {
		return err
	}
	if theirs <= ours {
		return fmt.Errorf("the new primary is on timeline %d, this node's data on %d: it has not finished promoting: %w", theirs, ours, ErrPrimaryNotReady)
	}
	return nil
}

// timelines are the primary's at addr (IDENTIFY_SYSTEM over the
// replication protocol, which the replication user may run) and that of
// this node's data (pg_controldata).
func (p *postgres) timelines(ctx context.Context, addr string) (theirs, ours int, err error) {
	out, _, err := p.run(ctx, 10*time.Second, "psql", "-X", "-Atq", "-c", "IDENTIFY_SYSTEM",
		fmt.Sprintf("host=%s port=%d user=%s dbname=postgres replication=database", addr, p.rc.Port, p.rc.ReplicationUser))
	if err != nil {
		return 0, 0, fmt.Errorf("asking the primary for its timeline: %w", err)
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("IDENTIFY_SYSTEM answered %q", out)
	}
	if theirs, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("IDENTIFY_SYSTEM answered %q", out)
	}
	ctl, _, err := p.run(ctx, 10*time.Second, "pg_controldata", "-D", p.rc.DataDir)
	if err != nil {
		return 0, 0, fmt.Errorf("reading this node's timeline: %w", err)
	}
	if ours, err = dataTimeline(ctl); err != nil {
		return 0, 0, err
	}
	return theirs, ours, nil
}

// dataTimeline is the timeline this node's data is on, from
// pg_controldata's output: its last checkpoint's, or for a standby the
// timeline it has replayed up to when that is later. A standby that
// followed a promotion has replayed the new timeline long before its next
// restartpoint moves the checkpoint onto it; reading the checkpoint's
// alone, a chaos run took such a standby for forked off the primary and
// rewound it, and the rewind's crash recovery did fork it.
func dataTimeline(controldata string) (int, error) {
	ours, replayed, standby := -1, 0, false
	for _, l := range strings.Split(controldata, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Latest checkpoint's TimeLineID":
			ours, _ = strconv.Atoi(v)
		case "Min recovery ending loc's timeline":
			replayed, _ = strconv.Atoi(v)
		case "Database cluster state":
			standby = v == "in archive recovery" || v == "shut down in recovery"
		}
	}
	if ours < 0 {
		return 0, errors.New("pg_controldata shows no timeline")
	}
	if standby && replayed > ours {
		ours = replayed
	}
	return ours, nil
}

// Replication reports and steers synchronous replication (see the type's
// comment for the order of steps).
func (p *postgres) Replication(ctx context.Context, h Health, recorded string) (ReplicationInfo, error) {
	if h != Primary {
		return ReplicationInfo{Mode: "none"}, nil
	}
	out, err := p.sql(ctx, `SELECT application_name, sync_state, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::bigint,
		coalesce(pg_wal_lsn_diff(flush_lsn, '0/0'), 0)::bigint, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
		FROM pg_stat_replication WHERE state = 'streaming'`)
	if err != nil {
		return ReplicationInfo{}, err
	}
	info := ReplicationInfo{Mode: "none"}
	var streaming []string
	p.mu.Lock()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 5 || !slices.Contains(p.owners, f[0]) || p.down(f[0]) {
			continue
		}
		streaming = append(streaming, f[0])
		lag, _ := strconv.ParseUint(f[2], 10, 64)
		flush, _ := strconv.ParseUint(f[3], 10, 64)
		current, _ := strconv.ParseUint(f[4], 10, 64)
		info.LagBytes = max(info.LagBytes, lag)
		if info.Mode == "none" {
			info.Mode = "async"
		}
		if f[1] != "sync" {
			delete(p.syncFrom, f[0])
			continue
		}
		// Synchronous from now on, but what was committed before (while
		// the group ran without a standby) waits for no one: the standby
		// is an heir only once it has flushed past where the WAL stood
		// when it became synchronous.
		target, seen := p.syncFrom[f[0]]
		if !seen {
			target = current
			p.syncFrom[f[0]] = target
		}
		if flush >= target {
			info.SyncWith = f[0]
		}
	}
	for name := range p.syncFrom {
		if !slices.Contains(streaming, name) {
			delete(p.syncFrom, name)
		}
	}
	p.mu.Unlock()
	if info.SyncWith != "" {
		info.Mode = "sync"
	}
	names, err := p.sql(ctx, "SHOW synchronous_standby_names")
	if err != nil {
		return info, err
	}
	want := p.syncNames()
	allDown := true
	for _, o := range p.owners {
		if o != p.node && !p.down(o) {
			allDown = false
		}
	}
	p.mu.Lock()
	if len(streaming) > 0 {
		p.absentAt = time.Time{}
	} else if p.absentAt.IsZero() {
		p.absentAt = time.Now()
	}
	// Gone: membership says so (in under a second), or no stream for 2 s
	// (a standby whose server stopped while its node lives on).
	absent := !p.absentAt.IsZero() && (allDown || time.Since(p.absentAt) > 2*time.Second)
	p.mu.Unlock()
	switch {
	case want == "":
	case recorded != "":
		// The quorum's record names (or may yet name) a synchronous
		// standby, which a failover would promote: every commit waits
		// for a standby, streaming or not. A standby that is gone is
		// reported as no longer synchronous; once the record agrees,
		// the next case lets commits go on without it.
		if absent {
			info.SyncWith = ""
		}
	case absent && names != "":
		// The standby is gone and the quorum no longer names one: stop
		// waiting.
		info.SyncWith = ""
		want = ""
	case !absent && len(streaming) > 0 && names != want:
		// A standby streams: make commits wait for it.
	default:
		want = names
	}
	if want != names {
		if _, err := p.sql(ctx, "ALTER SYSTEM SET synchronous_standby_names = '"+strings.ReplaceAll(want, "'", "''")+"'"); err != nil {
			return info, err
		}
		if err := p.reload(ctx); err != nil {
			return info, err
		}
	}
	return info, nil
}
