package vip

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/vocab"
)

// fakeDP is a datapath that records the applied ownership. Its timed
// stages (StageAt) behave as the kernel's: with a clock, each takes effect
// at its instant by itself (owns reads what is in force then); without,
// at Commit.
type fakeDP struct {
	applied Ownership
	staged  []Ownership // Stage: switched to by Commit, in turn
	timed   []fakeStage // StageAt, in instant order
	// noTimed: a kernel without nft meta time (StageAt fails).
	noTimed bool
	clock   *time.Time
}

type fakeStage struct {
	at time.Time
	o  Ownership
}

func (d *fakeDP) Setup([]VIPPlan, time.Duration) error { return nil }
func (d *fakeDP) Apply(o Ownership) error {
	d.applied, d.staged, d.timed = o, nil, nil
	return nil
}
func (d *fakeDP) Stage(os ...Ownership) error { d.staged, d.timed = os, nil; return nil }
func (d *fakeDP) passed(at time.Time) bool    { return d.clock != nil && !at.After(*d.clock) }

// StageAt keeps, as the kernel's does, the one stage still ahead of at
// (a stage whose instant has passed is in force).
func (d *fakeDP) StageAt(at time.Time, o Ownership) error {
	if d.noTimed {
		return errors.New("no meta time")
	}
	var keep []fakeStage
	for _, q := range d.timed {
		switch {
		case d.passed(q.at):
			d.applied, keep = q.o, nil
		case q.at.Before(at):
			keep = append(keep, q)
		}
	}
	if len(keep) > 1 {
		keep = keep[len(keep)-1:]
	}
	d.staged, d.timed = nil, append(keep, fakeStage{at, o})
	return nil
}
func (d *fakeDP) Commit() error {
	if len(d.timed) > 0 {
		i := len(d.timed) - 1
		if d.clock != nil {
			i = 0
			for j, q := range d.timed {
				if j > 0 && !d.passed(q.at) {
					break
				}
				i = j
			}
		}
		d.applied, d.timed = d.timed[i].o, d.timed[i+1:]
		return nil
	}
	if len(d.staged) == 0 {
		return errors.New("nothing staged")
	}
	d.applied, d.staged = d.staged[0], d.staged[1:]
	return nil
}

// inForce is what the kernel accepts now.
func (d *fakeDP) inForce() Ownership {
	o := d.applied
	for _, q := range d.timed {
		if d.passed(q.at) {
			o = q.o
		}
	}
	return o
}
func (d *fakeDP) Refresh() error                      { return nil }
func (d *fakeDP) StopNew() error                      { return nil }
func (d *fakeDP) Counters() (map[int]Counters, error) { return nil, nil }
func (d *fakeDP) Connections() (int, error)           { return 0, nil }
func (d *fakeDP) Close() error                        { return nil }
func (d *fakeDP) owns(key [2]int) map[uint32]bool     { return set(d.inForce().Owned[key]) }
func set(bs []uint32) map[uint32]bool {
	m := map[uint32]bool{}
	for _, b := range bs {
		m[b] = true
	}
	return m
}
func (v *viewMembers) SetExt(k, val string)        { v.self().Ext[k] = val }
func (v *viewMembers) Members() []heartbeat.Member { return cloneMembers(v.list) }
func (v *viewMembers) SetState(heartbeat.State)    {}
func (v *viewMembers) SetHealthy(bool)             {}
func (v *viewMembers) State() heartbeat.State      { return heartbeat.StateActive }
func (v *viewMembers) self() *heartbeat.Member     { return v.find(v.name) }
func (v *viewMembers) find(name string) *heartbeat.Member {
	for i := range v.list {
		if v.list[i].Name == name {
			return &v.list[i]
		}
	}
	return nil
}

// viewMembers is one node's view of the members; the test moves
// states and metadata between views to stage who hears what when.
type viewMembers struct {
	name string
	list []heartbeat.Member
}

func cloneMembers(ms []heartbeat.Member) []heartbeat.Member {
	out := make([]heartbeat.Member, len(ms))
	for i, m := range ms {
		m.Ext = map[string]string{}
		for k, v := range ms[i].Ext {
			m.Ext[k] = v
		}
		out[i] = m
	}
	return out
}

