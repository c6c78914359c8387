package failover

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/clusterd/clusterd/internal/config"
)

func testArbiter(g config.GroupConfig) *arbiter {
	b := &bus{nodes: map[string]*fakeMem{}}
	for _, n := range []string{"db1", "db2", "w"} {
		b.add(n, "")
	}
	m := &Manager{name: "w", mem: b.nodes["w"]}
	return newArbiter(&Quorum{name: "w"}, m, []config.GroupConfig{g}, TimingFor("lan"), nil)
}

// The leader's rules for a group whose owner stopped renewing.
func TestDecideFailover(t *testing.T) {
	yes := true
	pg := config.GroupConfig{Name: "db", Owners: []string{"db1", "db2"}, Resource: config.ResourceConfig{Type: "postgresql", Synchronous: &yes}}
	ex := config.GroupConfig{Name: "db", Owners: []string{"db1", "db2"}, Resource: config.ResourceConfig{Type: "exec"}}
	now := time.Now()
	longAgo := now.Add(-time.Minute) // leader for a long time: no hold left
	standbyReady := func(a *arbiter) {
		a.reports["db"]["db2"] = reportAt{report{Group: "db", Node: "db2", Ready: true}, now}
	}
	rec := Record{Owner: "db1", Epoch: 5}

	// exec: the ready standby takes over once the lease ran out.
	a := testArbiter(ex)
	standbyReady(a)
	next, _ := a.decide(ex, rec, longAgo, now)
	if next == nil || next.Owner != "db2" || next.Epoch != 6 || next.Failovers != 1 {
		t.Fatalf("exec failover: %+v", next)
	}
	// ... but not while this leader's own grant runs.
	a.grants["db"] = grant{epoch: 5, until: now.Add(500 * time.Millisecond)}
	if next, _ := a.decide(ex, rec, longAgo, now); next != nil {
		t.Fatalf("failed over under a live lease: %+v", next)
	}
	// ... nor in the hold after this node became leader.
	a = testArbiter(ex)
	standbyReady(a)
	if next, _ := a.decide(ex, rec, now.Add(-time.Second), now); next != nil {
		t.Fatalf("failed over during the new leader's hold: %+v", next)
	}

	// postgresql, synchronous: only the recorded synchronous standby.
	a = testArbiter(pg)
	standbyReady(a)
	if next, _ := a.decide(pg, rec, longAgo, now); next != nil {
		t.Fatalf("promoted a standby not known to hold every commit: %+v", next)
	}
	rec.SyncWith = "db2"
	next, _ = a.decide(pg, rec, longAgo, now)
	if next == nil || next.Owner != "db2" || next.SyncWith != "" || next.Reason != reasonLease {
		t.Fatalf("sync failover (owner alive but cut off: lease_expired): %+v", next)
	}
	a.m.mem.(*fakeMem).b.nodes["db1"].setDown(true)
	if next, _ = a.decide(pg, rec, longAgo, now); next == nil || next.Reason != reasonFailed {
		t.Fatalf("sync failover (owner failed): %+v", next)
	}
}

