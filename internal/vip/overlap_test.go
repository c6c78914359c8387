package vip

import (
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// Two planned changes announced within each other's window (a resume of
// one node, then a drain of another before the resume's instant), and one
// node hears of the first only together with the second. Each node's
// kernel switches at the instants by itself (the fake's clock), the
// nodes converge every millisecond in shuffled order: no bucket may be
// owned twice (a SYN answered by two nodes: a reset) or by nobody, at
// any millisecond. Before, the late node staged both changes at the
// second instant and kept its old tables between the two (the chaos
// campaign's resets with a resume and two drains within 310 ms); now
// every node holds each member as it was until that member's instant.
func TestOverlappingPlannedChanges(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4"}
	for run := range 6 {
		rng := rand.New(rand.NewSource(int64(run)))
		// The late hearer, the node resuming and the node draining, all
		// different.
		order := slices.Clone(names)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		late, resuming, draining := order[0], order[1], order[2]
		t.Run(fmt.Sprintf("%d/%s-late/%s-resumes/%s-drains", run, late, resuming, draining), func(t *testing.T) {
			overlappingRun(t, rng, names, late, resuming, draining)
		})
	}
}

func overlappingRun(t *testing.T, rng *rand.Rand, names []string, late, resuming, draining string) {
	nodes := simCluster(t, names)
	t0 := time.Unix(2000, 0)
	now := t0
	for _, nd := range nodes {
		nd.dp.clock = &now
	}
	blocked := map[[2]string]bool{} // from, to: metadata not delivered
	setState := func(n string, st heartbeat.State, views ...string) {
		for _, v := range views {
			nodes[v].view.find(n).State = st
		}
	}
	step := func() {
		o := slices.Clone(names)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		for _, n := range o {
			nodes[n].tier.converge(now)
		}
		for _, a := range names {
			for _, b := range names {
				if a != b && !blocked[[2]string{a, b}] {
					gossip(nodes, a, b)
				}
			}
		}
	}
	check := func(what string) {
		t.Helper()
		if u, d := everyBucketOnce(nodes, names...); u != 0 || d != 0 {
			for _, n := range names {
				t.Logf("%s owns %d, applied %d, timed %d, staged %d, sig %s pub %s", n, len(nodes[n].dp.owns([2]int{0, 0})), len(nodes[n].dp.applied.Owned[[2]int{0, 0}]), len(nodes[n].dp.timed), len(nodes[n].dp.staged), nodes[n].tier.sig, nodes[n].tier.pubSig)
			}
			t.Fatalf("%s, at +%v: %d buckets unowned, %d owned twice", what, now.Sub(t0), u, d)
		}
	}
	// The resuming node starts drained, in every view.
	setState(resuming, heartbeat.StateDrained, names...)
	for range 60 {
		now = now.Add(5 * time.Millisecond)
		step()
	}
	check("before the changes")
	announce := func(n string) time.Time {
		at := now.Add(switchAhead(nodes[n].tier.o.Settle)).Truncate(time.Millisecond)
		nodes[n].view.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
		// The instant and the state ride in one metadata record: no node
		// sees the change without the instant.
		for _, v := range names {
			if v != n && !blocked[[2]string{n, v}] {
				gossip(nodes, n, v)
			}
		}
		return at
	}
	others := func(but ...string) []string {
		var out []string
		for _, n := range names {
			if !slices.Contains(but, n) {
				out = append(out, n)
			}
		}
		return out
	}
	// The resume: every node but the late one hears it at once.
	blocked[[2]string{resuming, late}] = true
	a1 := announce(resuming)
	setState(resuming, heartbeat.StateActive, others(late)...)
	for range 100 {
		now = now.Add(time.Millisecond)
		step()
		check("after the resume was announced")
	}
	// The drain, 100 ms later, before the resume's instant; the late node
	// now hears both.
	a2 := announce(draining)
	if !a1.Before(a2) || !now.Before(a1) {
		t.Fatalf("the drain's instant (+%v) must follow the resume's (+%v), announced before it", a2.Sub(t0), a1.Sub(t0))
	}
	setState(draining, heartbeat.StateDraining, names...)
	delete(blocked, [2]string{resuming, late})
	gossip(nodes, resuming, late)
	setState(resuming, heartbeat.StateActive, late)
	for now.Before(a2.Add(300 * time.Millisecond)) {
		now = now.Add(time.Millisecond)
		step()
		check("between the two instants and after")
	}
	if n := len(nodes[draining].dp.owns([2]int{0, 0})); n != 0 {
		t.Fatalf("the drained node still owns %d buckets", n)
	}
	if n := len(nodes[resuming].dp.owns([2]int{0, 0})); n < TableSize/4 {
		t.Fatalf("the resumed node owns only %d buckets", n)
	}
}

// A failure just before, at or just after a planned drain's instant is
// not planned: it counts at once, and the hand-off starts from what the
// kernel switched to at the instant. Among the survivors no bucket is
// owned twice at any millisecond; the few that the failure moves between
// live survivors (Maglev) wait a Settle for their previous owner, as after
// any failure, and then every bucket has one owner.
func TestFailureAroundAPlannedSwitch(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4"}
	for _, off := range []time.Duration{-50 * time.Millisecond, -time.Millisecond, 0, time.Millisecond, 20 * time.Millisecond} {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(off)))
			nodes := simCluster(t, names)
			t0 := time.Unix(2000, 0)
			now := t0
			for _, nd := range nodes {
				nd.dp.clock = &now
			}
			step := func() {
				o := slices.Clone(names)
				rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
				for _, n := range o {
					nodes[n].tier.converge(now)
				}
				gossipAll(nodes)
			}
			for range 60 {
				now = now.Add(5 * time.Millisecond)
				step()
			}
			at := now.Add(switchAhead(nodes["web2"].tier.o.Settle)).Truncate(time.Millisecond)
			nodes["web2"].view.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
			gossipAll(nodes)
			for _, nd := range nodes {
				nd.view.find("web2").State = heartbeat.StateDraining
			}
			survivors := []string{"web1", "web2", "web3"}
			failed := false
			for now.Before(at.Add(200 * time.Millisecond)) {
				now = now.Add(time.Millisecond)
				if !failed && !now.Before(at.Add(off)) {
					failed = true
					for _, n := range survivors {
						nodes[n].view.find("web4").State = heartbeat.StateFailed
					}
				}
				step()
				who := names
				if failed {
					who = survivors
				}
				if _, d := everyBucketOnce(nodes, who...); d != 0 {
					t.Fatalf("at +%v (instant +%v, failure +%v): %d buckets owned twice", now.Sub(t0), at.Sub(t0), at.Add(off).Sub(t0), d)
				}
			}
			if u, _ := everyBucketOnce(nodes, survivors...); u != 0 {
				t.Fatalf("%d buckets unowned at the end", u)
			}
			if n := len(nodes["web2"].dp.owns([2]int{0, 0})); n != 0 {
				t.Fatalf("the drained node still owns %d buckets", n)
			}
		})
	}
}