type simNode struct {
	tier *Tier
	dp   *fakeDP
	view *viewMembers
}

func simCluster(t *testing.T, names []string) map[string]*simNode {
	w := 50
	vips := []config.VIPConfig{{VIP: "10.0.0.100/24", Interface: "eth0", Mode: "multicast",
		Rules: []config.RuleConfig{{Ports: "80", Protocol: "tcp", Filtering: "multiple", Affinity: "none", Weight: &w}}}}
	nodes := map[string]*simNode{}
	for i, n := range names {
		view := &viewMembers{name: n}
		for j, m := range names {
			view.list = append(view.list, heartbeat.Member{Name: m, Self: m == n, Priority: j + 1, State: heartbeat.StateActive, Proto: heartbeat.ProtocolVersion, Ext: map[string]string{}})
		}
		tr, err := New(Options{Cluster: "sim", Node: n, Priority: i + 1, VIPs: vips, Members: view,
			Settle: 110 * time.Millisecond, LiveTTL: 500 * time.Millisecond, Tick: 10 * time.Millisecond,
			ViewTimeout: 400 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Event: func(vocab.EventType, string, string) {}})
		if err != nil {
			t.Fatal(err)
		}
		dp := &fakeDP{}
		tr.dp = dp
		tr.publishRules()
		tr.publishHealth()
		nodes[n] = &simNode{tier: tr, dp: dp, view: view}
	}
	return nodes
}

// gossip copies a's own metadata into b's view of a.
func gossip(nodes map[string]*simNode, from, to string) {
	src := nodes[from].view.self()
	dst := nodes[to].view.find(from)
	for k, v := range src.Ext {
		dst.Ext[k] = v
	}
}

func gossipAll(nodes map[string]*simNode) {
	for a := range nodes {
		for b := range nodes {
			if a != b {
				gossip(nodes, a, b)
			}
		}
	}
}

// doubleOwned counts the buckets two of the given nodes both accept new
// flows in.
func doubleOwned(nodes map[string]*simNode, names ...string) int {
	n := 0
	key := [2]int{0, 0}
	seen := map[uint32]string{}
	for _, name := range names {
		for b := range nodes[name].dp.owns(key) {
			if _, dup := seen[b]; dup {
				n++
			}
			seen[b] = name
		}
	}
	return n
}

