//go:build linux

package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/pgtext"
	"github.com/clusterd/clusterd/internal/testnet"
	"github.com/jackc/pgx/v5/pgconn"
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
	db   *testnet.Client // the writers' connections through the group VIP
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
	w.db = c.NewClient(sqlTimeout)
	nc := c.NewClient(time.Second)
	nc.BindPorts = true // a reset names its bucket (check.go)
	w.loop(func() { w.newConn(nc) }, 10*time.Millisecond, true)
	sc := c.NewClient(20 * time.Second)
	for range 4 {
		w.loop(func() { w.stream(sc) }, 0, false)
	}
	// Paced: a write in the process takes milliseconds, and back to back
	// the server's connection set-up alone would take a core (the psql
	// each write used to start paced it, at ~60 ms of CPU a write).
	w.loop(w.vipWrite, 50*time.Millisecond, false)
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

// sqlTimeout bounds one statement, its connection included.
const sqlTimeout = 3 * time.Second

// sql runs one statement on a new connection and returns its rows as
// psql -At prints them (columns joined by "|", rows by newlines). local:
// over the node's own socket as the postgres user (the harness runs as
// root, which the agent's pg_hba map lets in as postgres), else through
// the group VIP from the client namespace as the application.
//
// In the process, not a psql per statement: the writers ran ~25 psql
// (with ip netns exec and runuser) a second, ~60 ms of CPU each, and the
// 2-core machine they shared with the cluster ran at a load of ~10; an
// old primary's pg_rewind took ~7 s there and 0.7 s alone.
//
// A new connection for each statement, as a client after a failover
// would make one. The deadline closes the connection and sends no cancel
// request (pgconn's default): a commit whose wait for the synchronous
// standby PostgreSQL cancels returns success with only a WARNING, while
// one whose client is gone is not acknowledged — it counts as not.
func (w *workloads) sql(local *testnet.Node, stmt string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	var cfg *pgconn.Config
	var err error
	if local != nil {
		sock := filepath.Join(w.c.Dir, local.Name+".state", "pg-db")
		cfg, err = pgconn.ParseConfig(fmt.Sprintf("host=%s user=postgres dbname=postgres connect_timeout=1", sock))
	} else {
		cfg, err = pgconn.ParseConfig(fmt.Sprintf("host=%s user=app password=app-pass dbname=postgres connect_timeout=1", DBVIP))
		if err == nil {
			cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				return w.db.DialFrom(ctx, network, addr, 0)
			}
		}
	}
	if err != nil {
		return "", err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, stmt).ReadAll()
	if err != nil {
		return "", err
	}
	return pgtext.Rows(res)
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
	out, err := w.sql(nil, fmt.Sprintf("INSERT INTO t VALUES (%d, current_setting('data_directory')) RETURNING srv", id))
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
	if _, err := w.sql(nd, fmt.Sprintf("INSERT INTO l VALUES ('%s', %d)", nd.Name, id)); err != nil {
		return
	}
	w.mu.Lock()
	w.acks = append(w.acks, ack{at: time.Now(), id: id, node: nd.Name, via: "local"})
	w.mu.Unlock()
}

// rows reads what the final primary holds: ids of t and (node, id) of l.
func (w *workloads) rows() (vip map[int]bool, local map[string]bool, err error) {
	out, err := w.sql(nil, "SELECT id FROM t")
	if err != nil {
		return nil, nil, fmt.Errorf("reading table t through the VIP: %w", err)
	}
	vip = map[int]bool{}
	for _, f := range strings.Fields(out) {
		var id int
		fmt.Sscan(f, &id)
		vip[id] = true
	}
	out, err = w.sql(nil, "SELECT node || ':' || id FROM l")
	if err != nil {
		return nil, nil, fmt.Errorf("reading table l through the VIP: %w", err)
	}
	local = map[string]bool{}
	for _, f := range strings.Fields(out) {
		local[f] = true
	}
	return vip, local, nil
}