// A hand-off still waiting for a live owner (a member came back: the
// table moves a few buckets between those that stayed) completes while a
// planned drain is staged. Taking the waiting buckets must not undo the
// staged switch: before, it replaced what the kernel was to switch to, and
// at the instant the draining node kept its buckets while the others took
// them (the chaos campaign's reset with overlapping drains and restarts).
func TestPendingHandOffDuringPlannedSwitch(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4"}
	for run := range 8 {
		rng := rand.New(rand.NewSource(int64(run)))
		o := slices.Clone(names)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		back, draining := o[0], o[1]
		t.Run(fmt.Sprintf("%d/%s-back/%s-drains", run, back, draining), func(t *testing.T) {
			nodes := simCluster(t, names)
			t0 := time.Unix(2000, 0)
			now := t0
			for _, nd := range nodes {
				nd.dp.clock = &now
			}
			step := func() {
				o := slices.Clone(names)
				rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
				for _, n := range o {
					nodes[n].tier.converge(now)
				}
				gossipAll(nodes)
			}
			for _, nd := range nodes {
				nd.view.find(back).State = heartbeat.StateFailed
			}
			for range 60 {
				now = now.Add(5 * time.Millisecond)
				step()
			}
			for _, nd := range nodes {
				nd.view.find(back).State = heartbeat.StateActive
			}
			for range 10 {
				now = now.Add(time.Millisecond)
				step()
			}
			at := now.Add(switchAhead(nodes[draining].tier.o.Settle)).Truncate(time.Millisecond)
			nodes[draining].view.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
			gossipAll(nodes)
			for _, nd := range nodes {
				nd.view.find(draining).State = heartbeat.StateDraining
			}
			for now.Before(at.Add(300 * time.Millisecond)) {
				now = now.Add(time.Millisecond)
				step()
				if _, d := everyBucketOnce(nodes, names...); d != 0 {
					t.Fatalf("at +%v (instant +%v): %d buckets owned twice", now.Sub(t0), at.Sub(t0), d)
				}
			}
			if u, _ := everyBucketOnce(nodes, names...); u != 0 {
				t.Fatalf("%d buckets unowned at the end", u)
			}
			if n := len(nodes[draining].dp.owns([2]int{0, 0})); n != 0 {
				t.Fatalf("the drained node still owns %d buckets", n)
			}
		})
	}
}
