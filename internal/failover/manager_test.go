package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/testenv"
	"github.com/clusterd/clusterd/internal/vocab"
	"github.com/hashicorp/raft"
)

// bus is an in-process membership: messages are delivered asynchronously
// like the network would, and a node marked down neither sends nor
// receives and shows as failed to the others.
type bus struct {
	mu    sync.Mutex
	nodes map[string]*fakeMem
}

type fakeMem struct {
	b    *bus
	name string
	addr string
	mu   sync.Mutex
	ext  map[string]string
	h    map[vocab.MsgKind]func([]byte)
	down bool
	// datagrams counts Datagram calls (lease reports and verdicts).
	datagrams atomic.Int64
}

func (b *bus) add(name, addr string) *fakeMem {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := &fakeMem{b: b, name: name, addr: addr, ext: map[string]string{}, h: map[vocab.MsgKind]func([]byte){}}
	b.nodes[name] = f
	return f
}

func (f *fakeMem) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *fakeMem) setDown(d bool) {
	f.mu.Lock()
	f.down = d
	f.mu.Unlock()
}

func (f *fakeMem) Members() []heartbeat.Member {
	f.b.mu.Lock()
	nodes := maps.Clone(f.b.nodes)
	f.b.mu.Unlock()
	var out []heartbeat.Member
	for _, n := range nodes {
		n.mu.Lock()
		st := heartbeat.StateActive
		if n.down && n != f {
			st = heartbeat.StateFailed
		}
		out = append(out, heartbeat.Member{Name: n.name, Addr: n.addr, State: st, Ext: maps.Clone(n.ext), Self: n == f, Proto: heartbeat.ProtocolVersion})
		n.mu.Unlock()
	}
	return out
}

func (f *fakeMem) Send(node string, kind vocab.MsgKind, body []byte) error {
	f.b.mu.Lock()
	t := f.b.nodes[node]
	f.b.mu.Unlock()
	if t == nil || t.isDown() || f.isDown() {
		return errors.New("unreachable")
	}
	t.mu.Lock()
	h := t.h[kind]
	t.mu.Unlock()
	if h != nil {
		go h(append([]byte(nil), body...))
	}
	return nil
}

// Datagram counts the lease messages and delivers them like Send.
func (f *fakeMem) Datagram(node string, kind vocab.MsgKind, body []byte) error {
	f.datagrams.Add(1)
	return f.Send(node, kind, body)
}

func (f *fakeMem) Handle(kind vocab.MsgKind, fn func([]byte)) {
	f.mu.Lock()
	f.h[kind] = fn
	f.mu.Unlock()
}

func (f *fakeMem) SetExt(k, v string) {
	f.mu.Lock()
	f.ext[k] = v
	f.mu.Unlock()
}

const resourceScript = `#!/bin/sh
f="$RESDIR/$CLUSTERD_NODE.running"
case "$1" in
start) echo "$CLUSTERD_EPOCH" > "$f" ;;
stop) rm -f "$f" ;;
monitor) [ -f "$f" ] && exit 0; exit 7 ;;
esac
`

type testCluster struct {
	t      *testing.T
	bus    *bus
	mgrs   map[string]*Manager
	mems   map[string]*fakeMem
	resDir string
	mu     sync.Mutex
	events []api.Event
}