// A node comes back (web3, after a cut): the Maglev table also moves a
// few buckets between the two that stayed. One of them hears web3
// first, the other only later than Settle. The first must not take the
// other's buckets before it has let go (before the fix it did after Settle, and both answered new
// flows: the chaos campaign's "connections reset" with a cable fault).
// Run with the nodes stepped in shuffled orders.
func TestHandOffWaitsUntilThePreviousOwnerLetGo(t *testing.T) {
	for run := range 8 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(run)))
			nodes := simCluster(t, []string{"web3", "web4", "web5"})
			now := time.Unix(1000, 0)
			step := func(names ...string) {
				rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
				for _, n := range names {
					nodes[n].tier.converge(now)
				}
			}
			// web3 is away: web4 and web5 share the VIP.
			for _, n := range []string{"web4", "web5"} {
				nodes[n].view.find("web3").State = heartbeat.StateFailed
			}
			step("web4", "web5")
			gossipAll(nodes)
			for range 5 {
				now = now.Add(200 * time.Millisecond)
				step("web4", "web5")
				gossipAll(nodes)
			}
			if d := doubleOwned(nodes, "web4", "web5"); d != 0 {
				t.Fatalf("two nodes own %d buckets before web3 returns", d)
			}
			if a, b := len(nodes["web4"].dp.owns([2]int{0, 0})), len(nodes["web5"].dp.owns([2]int{0, 0})); a+b != TableSize {
				t.Fatalf("web4 %d + web5 %d buckets, want all %d", a, b, TableSize)
			}
			// early hears web3 first and is to take buckets from late.
			early, late := "web5", "web4"
			if two, three := Assign([]Candidate{{"web4", 50}, {"web5", 50}}, TableSize), Assign([]Candidate{{"web3", 50}, {"web4", 50}, {"web5", 50}}, TableSize); func() bool {
				for b := range TableSize {
					if two.Owner(b) == "web5" && three.Owner(b) == "web4" {
						return true
					}
				}
				return false
			}() {
				early, late = "web4", "web5"
			}
			beforeLate := nodes[late].dp.owns([2]int{0, 0})

			// web3 is back; only early hears it (and its metadata).
			nodes["web3"].tier.converge(now)
			nodes[early].view.find("web3").State = heartbeat.StateActive
			gossip(nodes, "web3", early)
			for range 10 {
				now = now.Add(100 * time.Millisecond)
				step("web4", "web5")
				gossip(nodes, early, late) // late hears early's new signature
				if d := doubleOwned(nodes, "web4", "web5"); d != 0 {
					t.Fatalf("at +%v two nodes own %d buckets: %s took them while %s did not yet hear web3", now.Sub(time.Unix(1000, 0)), d, early, late)
				}
			}
			moved := 0
			want := nodes[early].tier.pending
			if want == nil {
				t.Fatalf("%s has no hand-off pending", early)
			}
			for _, b := range want.Owned[[2]int{0, 0}] {
				if beforeLate[b] {
					moved++
				}
			}
			if moved == 0 {
				t.Fatal("no bucket moves between the two that stayed: the test shows nothing")
			}
			if p := nodes[early].tier.problems(now); len(p) != 0 {
				t.Fatalf("a hand-off waiting 1 s is a problem already: %q", p)
			}
			now = now.Add(handoffSlow)
			if p := nodes[early].tier.problems(now); len(p) != 1 {
				t.Fatalf("a hand-off waiting past %v is not shown: %q", handoffSlow, p)
			}

			// late hears web3, lets go; early takes once it sees that.
			nodes[late].view.find("web3").State = heartbeat.StateActive
			gossip(nodes, "web3", late)
			for range 5 {
				now = now.Add(100 * time.Millisecond)
				step("web3", "web4", "web5")
				gossipAll(nodes)
				if d := doubleOwned(nodes, "web4", "web5"); d != 0 {
					t.Fatalf("two nodes own %d buckets during the hand-off", d)
				}
			}
			if nodes[early].tier.pending != nil {
				t.Fatalf("%s still waits after %s let go", early, late)
			}
			got := 0
			for _, n := range []string{"web4", "web5"} {
				got += len(nodes[n].dp.owns([2]int{0, 0}))
			}
			got += len(nodes["web3"].dp.owns([2]int{0, 0}))
			if d := doubleOwned(nodes, "web3", "web4", "web5"); d != 0 || got != TableSize {
				t.Fatalf("after the hand-off: %d buckets owned in all, %d twice; want %d once", got, d, TableSize)
			}
		})
	}
}

