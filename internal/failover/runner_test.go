package failover

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/vocab"
)

// The owner's lease runs from when it sent its report, less a tenth, so
// it always ends before the leader's; stale and non-leader answers do not
// extend it.
func TestLeaseCountsFromTheReport(t *testing.T) {
	r := &runner{m: &Manager{name: "db1"}, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1)}
	sent := time.Now().Add(-300 * time.Millisecond)
	r.sent[1], r.sent[2] = sent, sent.Add(100*time.Millisecond)

	r.onVerdict(verdict{Group: "db", Seq: 2, Owner: "db1", Epoch: 3, LeaseMS: 1000})
	if want := sent.Add(100*time.Millisecond + 900*time.Millisecond); !r.leaseUntil.Equal(want) || r.leaseEpoch != 3 {
		t.Fatalf("lease until %v epoch %d, want %v epoch 3", r.leaseUntil, r.leaseEpoch, want)
	}
	until := r.leaseUntil
	r.onVerdict(verdict{Group: "db", Seq: 1, Owner: "db1", Epoch: 3, LeaseMS: 1000}) // older report
	r.onVerdict(verdict{Group: "db", Seq: 2, NotLeader: true})
	r.onVerdict(verdict{Group: "db", Seq: 9, Owner: "db1", Epoch: 3, LeaseMS: 1000}) // never sent
	if !r.leaseUntil.Equal(until) {
		t.Fatalf("lease moved to %v by a stale, non-leader or unknown answer", r.leaseUntil)
	}
	// A verdict naming an older epoch than one already seen comes from a
	// leader whose records lag: it grants nothing.
	r.sent[4] = time.Now()
	r.onVerdict(verdict{Group: "db", Seq: 4, Owner: "db1", Epoch: 2, LeaseMS: 1000})
	if !r.leaseUntil.Equal(until) || r.leaseEpoch != 3 {
		t.Fatalf("a verdict for epoch 2 after epoch 3 moved the lease: until %v epoch %d", r.leaseUntil, r.leaseEpoch)
	}
	// A verdict for another owner grants nothing, and the state says so.
	r.sent[3] = time.Now()
	r.onVerdict(verdict{Group: "db", Seq: 3, Owner: "db2", Epoch: 4})
	if _, _, ok, _, _ := r.state(); ok {
		t.Fatal("lease still valid after the record moved to db2")
	}
}

// A primary that stops naming its synchronous standby keeps treating it as
// recorded until the leader has answered a report that named none: an
// earlier report naming it may still reach the leader, and commits made
// without the standby meanwhile would then be missing on the heir.
func TestRecordedSyncWaitsForTheLeadersAnswer(t *testing.T) {
	r := &runner{m: &Manager{name: "db1"}, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1)}
	report := func(sync string) uint64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.repl.SyncWith = sync
		return r.reportLocked().Seq
	}
	answer := func(seq uint64, recorded string) {
		r.onVerdict(verdict{Group: "db", Seq: seq, Owner: "db1", Epoch: 1, LeaseMS: 1000, SyncWith: recorded})
	}
	recorded := func() string { r.mu.Lock(); defer r.mu.Unlock(); return r.recordedSync() }

	s1 := report("db2") // names the standby; not yet answered
	if got := recorded(); got != "db2" {
		t.Fatalf("after naming db2 (unanswered): %q, want db2", got)
	}
	s2 := report("") // the standby went away
	answer(s1, "")   // an answer to the earlier report: the record does not name db2 yet
	if got := recorded(); got != "db2" {
		t.Fatalf("before the leader answered the report without db2: %q, want db2 (keep waiting)", got)
	}
	answer(s2, "") // the leader took the report that named none
	if got := recorded(); got != "" {
		t.Fatalf("after the leader answered: %q, want none (commits may stop waiting)", got)
	}
	// The record itself naming a standby always counts.
	s3 := report("")
	answer(s3, "db2")
	if got := recorded(); got != "db2" {
		t.Fatalf("record names db2: %q", got)
	}
}

