package vip

import (
	"math/rand"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// fakeMembers is a Membership that returns a fixed list.
type fakeMembers struct{ list []heartbeat.Member }

func (f *fakeMembers) Members() []heartbeat.Member { return append([]heartbeat.Member(nil), f.list...) }
func (f *fakeMembers) SetExt(string, string)       {}
func (f *fakeMembers) SetState(heartbeat.State)    {}
func (f *fakeMembers) SetHealthy(bool)             {}
func (f *fakeMembers) State() heartbeat.State      { return heartbeat.StateActive }

// resynced decides when a node back from a pause or a cut takes new flows
// again: table over member lists, each run with the members shuffled.
func TestResynced(t *testing.T) {
	since := time.Unix(1000, 0)
	after, before := since.Add(100*time.Millisecond), since.Add(-time.Second)
	web := func(name string, metaAt time.Time, sig string, st heartbeat.State) heartbeat.Member {
		return heartbeat.Member{Name: name, State: st, MetaAt: metaAt, Ext: map[string]string{extRules: "50/1", extInputs: sig}}
	}
	self := heartbeat.Member{Name: "web1", Self: true, State: heartbeat.StateActive, Ext: map[string]string{extRules: "50/1", extInputs: "S"}}
	lost := web("web3", before, "T", heartbeat.StateFailed)
	lost.Since = since.Add(200 * time.Millisecond)
	db := heartbeat.Member{Name: "db1", State: heartbeat.StateActive, MetaAt: after, Ext: map[string]string{}}
	for _, tc := range []struct {
		name    string
		members []heartbeat.Member
		now     time.Time
		pending bool
		cut     bool
		want    bool
	}{
		{"all fresh, same map", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "S", heartbeat.StateActive), db}, since.Add(time.Second), false, false, true},
		{"within a heartbeat timeout", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(300 * time.Millisecond), false, false, false},
		{"a peer's metadata is from before the pause", []heartbeat.Member{self, web("web2", before, "S", heartbeat.StateActive), web("web3", after, "S", heartbeat.StateActive)}, since.Add(time.Second), false, false, false},
		{"a database node's metadata is stale", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), {Name: "db1", State: heartbeat.StateActive, MetaAt: before}}, since.Add(time.Second), false, false, false},
		{"a peer computed another map", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "T", heartbeat.StateActive)}, since.Add(time.Second), false, false, false},
		{"a failed peer's old metadata does not count", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", before, "T", heartbeat.StateFailed)}, since.Add(time.Second), false, false, true},
		{"a joining peer's map does not count", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "", heartbeat.StateJoining)}, since.Add(time.Second), false, false, true},
		{"alone", []heartbeat.Member{self}, since.Add(time.Second), false, false, true},
		{"a hand-off of its own is pending", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(time.Second), true, false, false},
		{"a peer lost during the cut, not heard again yet", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), lost}, since.Add(time.Second), false, false, false},
		{"a peer lost during the cut, past the grace", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), lost}, since.Add(lostGrace), false, false, true},
		{"a VIP NIC is still cut", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(time.Second), false, true, false},
	} {
		for run := range 5 {
			ms := append([]heartbeat.Member(nil), tc.members...)
			rand.New(rand.NewSource(int64(run))).Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
			tr := &Tier{o: Options{Members: &fakeMembers{ms}, Settle: 110 * time.Millisecond, ViewTimeout: 400 * time.Millisecond},
				plans: []VIPPlan{{}}, sig: "S", pubSig: "S", linkCut: tc.cut}
			if tc.pending {
				tr.pending = &Ownership{}
			}
			tr.publishView()
			if got := tr.resynced(since, since, tc.now); got != tc.want {
				t.Errorf("%s (run %d): resynced %v, want %v", tc.name, run, got, tc.want)
			}
		}
	}
}

// A node that takes no new flows until its view is current again (back
// from a pause or a cut) is given no buckets meanwhile: it announces
// itself unhealthy, the others take its share the usual way (a Settle,
// then once it has let go), and it gets it back the same way once it has
// resynced. Before, the others handed its share back at once and no node
// answered it until the resync ended — 2.9 s in the 1-hour chaos run of
// stop 25 (a peer killed just after the heal made the node wait out
// lostGrace). Nodes stepped in shuffled orders.
func TestResyncingNodeIsGivenNoBuckets(t *testing.T) {
	names := []string{"web3", "web4", "web5"}
	for run := range 6 {
		rng := rand.New(rand.NewSource(int64(run)))
		nodes := simCluster(t, names)
		now := time.Unix(1000, 0)
		step := func() {
			now = now.Add(100 * time.Millisecond)
			o := append([]string(nil), names...)
			rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
			for _, n := range o {
				nodes[n].tier.converge(now)
			}
			// Metadata arrives, fresh (resynced counts on it).
			for _, a := range names {
				for _, b := range names {
					if a != b {
						gossip(nodes, a, b)
						nodes[b].view.find(a).MetaAt = now
					}
				}
			}
		}
		for range 20 {
			step()
		}
		if u, d := everyBucketOnce(nodes, names...); u != 0 || d != 0 {
			t.Fatalf("run %d, before: %d unowned, %d twice", run, u, d)
		}
		// A long resync (lostGrace: a peer lost around the cut is not
		// heard again). From a Settle and a step on, the other two hold
		// every bucket; web4's tables give it none.
		web4 := nodes["web4"].tier
		web4.startResync(now)
		from := now
		for i := range 30 {
			step()
			if i < 3 {
				continue
			}
			if u, d := everyBucketOnce(nodes, "web3", "web5"); u != 0 || d != 0 {
				t.Fatalf("run %d, %v into web4's resync: web3 and web5 leave %d buckets unowned (%d twice)", run, now.Sub(from), u, d)
			}
			if n := len(nodes["web4"].dp.inForce().Owned[[2]int{0, 0}]); n != 0 {
				t.Fatalf("run %d, %v into web4's resync: its tables give it %d buckets", run, now.Sub(from), n)
			}
		}
		resynced := false
		for range 30 {
			step()
			if !resynced && web4.resynced(from, from, now) {
				web4.endResync()
				resynced = true
			}
			if _, d := everyBucketOnce(nodes, names...); d != 0 {
				t.Fatalf("run %d, as web4 comes back: %d buckets twice", run, d)
			}
		}
		if !resynced {
			t.Fatalf("run %d: web4 never resynced", run)
		}
		if u, d := everyBucketOnce(nodes, names...); u != 0 || d != 0 {
			t.Fatalf("run %d, after the resync: %d unowned, %d twice", run, u, d)
		}
		if n := len(nodes["web4"].dp.inForce().Owned[[2]int{0, 0}]); n < TableSize/4 {
			t.Fatalf("run %d: web4 owns %d buckets after its resync", run, n)
		}
	}
}