// lettingGo: which previous owners still hold buckets, over states.
func TestLettingGo(t *testing.T) {
	m := func(name string, st heartbeat.State, sig string) heartbeat.Member {
		return heartbeat.Member{Name: name, State: st, Ext: map[string]string{extInputs: sig}}
	}
	from := map[string]bool{"web2": true}
	for _, tc := range []struct {
		name    string
		members []heartbeat.Member
		want    string
	}{
		{"same signature", []heartbeat.Member{m("web2", heartbeat.StateActive, "S"), m("web3", heartbeat.StateActive, "T")}, ""},
		{"another signature", []heartbeat.Member{m("web2", heartbeat.StateActive, "T")}, "web2"},
		{"no signature yet", []heartbeat.Member{m("web2", heartbeat.StateActive, "")}, "web2"},
		{"failed", []heartbeat.Member{m("web2", heartbeat.StateFailed, "T")}, ""},
		{"left", []heartbeat.Member{m("web2", heartbeat.StateLeft, "T")}, ""},
		{"draining (shutdown stopped its loop)", []heartbeat.Member{m("web2", heartbeat.StateDraining, "T")}, ""},
		{"forgotten", []heartbeat.Member{m("web3", heartbeat.StateActive, "T")}, ""},
	} {
		if got := lettingGo(tc.members, from, "S"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// everyBucketOnce: each bucket is owned by exactly one of the nodes.
func everyBucketOnce(nodes map[string]*simNode, names ...string) (unowned, twice int) {
	// The tables in force, read in place: the simulations call this after
	// every step (TestHealLossyGossip: ~10^4 times a run).
	var count [TableSize]uint8
	for _, n := range names {
		for _, b := range nodes[n].dp.inForce().Owned[[2]int{0, 0}] {
			count[b] = min(count[b]+1, 2)
		}
	}
	for _, c := range count {
		switch {
		case c == 0:
			unowned++
		case c > 1:
			twice++
		}
	}
	return unowned, twice
}

// A drain and a resume are planned switches: every node changes at the
// instant the draining (resuming) node announced (a taker takeLag later),
// so no bucket is ever owned twice (answered by two nodes) and none is
// unowned (a new flow's SYN dropped) for longer than takeLag. Before, the drained node let go at once and the others
// took its buckets a Settle later. Stepped in 5 ms, the nodes in shuffled
// orders, metadata seen by all at each step.
func TestPlannedSwitchHasNoGapAndNoOverlap(t *testing.T) {
	for _, timed := range []bool{true, false} {
		t.Run(map[bool]string{true: "kernel-timed", false: "by timer"}[timed], func(t *testing.T) {
			plannedSwitchRuns(t, timed)
		})
	}
}

// plannedSwitchRuns drains and resumes a node of three; timed: the
// datapath switches at the instant (StageAt), else by the agents' timers
// (takers takeLag later: a short gap, never an overlap).
func plannedSwitchRuns(t *testing.T, timed bool) {
	for run := range 2 {
		rng := rand.New(rand.NewSource(int64(run)))
		names := []string{"web1", "web2", "web3"}
		nodes := simCluster(t, names)
		for _, nd := range nodes {
			nd.dp.noTimed = !timed
		}
		now := time.Unix(2000, 0)
		step := func() {
			order := append([]string(nil), names...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, n := range order {
				nodes[n].tier.converge(now)
			}
			gossipAll(nodes)
		}
		for range 40 {
			now = now.Add(5 * time.Millisecond)
			step()
		}
		if u, d := everyBucketOnce(nodes, names...); u != 0 || d != 0 {
			t.Fatalf("run %d: before the drain: %d unowned, %d twice", run, u, d)
		}
		// The planned change of a node: announce the instant (now + 3
		// Settle), then change its state; all see it within a step.
		change := func(n string, st heartbeat.State, what string) {
			at := now.Add(switchAhead(nodes[n].tier.o.Settle)).Truncate(time.Millisecond)
			nodes[n].view.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
			// The instant and the state ride in one metadata record: no
			// node sees the change without the instant.
			gossipAll(nodes)
			for _, v := range nodes {
				v.view.find(n).State = st
			}
			moved := false
			for range 120 {
				now = now.Add(5 * time.Millisecond)
				before := nodes[n].dp.owns([2]int{0, 0})
				step()
				// Kernel-timed: never a gap. By timer: a gap only within
				// takeLag of the instant (takers switch that much later),
				// never an overlap.
				gapOK := !timed && !now.Before(at) && now.Before(at.Add(takeLag))
				if u, d := everyBucketOnce(nodes, names...); d != 0 || u != 0 && !gapOK {
					t.Fatalf("run %d, %s of %s at +%v (switch at %v): %d buckets unowned, %d owned twice",
						run, what, n, now.Sub(time.Unix(2000, 0)), at.Sub(time.Unix(2000, 0)), u, d)
				}
				if len(before) != len(nodes[n].dp.owns([2]int{0, 0})) {
					moved = true
					if now.Before(at) {
						t.Fatalf("run %d: %s switched before the announced instant", run, n)
					}
				}
			}
			if !moved {
				t.Fatalf("run %d: the %s of %s moved no bucket", run, what, n)
			}
		}
		change("web2", heartbeat.StateDraining, "drain")
		if n := len(nodes["web2"].dp.owns([2]int{0, 0})); n != 0 {
			t.Fatalf("run %d: the drained node still owns %d buckets", run, n)
		}
		change("web2", heartbeat.StateActive, "resume")
		if n := len(nodes["web2"].dp.owns([2]int{0, 0})); n < TableSize/4 {
			t.Fatalf("run %d: the resumed node owns only %d buckets", run, n)
		}
	}
}