// Who takes a group over: a ready, allowed owner in preference order; the
// node being replaced only if nobody else is ready; an owner in its
// cool-down only if nobody is ready at all. The order the reports arrived
// in changes nothing.
func TestCandidate(t *testing.T) {
	yes := true
	g := config.GroupConfig{Name: "db", Owners: []string{"db1", "db2", "db3"}, Resource: config.ResourceConfig{Type: "postgresql", Synchronous: &yes}}
	ready := report{Ready: true}
	cooling := report{Cooling: true}
	primary := report{Ready: true, Primary: 4}
	for _, c := range []struct {
		name    string
		rec     Record
		reports map[string]report
		want    string
	}{
		{"the recorded standby", Record{Owner: "db1", SyncWith: "db3"}, map[string]report{"db2": ready, "db3": ready}, "db3"},
		{"no standby recorded: only the owner itself", Record{Owner: "db1"}, map[string]report{"db1": ready, "db2": ready}, "db1"},
		{"no standby recorded, owner not ready: nobody", Record{Owner: "db1"}, map[string]report{"db2": ready, "db3": ready}, ""},
		{"the standby before the owner", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db1": ready, "db2": ready}, "db2"},
		{"the owner when the standby is not ready", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db1": ready}, "db1"},
		{"a ready owner before one cooling down", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db1": ready, "db2": cooling}, "db1"},
		{"the only heir, cooling down (a crashed primary with no standby)", Record{Owner: "db1"}, map[string]report{"db1": cooling, "db2": ready}, "db1"},
		{"the recorded standby, cooling down", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db2": cooling, "db3": ready}, "db2"},
		{"not one still primary", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db2": primary}, ""},
		{"nobody", Record{Owner: "db1", SyncWith: "db2"}, map[string]report{"db3": cooling}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for range 5 {
				a := testArbiter(g)
				a.reports["db"] = map[string]reportAt{}
				now := time.Now()
				names := make([]string, 0, len(c.reports))
				for n := range c.reports {
					names = append(names, n)
				}
				rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
				for _, n := range names {
					r := c.reports[n]
					r.Group, r.Node = "db", n
					a.reports["db"][n] = reportAt{r, now}
				}
				if got := a.candidate(g, c.rec.Owner, heirs(g, c.rec), now); got != c.want {
					t.Fatalf("candidate %q, want %q", got, c.want)
				}
			}
		})
	}
}

// A primary whose server crashed while no standby was recorded as
// synchronous holds the only complete copy: once it has stopped the
// server and let the epoch go, the group goes back to it under a new
// epoch, cool-down or not (it stayed offline before: a chaos run).
func TestCrashedPrimaryWithoutHeirTakesItsGroupBack(t *testing.T) {
	yes := true
	pg := config.GroupConfig{Name: "db", Owners: []string{"db1", "db2"}, Resource: config.ResourceConfig{Type: "postgresql", Synchronous: &yes}}
	now := time.Now()
	a := testArbiter(pg)
	a.reports["db"]["db1"] = reportAt{report{Group: "db", Node: "db1", Released: 5, Cooling: true}, now}
	a.reports["db"]["db2"] = reportAt{report{Group: "db", Node: "db2", Ready: true}, now}
	a.released["db"] = 5
	next, _ := a.decide(pg, Record{Owner: "db1", Epoch: 5, Failovers: 2}, now.Add(-time.Minute), now)
	if next == nil || next.Owner != "db1" || next.Epoch != 6 || next.Failovers != 2 || next.Reason != reasonResource {
		t.Fatalf("group not given back to its crashed owner: %+v", next)
	}
}

// hurryRank: voters start the election one tick apart in name order once
// membership failed the leader's node, and never while it lives, when it
// is this node or when nobody leads. The voters' order does not matter.
func TestHurryRank(t *testing.T) {
	for _, c := range []struct {
		self, leader string
		down         []string
		want         int
	}{
		{"b", "a", []string{"a"}, 0},
		{"c", "a", []string{"a"}, 1},
		{"e", "a", []string{"a"}, 3},
		{"e", "a", []string{"a", "c"}, 2}, // c is down too: not counted
		{"b", "a", nil, -1},               // the leader lives
		{"a", "a", []string{"a"}, -1},     // this node leads
		{"b", "", []string{"a"}, -1},      // an election is under way
	} {
		for _, voters := range [][]string{{"a", "b", "c", "d", "e"}, {"e", "c", "a", "d", "b"}, {"d", "b", "e", "a", "c"}} {
			down := func(n string) bool { return slices.Contains(c.down, n) }
			if got := hurryRank(c.self, c.leader, voters, down); got != c.want {
				t.Errorf("self %s leader %q down %v voters %v: rank %d, want %d", c.self, c.leader, c.down, voters, got, c.want)
			}
		}
	}
}

// A leader answers no report before its barrier has caught up with the
// log it inherited (tick's), in every term it leads: a grant read from
// records that lag could name an owner of an old epoch (the split brain
// the 10-minute campaign found). A single voter on raft's in-memory
// transport stands in for the quorum.
func TestNoAnswerBeforeTheBarrier(t *testing.T) {
	conf := raft.DefaultConfig()
	conf.LocalID = "w1"
	conf.Logger = hclog.NewNullLogger()
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("w1")
	if err := raft.BootstrapCluster(conf, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "w1", Address: addr}}}); err != nil {
		t.Fatal(err)
	}
	f := newFSM()
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	for start := time.Now(); r.State() != raft.Leader; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the single voter did not lead")
		}
	}
	b, _ := json.Marshal(command{Group: "db", Record: Record{Owner: "db1", Epoch: 3}})
	if err := r.Apply(b, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	q := &Quorum{name: "w1", raft: r, fsm: f}
	bs := &bus{nodes: map[string]*fakeMem{}}
	m := &Manager{name: "w1", mem: bs.add("w1", "10.0.0.9")}
	bs.add("db1", "10.0.0.1")
	bs.add("db2", "10.0.0.2")
	a := newArbiter(q, m, []config.GroupConfig{{Name: "db", Owners: []string{"db1", "db2"}}}, TimingFor("lan"), slog.New(slog.DiscardHandler))

	seq := uint64(0)
	ask := func() verdict {
		seq++
		return a.onReport(report{Group: "db", Node: "db1", Seq: seq, Primary: 3})
	}
	if v := ask(); !v.NotLeader || v.LeaseMS != 0 {
		t.Fatalf("before the barrier: %+v, want NotLeader and no lease", v)
	}
	a.tick()
	if v := ask(); v.NotLeader || v.LeaseMS == 0 || v.Owner != "db1" || v.Epoch != 3 {
		t.Fatalf("after the barrier: %+v, want a lease for db1, epoch 3", v)
	}
	// Another term (this node lost and won again): the gate closes until
	// tick's barrier has caught up again.
	q.mu.Lock()
	q.leaderSince = q.leaderSince.Add(time.Second)
	q.mu.Unlock()
	if v := ask(); !v.NotLeader || v.LeaseMS != 0 {
		t.Fatalf("in a new term before its barrier: %+v, want NotLeader and no lease", v)
	}
	a.tick()
	if v := ask(); v.NotLeader || v.LeaseMS == 0 {
		t.Fatalf("in a new term after its barrier: %+v, want a lease", v)
	}
}

