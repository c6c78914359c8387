package vip

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// The heal of a one-way partition ({web3,web4} → the rest dropped): the
// majority had failed web3 and web4, which left themselves out (Cut).
// At the heal every node's view passes through its own transient states,
// each at its own moments (the chaos campaign's logs: web4 heard again
// by web1 40 ms before web3; web5 left out for 50 ms in some views, as it
// heard web3 and web4 later than the others; web3 cut in one view after
// another). Whatever the order, no bucket may be owned by two nodes at
// any millisecond (a SYN answered twice: a reset), and the cluster ends
// with every bucket owned once.
func TestHealOfAOneWayPartition(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4", "web5"}
	for run := range 10 {
		t.Run(fmt.Sprint(run), func(t *testing.T) { healRun(t, rand.New(rand.NewSource(int64(run))), names) })
	}
}

func healRun(t *testing.T, rng *rand.Rand, names []string) {
	s := newKernelSim(t, names, rng)
	cutSide := []string{"web3", "web4"}
	majority := []string{"web1", "web2", "web5"}
	for _, x := range cutSide {
		for _, v := range majority {
			m := s.nodes[v].view.find(x)
			m.State, m.Since = heartbeat.StateFailed, s.now
		}
		for _, v := range cutSide {
			s.nodes[v].view.find(x).Cut = true
		}
		for _, v := range majority {
			s.blocked[[2]string{x, v}] = true
		}
	}
	s.steps(100, 5*time.Millisecond)
	if u, d := everyBucketOnce(s.nodes, majority...); u != 0 || d != 0 {
		t.Fatalf("during the fault: %d buckets unowned, %d owned twice among the majority", u, d)
	}
	// The heal: metadata flows again; each view changes at its own times.
	clear(s.blocked)
	type change struct {
		at   time.Duration
		view string
		do   func(m *heartbeat.Member)
		who  string
	}
	var changes []change
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.Intn(hi-lo+1)) * time.Millisecond }
	slow := majority[rng.Intn(len(majority))] // hears the cut side late
	for _, v := range majority {
		for _, x := range cutSide {
			at := ms(0, 60)
			if v == slow {
				at = ms(100, 250)
			}
			changes = append(changes, change{at, v, func(m *heartbeat.Member) { m.State, m.Since = heartbeat.StateActive, s.now }, x})
			if rng.Intn(2) == 0 {
				// Heard again, but left out a while (a pair still counted).
				changes = append(changes, change{at, v, func(m *heartbeat.Member) { m.Cut = true }, x},
					change{at + ms(5, 60), v, func(m *heartbeat.Member) { m.Cut = false }, x})
			}
		}
	}
	for _, v := range cutSide {
		for _, x := range cutSide {
			changes = append(changes, change{ms(0, 80), v, func(m *heartbeat.Member) { m.Cut = false }, x})
		}
	}
	// Around the heal any member may be left out for a while in any view
	// (a pair still counted in one view and not in another: the logs show
	// a member of the majority that heard the cut side late left out for
	// 50 ms in some views and not in its own).
	for range 1 + rng.Intn(6) {
		x, v := names[rng.Intn(len(names))], names[rng.Intn(len(names))]
		at := ms(0, 100)
		changes = append(changes, change{at, v, func(m *heartbeat.Member) { m.Cut = true }, x},
			change{at + ms(5, 80), v, func(m *heartbeat.Member) { m.Cut = false }, x})
	}
	slices.SortStableFunc(changes, func(a, b change) int { return int(a.at - b.at) })
	start := s.now
	for s.now.Sub(start) < othersWait+400*time.Millisecond {
		s.now = s.now.Add(2 * time.Millisecond)
		for len(changes) > 0 && changes[0].at <= s.now.Sub(start) {
			c := changes[0]
			changes = changes[1:]
			c.do(s.nodes[c.view].view.find(c.who))
		}
		s.step()
		if _, d := everyBucketOnce(s.nodes, names...); d != 0 {
			t.Fatalf("at +%v after the heal: %d buckets owned twice", s.now.Sub(start), d)
		}
	}
	if u, d := everyBucketOnce(s.nodes, names...); u != 0 || d != 0 {
		t.Fatalf("%v after the heal: %d buckets unowned, %d owned twice", s.now.Sub(start), u, d)
	}
}

// A member left out in the others' views but not in its own (web3: the
// others counted a pair it was in, it did not) keeps its buckets, and
// the others' tables give them to web1 — a hand-off that never happens,
// as web3 never publishes those tables. Then web4 comes back: in the
// others' views web3 is taken back in at once, web3 itself hears web4
// 200 ms late. A bucket of web3's that the new tables give to web2 has
// web1 as previous owner in web2's tables, but web3 holds it: web2 must
// not take it when web1 let go, only once web3 has too. Before, it took
// it a Settle after web1 published the new tables, while web3 still
// answered (the chaos campaign's reset at the heal of a one-way
// partition, where web5 was left out in some views for 50 ms).
func TestHandOffWaitsForEveryMember(t *testing.T) {
	names := []string{"web1", "web2", "web3", "web4"}
	for run := range 2 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			s := newKernelSim(t, names, rand.New(rand.NewSource(int64(run))))
			for _, v := range names {
				m := s.nodes[v].view.find("web4")
				m.State, m.Since = heartbeat.StateFailed, s.now
			}
			s.steps(60, 5*time.Millisecond)
			live := []string{"web1", "web2", "web3"}
			if u, d := everyBucketOnce(s.nodes, live...); u != 0 || d != 0 {
				t.Fatalf("before: %d buckets unowned, %d owned twice", u, d)
			}
			for _, v := range []string{"web1", "web2", "web4"} {
				s.nodes[v].view.find("web3").Cut = true
			}
			s.steps(30, 5*time.Millisecond)
			back := s.now
			for _, v := range []string{"web1", "web2", "web4"} {
				s.nodes[v].view.find("web3").Cut = false
				m := s.nodes[v].view.find("web4")
				m.State, m.Since = heartbeat.StateActive, s.now
			}
			heard := false
			for s.now.Sub(back) < othersWait+400*time.Millisecond {
				s.now = s.now.Add(2 * time.Millisecond)
				if !heard && s.now.Sub(back) >= 200*time.Millisecond {
					heard = true
					m := s.nodes["web3"].view.find("web4")
					m.State, m.Since = heartbeat.StateActive, s.now
				}
				s.step()
				if _, d := everyBucketOnce(s.nodes, names...); d != 0 {
					t.Fatalf("at +%v after web4 came back: %d buckets owned twice", s.now.Sub(back), d)
				}
			}
			if u, d := everyBucketOnce(s.nodes, names...); u != 0 || d != 0 {
				t.Fatalf("at the end: %d buckets unowned, %d owned twice", u, d)
			}
		})
	}
}
