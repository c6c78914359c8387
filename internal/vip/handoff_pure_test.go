package vip

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// TestHandOffDecision: what node a takes at once and what waits for whom,
// for every kind of previous owner, with the tables built from the
// candidates in shuffled orders (the decision must not depend on it).
func TestHandOffDecision(t *testing.T) {
	act, drn, fld, lft := heartbeat.StateActive, heartbeat.StateDraining, heartbeat.StateFailed, heartbeat.StateLeft
	cases := []struct {
		name       string
		before     []string // members of the current tables ("" : no tables yet)
		after      []string // members of the new tables
		defBefore  string
		defAfter   string
		states     map[string]heartbeat.State
		contested  []string
		justFailed []string
		letGo      []string
		// previous owners some of whose buckets must wait
		wait     []string
		defWaits string // the default host waits for this owner
		applied  bool   // a applies what it owns in before (else nothing)
	}{
		{name: "first tables: everything at once", after: []string{"a", "b", "c"}, defAfter: "a",
			states: map[string]heartbeat.State{"a": act, "b": act, "c": act}},
		{name: "a failed owner's buckets at once", before: []string{"a", "b", "c"}, after: []string{"a", "b"},
			defBefore: "a", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": fld}, applied: true},
		{name: "a left owner's buckets and default host at once", before: []string{"c", "a", "b"}, after: []string{"a", "b"},
			defBefore: "c", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": lft}, applied: true},
		{name: "a contested owner's wait (alive, cut off one way)", before: []string{"a", "b", "c"}, after: []string{"a", "b"},
			defBefore: "c", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": fld}, contested: []string{"c"},
			wait: []string{"c"}, defWaits: "c", applied: true},
		{name: "a just-failed owner's wait (alive, it may not have read it yet)", before: []string{"a", "b", "c"}, after: []string{"a", "b"},
			defBefore: "c", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": fld}, justFailed: []string{"c"},
			wait: []string{"c"}, defWaits: "c", applied: true},
		{name: "a draining owner's wait (it has not let go)", before: []string{"a", "b", "c"}, after: []string{"a", "b"},
			defBefore: "a", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": drn}, wait: []string{"c"}, applied: true},
		{name: "at a planned instant a draining owner that switches too: at once", before: []string{"a", "b", "c"}, after: []string{"a", "b"},
			defBefore: "c", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": drn}, letGo: []string{"c"}, applied: true},
		{name: "a joining member moves a few buckets between the live ones: they wait", before: []string{"a", "b"}, after: []string{"a", "b", "c"},
			defBefore: "a", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": act}, wait: []string{"b"}, applied: true},
		{name: "nobody's in the current tables (every serving member was out): wait for every member", before: []string{},
			after: []string{"a", "b", "c"}, defBefore: "", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": act},
			wait: []string{nobody}, defWaits: nobody},
		{name: "the default host of a live owner waits", before: []string{"b", "c"}, after: []string{"a", "b", "c"},
			defBefore: "b", defAfter: "a", states: map[string]heartbeat.State{"a": act, "b": act, "c": act}, wait: []string{"b", "c"}, defWaits: "b"},
	}
	for _, c := range cases {
		for shuffle := range 10 {
			t.Run(fmt.Sprintf("%s/%d", c.name, shuffle), func(t *testing.T) {
				rng := rand.New(rand.NewSource(int64(shuffle)))
				table := func(names []string) Table {
					var cands []Candidate
					for _, n := range names {
						cands = append(cands, Candidate{Name: n, Weight: 50})
					}
					rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
					return Assign(cands, TableSize)
				}
				set := func(names []string) map[string]bool {
					m := map[string]bool{}
					for _, n := range names {
						m[n] = true
					}
					return m
				}
				in := handOffInput{node: "a", tables: [][]Table{{table(c.after)}}, defaults: map[int]string{0: c.defAfter},
					prevDefaults: map[int]string{}, states: c.states, contested: set(c.contested), justFailed: set(c.justFailed), letGo: set(c.letGo),
					applied: Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}}}
				if c.before != nil {
					in.prevTables = [][]Table{{table(c.before)}}
					in.prevDefaults[0] = c.defBefore
					if c.applied {
						in.applied = ownershipOf(in.prevTables, in.prevDefaults, "a")
					}
				}
				r := handOff(in)
				key := [2]int{0, 0}
				mine := in.tables[0][0].Buckets("a")
				if len(r.want.Owned[key]) != len(mine) || r.want.Default[0] != (c.defAfter == "a") {
					t.Fatalf("want %d buckets (default %v), the table gives a %d", len(r.want.Owned[key]), r.want.Default[0], len(mine))
				}
				// Every bucket of a's is either taken now or waits for its
				// previous owner, never both; one waits only for a live or
				// contested owner that does not switch now.
				now := map[uint32]bool{}
				for _, b := range r.now.Owned[key] {
					now[b] = true
				}
				waitsFor := map[string]bool{}
				for _, b := range mine {
					prev, waits := r.prevOf[key][b]
					if waits == now[b] {
						t.Fatalf("bucket %d: taken now %v, waiting %v", b, now[b], waits)
					}
					if !waits {
						continue
					}
					waitsFor[prev] = true
					if s := c.states[prev]; s.Down() && !set(c.contested)[prev] && !set(c.justFailed)[prev] || set(c.letGo)[prev] {
						t.Fatalf("bucket %d waits for %s (%s) that has let go", b, prev, s)
					}
				}
				for _, w := range c.wait {
					if !waitsFor[w] {
						t.Errorf("no bucket waits for %s (waits for %v)", w, waitsFor)
					}
				}
				// Others may wait too: taking a member out or in also moves
				// a few buckets between those that stay (Maglev), and
				// those wait for their live owner.
				for w := range waitsFor {
					if c.states[w].Down() && !set(c.contested)[w] && !set(c.justFailed)[w] {
						t.Errorf("buckets wait for %s (%s)", w, c.states[w])
					}
					if !r.from[w] {
						t.Errorf("%s is not among those waited for (%v)", w, r.from)
					}
				}
				if got := r.defPrev[0]; got != c.defWaits {
					t.Errorf("the default host waits for %q, want %q", got, c.defWaits)
				}
				if r.now.Default[0] && c.defWaits != "" {
					t.Error("the default host is taken now and waits")
				}
				// Buckets a had and keeps are never given up meanwhile.
				for _, b := range in.applied.Owned[key] {
					if in.tables[0][0].Owner(int(b)) == "a" && !now[b] {
						t.Fatalf("bucket %d: a had it and keeps it, but not now", b)
					}
				}
			})
		}
	}
}
