//go:build linux

package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// conn is one new connection to the NLB VIP.
type conn struct {
	at   time.Time
	node string
	port int // the client's source port (0: not known)
	err  error
}

// stream is one long-lived keep-alive stream through the NLB VIP.
type stream struct {
	start, end time.Time
	node       string
	cut        bool // ended before the server's "end"
	err        error
}

// ack is one acknowledged write.
type ack struct {
	at   time.Time
	id   int
	node string // the server that committed it
	via  string // "vip" or "local"
}

// workloads run against the cluster until stopped and record what the
// clients saw.
type workloads struct {
	c    *cluster
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	conns    []conn
	streams  []stream
	acks     []ack
	tries    int // writes attempted, through the VIP and locally (their ids)
	vipTries int // of which through the VIP
}

func (w *workloads) start(c *cluster) {
	w.c, w.stop = c, make(chan struct{})
	nc := c.NewClient(time.Second)
	nc.BindPorts = true // a reset names its bucket (check.go)
	w.loop(func() { w.newConn(nc) }, 10*time.Millisecond, true)
	sc := c.NewClient(20 * time.Second)
	for range 4 {
		w.loop(func() { w.stream(sc) }, 0, false)
	}
	w.loop(w.vipWrite, 0, false)
	for _, nd := range c.db {
		w.loop(func() { w.localWrite(nd) }, 100*time.Millisecond, false)
	}
}

// loop runs f until stop, every `every` (0: back to back); with async each
// call runs in its own goroutine (new connections must not wait for a
// slow one), joined at halt.
func (w *workloads) loop(f func(), every time.Duration, async bool) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var inner sync.WaitGroup
		defer inner.Wait()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			if async {
				inner.Add(1)
				go func() { defer inner.Done(); f() }()
			} else {
				f()
			}
			if every > 0 {
				select {
				case <-w.stop:
					return
				case <-time.After(every):
				}
			}
		}
	}()
}

func (w *workloads) halt() {
	close(w.stop)
	w.wg.Wait()
}

// connTimeout bounds one new connection's request (a SYN lost once fails
// it: the client's TCP resends after 1 s).
const connTimeout = time.Second

func (w *workloads) newConn(cl *testnet.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), connTimeout)
	defer cancel()
	r := cl.Get(ctx, "http://"+NLBVIP+"/")
	w.mu.Lock()
	w.conns = append(w.conns, conn{at: r.At, node: r.Node, port: r.ClientPort, err: r.Err})
	w.mu.Unlock()
}

// stream holds one 3 s stream open and notes whether it was cut.
func (w *workloads) stream(cl *testnet.Client) {
	s := stream{start: time.Now()}
	defer func() {
		s.end = time.Now()
		w.mu.Lock()
		w.streams = append(w.streams, s)
		w.mu.Unlock()
		if s.err != nil && s.node == "" {
			time.Sleep(100 * time.Millisecond) // not connected at all: not a cut stream
		}
	}()
	req, _ := http.NewRequest(http.MethodGet, "http://"+NLBVIP+"/stream?s=3", nil)
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		s.err = err
		return
	}
	defer resp.Body.Close()
	s.node = resp.Header.Get("X-Node")
	sc := bufio.NewScanner(resp.Body)
	ended := false
	for sc.Scan() {
		if sc.Text() == "end" {
			ended = true
		}
	}
	if !ended {
		s.cut, s.err = true, sc.Err()
	}
}

// psql runs one statement; local: over the node's own socket as the
// postgres user, else through the group VIP as the application.
func (w *workloads) psql(local *testnet.Node, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if local != nil {
		sock := filepath.Join(w.c.Dir, local.Name+".state", "pg-db")
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", local.NS, "runuser", "-u", "postgres", "--", PGBin+"/psql", "-X", "-Atq",
			"-h", sock, "-U", "postgres", "-d", "postgres", "-c", sql)
	} else {
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", w.c.Client, PGBin+"/psql", "-X", "-Atq",
			"-h", DBVIP, "-U", "app", "-d", "postgres", "-c", sql)
	}
	// No statement_timeout: a commit whose wait for the synchronous
	// standby is cancelled returns success with only a WARNING (PostgreSQL
	// commits locally first); the client is killed instead.
	cmd.Env = append(os.Environ(), "PGPASSWORD=app-pass", "PGCONNECT_TIMEOUT=1")
	// The deadline kills ip(8), not the psql under it; without a bound on
	// the output, a psql stuck on a server that never answers held the
	// campaign forever.
	cmd.WaitDelay = 500 * time.Millisecond
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// nodeOfDataDir names the server from its data directory.
func (w *workloads) nodeOfDataDir(dd string) string {
	for _, nd := range w.c.db {
		if dd == w.c.pgDataDir(nd) {
			return nd.Name
		}
	}
	return "?" + dd
}

func (w *workloads) vipWrite() {
	w.mu.Lock()
	w.tries++
	w.vipTries++
	id := w.tries
	w.mu.Unlock()
	out, err := w.psql(nil, fmt.Sprintf("INSERT INTO t VALUES (%d, current_setting('data_directory')) RETURNING srv", id))
	if err != nil {
		time.Sleep(20 * time.Millisecond)
		return
	}
	w.mu.Lock()
	w.acks = append(w.acks, ack{at: time.Now(), id: id, node: w.nodeOfDataDir(out), via: "vip"})
	w.mu.Unlock()
}

func (w *workloads) localWrite(nd *testnet.Node) {
	w.mu.Lock()
	w.tries++
	id := w.tries
	w.mu.Unlock()
	if _, err := w.psql(nd, fmt.Sprintf("INSERT INTO l VALUES ('%s', %d)", nd.Name, id)); err != nil {
		return
	}
	w.mu.Lock()
	w.acks = append(w.acks, ack{at: time.Now(), id: id, node: nd.Name, via: "local"})
	w.mu.Unlock()
}

// rows reads what the final primary holds: ids of t and (node, id) of l.
func (w *workloads) rows() (vip map[int]bool, local map[string]bool, err error) {
	out, err := w.psql(nil, "SELECT id FROM t")
	if err != nil {
		return nil, nil, fmt.Errorf("reading table t through the VIP: %w", err)
	}
	vip = map[int]bool{}
	for _, f := range strings.Fields(out) {
		var id int
		fmt.Sscan(f, &id)
		vip[id] = true
	}
	out, err = w.psql(nil, "SELECT node || ':' || id FROM l")
	if err != nil {
		return nil, nil, fmt.Errorf("reading table l through the VIP: %w", err)
	}
	local = map[string]bool{}
	for _, f := range strings.Fields(out) {
		local[f] = true
	}
	return vip, local, nil
}