// A primary whose group the quorum has given to another node (its
// standby, promoted) never stops waiting for that standby, even after the
// leader answered a report that named none: its waiting commits would be
// acknowledged with no copy on the new primary.
func TestRecordedSyncAfterTheGroupMovedOn(t *testing.T) {
	r := &runner{m: &Manager{name: "db1"}, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), primary: 1}
	report := func(sync string) uint64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.repl.SyncWith = sync
		return r.reportLocked().Seq
	}
	recorded := func() string { r.mu.Lock(); defer r.mu.Unlock(); return r.recordedSync() }
	s1 := report("db2")
	r.onVerdict(verdict{Group: "db", Seq: s1, Owner: "db1", Epoch: 1, LeaseMS: 1000, SyncWith: "db2"})
	s2 := report("") // db2 stopped streaming: it was promoted
	r.onVerdict(verdict{Group: "db", Seq: s2, Owner: "db2", Epoch: 2, SyncWith: ""})
	if got := recorded(); got != "db2" {
		t.Fatalf("after the group moved to db2: %q, want db2 (keep waiting)", got)
	}
	// Never named a standby: still not empty.
	r2 := &runner{m: &Manager{name: "db1"}, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), primary: 1}
	r2.v = verdict{Group: "db", Owner: "db2", Epoch: 2}
	r2.mu.Lock()
	got := r2.recordedSync()
	r2.mu.Unlock()
	if got == "" {
		t.Fatal("a primary the quorum no longer records may not stop waiting")
	}
}

// The leader ignores a report older than one it already took from the
// same node: it could name a standby the owner no longer waits for.
func TestLeaderIgnoresOutOfOrderReports(t *testing.T) {
	a := &arbiter{groups: map[string]config.GroupConfig{"db": {Name: "db", Owners: []string{"db1", "db2"}}},
		reports: map[string]map[string]reportAt{"db": {}}, t: Timing{Lease: time.Second}}
	now := time.Now()
	a.reports["db"]["db1"] = reportAt{report{Group: "db", Node: "db1", Seq: 7, SyncWith: ""}, now}
	old := report{Group: "db", Node: "db1", Seq: 6, SyncWith: "db2"}
	if !a.staleReport(old, now) {
		t.Fatal("an older report was taken")
	}
	if a.staleReport(report{Group: "db", Node: "db1", Seq: 8}, now) {
		t.Fatal("a newer report was refused")
	}
	// A restarted agent counts from 1: taken once the old reports are stale.
	if !a.staleReport(report{Group: "db", Node: "db1", Seq: 1}, now.Add(time.Second)) ||
		a.staleReport(report{Group: "db", Node: "db1", Seq: 1}, now.Add(3*time.Second)) {
		t.Fatal("a restarted agent's reports: refused while fresh, taken once stale")
	}
}

// recordingRes is a resource that records what it was asked to do.
type recordingRes struct {
	health   Health
	promoted []Params
}

func (f *recordingRes) Roles() bool                             { return true }
func (f *recordingRes) Start(context.Context, Params) error     { f.health = Standby; return nil }
func (f *recordingRes) Stop(context.Context) error              { f.health = NotRunning; return nil }
func (f *recordingRes) Demote(context.Context, Params) error    { f.health = NotRunning; return nil }
func (f *recordingRes) Monitor(context.Context) (Health, error) { return f.health, nil }
func (f *recordingRes) Promote(_ context.Context, p Params) error {
	f.promoted = append(f.promoted, p)
	f.health = Primary
	return nil
}

// A primary fenced and given its group back under the same epoch (it
// lost and regained its lease) promotes with the synchronous standby the
// record names, so its first commits wait for that standby: a failover
// would promote it (chaos campaign, seed 2: writes acknowledged after the
// re-promotion were missing on the promoted standby). A new epoch whose
// record names no standby promotes with none.
func TestPromoteCarriesTheRecordedStandby(t *testing.T) {
	for _, c := range []struct {
		name      string
		recorded  string
		namedSync string
		unnamed   uint64
		want      string
	}{
		{"the record names the standby", "db2", "", 0, "db2"},
		{"this node named it, not yet recorded", "", "db2", 0, "db2"},
		{"this node stopped naming it", "", "db2", 7, ""},
		{"a new epoch, nobody recorded", "", "", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := &recordingRes{health: NotRunning}
			r := &runner{m: &Manager{name: "db1"}, res: res, log: slog.New(slog.NewTextHandler(io.Discard, nil)), t: Timing{Lease: time.Second},
				sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), namedSync: c.namedSync, unnamedSeq: c.unnamed}
			r.v = verdict{Group: "db", Owner: "db1", Epoch: 5, SyncWith: c.recorded}
			r.vAt, r.leaseUntil, r.leaseEpoch = time.Now(), time.Now().Add(time.Second), 5
			r.reconcile(context.Background())
			if len(res.promoted) != 1 || res.promoted[0].Epoch != 5 || res.promoted[0].SyncWith != c.want {
				t.Fatalf("promoted with %+v, want epoch 5 and SyncWith %q", res.promoted, c.want)
			}
		})
	}
}