func newTestCluster(t *testing.T, names []string, group config.GroupConfig) *testCluster {
	tc := &testCluster{t: t, bus: &bus{nodes: map[string]*fakeMem{}}, mgrs: map[string]*Manager{}, mems: map[string]*fakeMem{}, resDir: testenv.TempDir(t)}
	t.Setenv("RESDIR", tc.resDir)
	script := filepath.Join(tc.resDir, "res.sh")
	os.WriteFile(script, []byte(resourceScript), 0o755)
	group.Resource = config.ResourceConfig{Type: "exec", Start: []string{script, "start"}, Stop: []string{script, "stop"}, Monitor: []string{script, "monitor"}}
	port := 20000 + os.Getpid()%20000
	key := make([]byte, 32)
	for i, n := range names {
		addr := fmt.Sprintf("127.0.0.%d", 20+i)
		mem := tc.bus.add(n, addr)
		m, err := New(Options{
			Node: n, Bind: addr, StateDir: filepath.Join(testenv.TempDir(t), n), Keys: [][]byte{key},
			Quorum: &config.QuorumConfig{Voters: names, Port: port}, Groups: []config.GroupConfig{group},
			Timing: TimingFor("lan"), Members: mem,
			Event: func(e api.Event) {
				tc.mu.Lock()
				tc.events = append(tc.events, e)
				tc.mu.Unlock()
			},
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With(slog.String("node", n)),
		})
		if err != nil {
			t.Fatal(err)
		}
		tc.mgrs[n], tc.mems[n] = m, mem
	}
	for _, m := range tc.mgrs {
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range tc.mgrs {
			m.Close()
		}
	})
	return tc
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitGroup waits until node sees the group online on owner.
func (tc *testCluster) waitGroup(node, owner string, within time.Duration) api.Group {
	tc.t.Helper()
	deadline := time.Now().Add(within)
	var g api.Group
	for time.Now().Before(deadline) {
		gs, _ := tc.mgrs[node].Status()
		g = gs[0]
		if g.Owner == owner && (g.State == "online" || g.State == "degraded") {
			return g
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("%s: group not online on %s within %s: %+v", node, owner, within, g)
	return g
}

func (tc *testCluster) running(node string) bool {
	_, err := os.Stat(filepath.Join(tc.resDir, node+".running"))
	return err == nil
}

func TestGroupPlaceMoveFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-voter raft quorum on loopback")
	}
	if runtime.GOOS == "windows" {
		t.Skip("skipping on Windows: the group's exec resource here is a shell script")
	}
	tc := newTestCluster(t, []string{"n1", "n2", "n3"}, config.GroupConfig{Name: "svc", Owners: []string{"n1", "n2"}, Failback: "never"})
	g := tc.waitGroup("n3", "n1", 15*time.Second)
	if !tc.running("n1") || tc.running("n2") {
		t.Fatalf("resource should run on n1 only: n1 %v n2 %v", tc.running("n1"), tc.running("n2"))
	}
	if _, q := tc.mgrs["n3"].Status(); q == nil || !q.HasQuorum || q.Voters != 3 || q.Alive != 3 {
		t.Fatalf("quorum: %+v", q)
	}

	// Planned move, asked on a node that owns nothing.
	start := time.Now()
	target, err := tc.mgrs["n3"].Move(context.Background(), "svc", "")
	if err != nil || target != "n2" {
		t.Fatalf("move: %q %v", target, err)
	}
	g2 := tc.waitGroup("n3", "n2", 10*time.Second)
	t.Logf("planned move done in %v", time.Since(start))
	if tc.running("n1") || !tc.running("n2") {
		t.Fatalf("after the move the resource should run on n2 only")
	}
	if g2.Epoch <= g.Epoch || g2.Reason != reasonMove || g2.Failovers != 1 {
		t.Fatalf("after move: %+v", g2)
	}
	if _, err := tc.mgrs["n1"].Move(context.Background(), "svc", "n3"); err == nil {
		t.Fatal("moving to a node that is not an owner was accepted")
	}
	if _, err := tc.mgrs["n1"].Move(context.Background(), "nope", ""); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}

	// The owner dies (like kill -9: nothing stepped down).
	start = time.Now()
	tc.mems["n2"].setDown(true)
	tc.mgrs["n2"].abandon.Store(true)
	tc.mgrs["n2"].Close()
	g3 := tc.waitGroup("n3", "n1", 10*time.Second)
	took := time.Since(start)
	t.Logf("failover after the owner died: %v", took)
	if g3.Reason != reasonFailed || g3.Failovers != 2 {
		t.Fatalf("after failover: %+v", g3)
	}
	if took > 3*time.Second {
		t.Fatalf("failover took %v, want <= 3 s", took)
	}
	// Two changes seen by the two surviving nodes each (n2 saw only the
	// first); the event follows the leader's metadata by a tick.
	failovers := func() int {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		n := 0
		for _, e := range tc.events {
			if e.Type == "group_failover" && e.Group == "svc" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(2 * time.Second); failovers() < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group_failover events: %d: %+v", failovers(), tc.events)
		}
	}
}

// TestQuorumBusy: only refusals made before anything was written are
// tried again by Move.
func TestQuorumBusy(t *testing.T) {
	for _, tc := range []struct {
		err  error
		busy bool
	}{
		{fmt.Errorf("committing group db: %w", raft.ErrLeadershipTransferInProgress), true},
		{fmt.Errorf("committing group db: %w", raft.ErrNotLeader), true},
		{errNotLeader, true},
		{fmt.Errorf("committing group db: %w", raft.ErrLeadershipLost), false},
		{errors.New("group db is already moving to node2"), false},
		{errors.New("group db: no other owner is ready to take over"), false},
		{nil, false},
	} {
		if got := quorumBusy(tc.err); got != tc.busy {
			t.Errorf("quorumBusy(%v) = %v, want %v", tc.err, got, tc.busy)
		}
	}
}
