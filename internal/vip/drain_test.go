package vip

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/testenv"
	"github.com/clusterd/clusterd/internal/vocab"
)

type stateMembers struct {
	fakeMembers
	state heartbeat.State
}

func (s *stateMembers) SetState(st heartbeat.State) { s.state = st }

func drainTier(t *testing.T, stateDir string) (*Tier, *stateMembers) {
	m := &stateMembers{state: heartbeat.StateActive}
	return &Tier{o: Options{StateDir: stateDir, Members: m, Node: "web1", Event: func(vocab.EventType, string, string) {}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), plans: []VIPPlan{{}}, drainRules: map[string]bool{}}, m
}

// A drain that cannot be recorded (a full or read-only state_dir; here a
// state_dir that is a file, which fails for root too) is refused with the
// reason and changes nothing: a restart must never undo a drain that
// clusterctl reported.
func TestDrainThatCannotBeRecordedIsRefused(t *testing.T) {
	dir := testenv.TempDir(t)
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	tr, m := drainTier(t, notDir)
	err := tr.Drain("", 0)
	if err == nil || !strings.Contains(err.Error(), "recording the drain") {
		t.Fatalf("drain into an unwritable state_dir: %v, want a refusal naming the cause", err)
	}
	if tr.drain.Draining || m.state != heartbeat.StateActive {
		t.Fatalf("a refused drain changed the node: draining %v, state %s", tr.drain.Draining, m.state)
	}
	// Recorded when it can be, and read back after a restart.
	tr, m = drainTier(t, dir)
	if err := tr.Drain("", 0); err != nil || m.state != heartbeat.StateDraining {
		t.Fatalf("drain: %v, state %s", err, m.state)
	}
	again, m2 := drainTier(t, dir)
	again.loadDrain()
	if !again.drain.Draining || m2.state != heartbeat.StateDraining {
		t.Fatal("the recorded drain was not restored")
	}
}

// A drain file that exists but cannot be read keeps the node draining and
// says so; resume writes it anew.
func TestUnreadableDrainFileKeepsTheNodeDraining(t *testing.T) {
	dir := testenv.TempDir(t)
	os.WriteFile(filepath.Join(dir, "drain.json"), []byte(`{"draining": tr`), 0o600) // truncated
	tr, m := drainTier(t, dir)
	tr.loadDrain()
	if m.state != heartbeat.StateDraining || len(tr.Problems()) != 1 || !strings.Contains(tr.Problems()[0], "cannot be read") {
		t.Fatalf("truncated drain file: state %s, problems %v", m.state, tr.Problems())
	}
	if err := tr.Resume(); err != nil {
		t.Fatal(err)
	}
	if len(tr.Problems()) != 0 {
		t.Fatalf("problems after resume: %v", tr.Problems())
	}
	if _, err := os.Stat(filepath.Join(dir, "drain.json")); !os.IsNotExist(err) {
		t.Fatalf("drain file after resume: %v", err)
	}
}

// countingDP runs during while the tier counts connections: the window in
// which an operator's resume can land.
type countingDP struct {
	fakeDP
	during func()
}

func (d *countingDP) Connections() (int, error) {
	if d.during != nil {
		d.during()
	}
	return 0, nil
}

// A resume that lands while the drain watcher counts connections stays a
// resume: before, the watcher then marked the resumed node drained.
func TestResumeWhileCountingConnections(t *testing.T) {
	tr, m := drainTier(t, testenv.TempDir(t))
	dp := &countingDP{}
	tr.dp = dp
	if err := tr.Drain("", 0); err != nil {
		t.Fatal(err)
	}
	dp.during = func() {
		if err := tr.Resume(); err != nil {
			t.Error(err)
		}
	}
	tr.watchDrain(tr.drain.Since.Add(time.Second))
	if tr.drain.Draining || tr.drain.Drained || m.state != heartbeat.StateActive {
		t.Fatalf("after a resume during the count: draining %v, drained %v, state %s; want active", tr.drain.Draining, tr.drain.Drained, m.state)
	}
	// Without a resume, the same count ends the drain.
	dp.during = nil
	if err := tr.Drain("", 0); err != nil {
		t.Fatal(err)
	}
	tr.watchDrain(tr.drain.Since.Add(time.Second))
	if !tr.drain.Drained || m.state != heartbeat.StateDrained {
		t.Fatalf("no connections left: drained %v, state %s", tr.drain.Drained, m.state)
	}
}

// extMembers records what the node announces.
type extMembers struct {
	stateMembers
	switches []time.Time
}

func (e *extMembers) SetExt(k, v string) {
	if k == extSwitch {
		ms, _ := strconv.ParseInt(v, 10, 64)
		e.switches = append(e.switches, time.UnixMilli(ms))
	}
}

// A drain asked for before the node's resume has taken effect waits for
// it: its instant comes a Settle after the resume's, and no node ever has
// to call off the resume's switch (which its kernel makes by itself at
// the instant).
func TestSecondPlannedChangeWaitsForTheFirst(t *testing.T) {
	m := &extMembers{stateMembers: stateMembers{state: heartbeat.StateDraining}}
	settle := 40 * time.Millisecond
	tr := &Tier{o: Options{StateDir: testenv.TempDir(t), Members: m, Node: "web1", Settle: settle, Event: func(vocab.EventType, string, string) {}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), plans: []VIPPlan{{}}, drainRules: map[string]bool{}}
	tr.drain = drainState{Draining: true}
	if err := tr.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Drain("", 0); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if len(m.switches) != 2 {
		t.Fatalf("announced %d instants, want 2", len(m.switches))
	}
	first, second := m.switches[0], m.switches[1]
	if back.Before(first.Add(settle)) {
		t.Fatalf("the drain returned %v before the resume's instant + Settle", first.Add(settle).Sub(back))
	}
	if min := first.Add(settle + switchAhead(settle) - time.Millisecond); second.Before(min) {
		t.Fatalf("the drain's instant is %v after the resume's, want at least %v", second.Sub(first), min.Sub(first))
	}
}
