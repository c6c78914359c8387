package failover

import (
	"testing"
	"time"

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
