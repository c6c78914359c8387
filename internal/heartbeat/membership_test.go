package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testenv"
)

// testLog routes logs to t.Log until the test ends. memberlist's
// suspicion timers outlive Shutdown and may log afterwards, which t.Log
// turns into a panic; late lines are dropped.
type testLog struct {
	t    *testing.T
	done *atomic.Bool
}

func newTestLog(t *testing.T) testLog {
	l := testLog{t: t, done: new(atomic.Bool)}
	t.Cleanup(func() { l.done.Store(true) })
	return l
}

func (w testLog) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(b))
	}
	return len(b), nil
}

// newTestNode runs a membership on 127.0.0.N (loopback: no root needed).
func newTestNode(t *testing.T, n int, prio int, key []byte, join ...string) (*Membership, *eventLog) {
	t.Helper()
	return newTestNodeRT(t, n, prio, key, false, join...)
}

func newTestNodeRT(t *testing.T, n int, prio int, key []byte, rt bool, join ...string) (*Membership, *eventLog) {
	t.Helper()
	return newTestNodeOpts(t, n, prio, key, rt, time.Hour, join...)
}

func newTestNodeOpts(t *testing.T, n int, prio int, key []byte, rt bool, reap time.Duration, join ...string) (*Membership, *eventLog) {
	t.Helper()
	testenv.SkipUnderWine(t, testenv.WineLacksUDP)
	ev := &eventLog{}
	tl := newTestLog(t)
	m, err := New(Options{
		Cluster: "test", Name: fmt.Sprintf("n%d", n), Priority: prio, Keys: [][]byte{key},
		Bind: fmt.Sprintf("127.0.0.%d", n), Port: 17946, ProbePort: 17948, Join: join,
		Profile: ProfileLAN, Healthy: true, Config: map[string]string{"x": "1"}, Realtime: rt, ReapAfter: reap,
		Logger:  slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelInfo})).With("self", n),
		OnEvent: ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, ev
}

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }
func (l *eventLog) has(t EventType, node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.ev {
		if e.Type == t && e.Node == node {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stateOf(m *Membership, name string) State {
	for _, x := range m.Members() {
		if x.Name == name {
			return x.State
		}
	}
	return -1
}

func key(b byte) []byte { k := make([]byte, 32); k[0] = b; return k }

func TestFormFailLeave(t *testing.T) {
	a, evA := newTestNode(t, 11, 1, key(1))
	b, _ := newTestNode(t, 12, 2, key(1), "127.0.0.11:17946")
	c, _ := newTestNode(t, 13, 3, key(1), "127.0.0.11:17946")
	for _, m := range []*Membership{a, b, c} {
		waitFor(t, 5*time.Second, "3 active members", func() bool {
			ms := m.Members()
			if len(ms) != 3 {
				return false
			}
			for _, x := range ms {
				if x.State != StateActive {
					return false
				}
			}
			return true
		})
	}
	// Halt c without leaving: the others must mark it failed.
	start := time.Now()
	c.halt()
	waitFor(t, 2*time.Second, "n13 failed on n11", func() bool { return stateOf(a, "n13") == StateFailed })
	t.Logf("failure detected after %s", time.Since(start))
	waitFor(t, 2*time.Second, "n13 failed on n12", func() bool { return stateOf(b, "n13") == StateFailed })
	// A graceful leave shows left, not failed.
	b.Close()
	waitFor(t, 2*time.Second, "n12 left on n11", func() bool { return stateOf(a, "n12") == StateLeft })
	if evA.has(EventFailed, "n12") {
		t.Fatal("a graceful leave was reported as a failure")
	}
	if err := a.Forget("n12"); err != nil {
		t.Fatal(err)
	}
	if stateOf(a, "n12") != -1 {
		t.Fatal("forgotten member still listed")
	}
}

func TestWrongKeyNeverJoins(t *testing.T) {
	a, _ := newTestNode(t, 21, 1, key(1))
	b, _ := newTestNode(t, 22, 2, key(2), "127.0.0.21:17946")
	waitFor(t, 3*time.Second, "the join to fail", func() bool {
		for _, p := range b.Problems() {
			if strings.Contains(p, "no peer answered the join") {
				return true
			}
		}
		return false
	})
	if len(a.Members()) != 1 || len(b.Members()) != 1 {
		t.Fatalf("a node with another key became a member: %v / %v", a.Members(), b.Members())
	}
}

func TestDuplicatePriorityRefused(t *testing.T) {
	a, _ := newTestNode(t, 31, 1, key(1))
	b, _ := newTestNode(t, 32, 1, key(1), "127.0.0.31:17946")
	waitFor(t, 3*time.Second, "refusal recorded on both", func() bool {
		return len(a.Problems()) > 0 && len(b.Problems()) > 0
	})
	if len(a.Members()) != 1 {
		t.Fatalf("duplicate priority admitted: %+v", a.Members())
	}
	t.Log(a.Problems(), b.Problems())
}

func TestConfigMismatchFlagged(t *testing.T) {
	a, _ := newTestNode(t, 41, 1, key(1))
	b, _ := newTestNode(t, 42, 2, key(1), "127.0.0.41:17946")
	b.SetConfig(map[string]string{"x": "2"})
	waitFor(t, 3*time.Second, "mismatch flagged", func() bool {
		for _, m := range a.Members() {
			if m.Name == "n42" && len(m.Mismatch) == 1 && m.Mismatch[0] == "x" {
				return true
			}
		}
		return false
	})
}

// TestRealtimePath runs the heartbeat loops on locked SCHED_RR threads;
// without the privilege for SCHED_RR the same code runs at normal priority.
func TestRealtimePath(t *testing.T) {
	a, _ := newTestNodeRT(t, 51, 1, key(1), true)
	b, _ := newTestNodeRT(t, 52, 2, key(1), true, "127.0.0.51:17946")
	waitFor(t, 5*time.Second, "2 active", func() bool { return stateOf(a, "n52") == StateActive && stateOf(b, "n51") == StateActive })
	start := time.Now()
	b.halt()
	waitFor(t, 2*time.Second, "n52 failed", func() bool { return stateOf(a, "n52") == StateFailed })
	if d := time.Since(start); d > time.Second {
		t.Errorf("detection took %s", d)
	}
}

// TestReapAfter: a failed member stays listed for reap_after, then goes.
func TestReapAfter(t *testing.T) {
	a, _ := newTestNodeOpts(t, 61, 1, key(1), false, 700*time.Millisecond)
	b, _ := newTestNodeOpts(t, 62, 2, key(1), false, 700*time.Millisecond, "127.0.0.61:17946")
	waitFor(t, 5*time.Second, "joined", func() bool { return stateOf(a, "n62") == StateActive })
	b.halt()
	waitFor(t, 2*time.Second, "failed", func() bool { return stateOf(a, "n62") == StateFailed })
	time.Sleep(300 * time.Millisecond)
	if stateOf(a, "n62") != StateFailed {
		t.Fatal("reaped before reap_after")
	}
	waitFor(t, 3*time.Second, "reaped", func() bool { return stateOf(a, "n62") == -1 })
}