// A node whose resource failed is out of the running for the cool-down,
// which ends early once its standby has shown it works: at once when the
// quorum records it as the primary's synchronous standby (it holds every
// acknowledged commit: the group's only heir), else after standbyProof of
// healthy running.
func TestCooldownEndsWhenTheStandbyIsSynchronous(t *testing.T) {
	for _, c := range []struct {
		name     string
		recorded string        // the record's synchronous standby
		healthy  time.Duration // how long the standby has run healthy
		health   Health
		eligible bool
	}{
		{"recorded synchronous", "db1", time.Second, Standby, true},
		{"recorded synchronous, first healthy check", "db1", 0, Standby, true},
		{"another standby recorded", "db3", time.Second, Standby, false},
		{"none recorded, not yet proven", "", time.Second, Standby, false},
		{"none recorded, proven by running", "", standbyProof + time.Second, Standby, true},
		{"recorded but not running as a standby", "db1", time.Second, NotRunning, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := &recordingRes{health: c.health}
			r := &runner{m: &Manager{name: "db1"}, res: res, log: slog.New(slog.NewTextHandler(io.Discard, nil)), t: Timing{Lease: time.Second},
				sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), following: "db2",
				coolUntil: time.Now().Add(cooldown), retryAt: time.Now().Add(time.Minute)}
			if c.healthy > 0 {
				r.standbySince = time.Now().Add(-c.healthy)
			}
			r.v = verdict{Group: "db", Owner: "db2", Epoch: 5, SyncWith: c.recorded}
			r.standby(context.Background(), Params{Epoch: 5, Primary: "db2"}, true)
			r.mu.Lock()
			got := r.reportLocked().Ready
			r.mu.Unlock()
			if got != c.eligible {
				t.Fatalf("report says ready=%v, want %v", got, c.eligible)
			}
		})
	}
}

// An owner that let its epoch go after its resource failed offers to take
// the group back once the resource is stopped (a failed one is stopped
// first) (the leader does so only if
// nobody else may: a crashed primary with no synchronous standby).
func TestReleasedOwnerOffersToTakeItsGroupBack(t *testing.T) {
	for _, h := range []Health{NotRunning, Failed} {
		res := &recordingRes{health: h}
		r := &runner{m: &Manager{name: "db1"}, res: res, log: slog.New(slog.NewTextHandler(io.Discard, nil)), t: Timing{Lease: time.Second},
			sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1)}
		r.vAt = time.Now()
		r.v = verdict{Group: "db", Owner: "db1", Epoch: 5}
		r.failed(context.Background(), 5, "monitoring", nil)
		res.health = h
		r.reconcile(context.Background())
		r.mu.Lock()
		rep := r.reportLocked()
		r.mu.Unlock()
		if rep.Ready || rep.Released != 5 {
			t.Fatalf("%v: ready %v released %d: in its cool-down it must not look ready", h, rep.Ready, rep.Released)
		}
		if !rep.Cooling || res.health != NotRunning {
			t.Fatalf("%v: offers to take the group back: %v (resource now %v, want it stopped)", h, rep.Cooling, res.health)
		}
	}
}

// A node the leader has just appointed reports at once when the leader
// asks (Ask), not at its next Renew; the call grants no lease, and a call
// naming another node is ignored.
func TestAppointedOwnerReportsAtOnce(t *testing.T) {
	b := &bus{nodes: map[string]*fakeMem{}}
	self, leader := b.add("db1", "127.0.0.21"), b.add("q1", "127.0.0.22")
	leader.SetExt(extLeader, "q1:1")
	got := make(chan time.Time, 8)
	leader.Handle(vocab.MsgReport, func([]byte) { got <- time.Now() })
	tm := TimingFor("lan")
	tm.Renew = time.Hour // only a call can make it report
	m := &Manager{name: "db1", mem: self, t: tm, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := &runner{m: m, t: tm, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), now: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.sender(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r.onVerdict(verdict{Group: "db", Owner: "db2", Epoch: 2, Ask: true})
	select {
	case <-got:
		t.Fatal("reported on a call that named another node")
	case <-time.After(100 * time.Millisecond):
	}
	asked := time.Now()
	r.onVerdict(verdict{Group: "db", Owner: "db1", Epoch: 2, Ask: true, LeaseMS: 1000})
	select {
	case at := <-got:
		t.Logf("reported %v after the call", at.Sub(asked))
	case <-time.After(time.Second):
		t.Fatal("no report within 1 s of the leader's call")
	}
	if _, _, ok, _, _ := r.state(); ok || !r.leaseUntil.IsZero() {
		t.Fatal("the call granted a lease")
	}
}