// A leader that cannot commit says so once per term; a term that ended
// (leadership lost) is no news; the stuck transfer flag of raft#696 is
// named when this node asked for no transfer just before.
func TestBarrierFailureLoggedOncePerTerm(t *testing.T) {
	var buf strings.Builder
	a := testArbiter(config.GroupConfig{Name: "db", Owners: []string{"db1", "db2"}})
	a.log = slog.New(slog.NewTextHandler(&buf, nil))
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	term1, term2, term3 := t0, t0.Add(time.Second), t0.Add(2*time.Second)
	a.barrierFailed(term1, term1, raft.ErrLeadershipLost)
	a.barrierFailed(term1, term1, raft.ErrEnqueueTimeout)
	a.barrierFailed(term1, term1, raft.ErrEnqueueTimeout)
	a.barrierFailed(term2, term2, raft.ErrLeadershipTransferInProgress)
	a.barrierFailed(term2, term2, raft.ErrLeadershipTransferInProgress)
	a.transfer = term3 // this node's own transfer, in flight
	a.barrierFailed(term3, term3.Add(transferRetry-time.Millisecond), raft.ErrLeadershipTransferInProgress)
	out := buf.String()
	if n := strings.Count(out, "cannot commit yet"); n != 2 {
		t.Errorf("%d plain warnings, want 2 (term 1's enqueue timeout, term 3's own transfer):\n%s", n, out)
	}
	if n := strings.Count(out, "transfer flag is stuck"); n != 1 {
		t.Errorf("%d stuck-flag errors, want 1 (term 2):\n%s", n, out)
	}
	if strings.Contains(out, "leadership lost") {
		t.Errorf("a term that ended was logged:\n%s", out)
	}
}
