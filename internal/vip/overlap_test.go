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
// kernelSim is a simulated cluster whose datapaths switch at their
// staged instants by one shared clock, as the nodes' kernels do.
type kernelSim struct {
	nodes   map[string]*simNode
	names   []string
	rng     *rand.Rand
	t0, now time.Time
	blocked map[[2]string]bool // from, to: metadata not delivered
}

func newKernelSim(t *testing.T, names []string, rng *rand.Rand) *kernelSim {
	s := &kernelSim{nodes: simCluster(t, names), names: names, rng: rng, t0: time.Unix(2000, 0), blocked: map[[2]string]bool{}}
	s.now = s.t0
	for _, nd := range s.nodes {
		nd.dp.clock = &s.now
	}
	return s
}

// step converges every node, in a shuffled order, then delivers every
// node's metadata to every other that is not blocked.
func (s *kernelSim) step() {
	o := slices.Clone(s.names)
	s.rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
	for _, n := range o {
		s.nodes[n].tier.converge(s.now)
	}
	for _, a := range s.names {
		for _, b := range s.names {
			if a != b && !s.blocked[[2]string{a, b}] {
				gossip(s.nodes, a, b)
			}
		}
	}
}

// steps advances the clock by d before each of n steps.
func (s *kernelSim) steps(n int, d time.Duration) {
	for range n {
		s.now = s.now.Add(d)
		s.step()
	}
}

// announce has n announce a planned change's instant; the instant and the
// state ride in one metadata record, so every node that is not blocked
// has it before it sees the state (setState).
func (s *kernelSim) announce(n string) time.Time {
	at := s.now.Add(switchAhead(s.nodes[n].tier.o.Settle)).Truncate(time.Millisecond)
	s.nodes[n].view.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
	for _, v := range s.names {
		if v != n && !s.blocked[[2]string{n, v}] {
			gossip(s.nodes, n, v)
		}
	}
	return at
}

// setState sets n's state in the given views.
func (s *kernelSim) setState(n string, st heartbeat.State, views ...string) {
	for _, v := range views {
		s.nodes[v].view.find(n).State = st
	}
}

func (s *kernelSim) since() time.Duration { return s.now.Sub(s.t0) }

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
	s := newKernelSim(t, names, rng)
	check := func(what string) {
		t.Helper()
		if u, d := everyBucketOnce(s.nodes, names...); u != 0 || d != 0 {
			t.Fatalf("%s, at +%v: %d buckets unowned, %d owned twice", what, s.since(), u, d)
		}
	}
	// The resuming node starts drained, in every view.
	s.setState(resuming, heartbeat.StateDrained, names...)
	s.steps(60, 5*time.Millisecond)
	check("before the changes")
	var others []string
	for _, n := range names {
		if n != late {
			others = append(others, n)
		}
	}
	// The resume: every node but the late one hears it at once.
	s.blocked[[2]string{resuming, late}] = true
	a1 := s.announce(resuming)
	s.setState(resuming, heartbeat.StateActive, others...)
	for range 100 {
		s.steps(1, time.Millisecond)
		check("after the resume was announced")
	}
	// The drain, 100 ms later, before the resume's instant; the late node
	// now hears both.
	a2 := s.announce(draining)
	if !a1.Before(a2) || !s.now.Before(a1) {
		t.Fatalf("the drain's instant (+%v) must follow the resume's (+%v), announced before it", a2.Sub(s.t0), a1.Sub(s.t0))
	}
	s.setState(draining, heartbeat.StateDraining, names...)
	delete(s.blocked, [2]string{resuming, late})
	gossip(s.nodes, resuming, late)
	s.setState(resuming, heartbeat.StateActive, late)
	for s.now.Before(a2.Add(300 * time.Millisecond)) {
		s.steps(1, time.Millisecond)
		check("between the two instants and after")
	}
	if n := len(s.nodes[draining].dp.owns([2]int{0, 0})); n != 0 {
		t.Fatalf("the drained node still owns %d buckets", n)
	}
	if n := len(s.nodes[resuming].dp.owns([2]int{0, 0})); n < TableSize/4 {
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
			s := newKernelSim(t, names, rand.New(rand.NewSource(int64(off))))
			s.steps(60, 5*time.Millisecond)
			at := s.announce("web2")
			s.setState("web2", heartbeat.StateDraining, names...)
			survivors := []string{"web1", "web2", "web3"}
			failed := false
			for s.now.Before(at.Add(200 * time.Millisecond)) {
				s.now = s.now.Add(time.Millisecond)
				if !failed && !s.now.Before(at.Add(off)) {
					failed = true
					s.setState("web4", heartbeat.StateFailed, survivors...)
				}
				s.step()
				who := names
				if failed {
					who = survivors
				}
				if _, d := everyBucketOnce(s.nodes, who...); d != 0 {
					t.Fatalf("at +%v (instant +%v, failure +%v): %d buckets owned twice", s.since(), at.Sub(s.t0), at.Add(off).Sub(s.t0), d)
				}
			}
			if u, _ := everyBucketOnce(s.nodes, survivors...); u != 0 {
				t.Fatalf("%d buckets unowned at the end", u)
			}
			if n := len(s.nodes["web2"].dp.owns([2]int{0, 0})); n != 0 {
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
			s := newKernelSim(t, names, rng)
			s.setState(back, heartbeat.StateFailed, names...)
			s.steps(60, 5*time.Millisecond)
			s.setState(back, heartbeat.StateActive, names...)
			s.steps(10, time.Millisecond)
			at := s.announce(draining)
			s.setState(draining, heartbeat.StateDraining, names...)
			for s.now.Before(at.Add(300 * time.Millisecond)) {
				s.steps(1, time.Millisecond)
				if _, d := everyBucketOnce(s.nodes, names...); d != 0 {
					t.Fatalf("at +%v (instant +%v): %d buckets owned twice", s.since(), at.Sub(s.t0), d)
				}
			}
			if u, _ := everyBucketOnce(s.nodes, names...); u != 0 {
				t.Fatalf("%d buckets unowned at the end", u)
			}
			if n := len(s.nodes[draining].dp.owns([2]int{0, 0})); n != 0 {
				t.Fatalf("the drained node still owns %d buckets", n)
			}
		})
	}
}
