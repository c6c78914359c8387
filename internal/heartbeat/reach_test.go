package heartbeat

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// agreeReach leaves out one of every pair that cannot talk, the same one
// whatever the order of its inputs, and nobody for a pair younger than
// hold (the moments in which a dead member's survivors time it out).
func TestAgreeReach(t *testing.T) {
	now := time.Unix(1000, 0)
	old, young := now.Add(-time.Second), now.Add(-10*time.Millisecond)
	const hold = 400 * time.Millisecond
	type un = map[string]time.Time
	m := func(name string, rank int, unheard un) reachMember {
		return reachMember{Name: name, Rank: rank, Unheard: unheard}
	}
	for _, tc := range []struct {
		name    string
		members []reachMember
		want    []string
	}{
		{"all hear all", []reachMember{m("n1", 1, nil), m("n2", 2, nil), m("n3", 3, nil)}, nil},
		{"one-way n1→n2: of the pair the larger rank goes",
			[]reachMember{m("n1", 1, nil), m("n2", 2, un{"n1": old}), m("n3", 3, nil)}, []string{"n2"}},
		{"the same pair reported from the other end",
			[]reachMember{m("n1", 1, un{"n2": old}), m("n2", 2, nil), m("n3", 3, nil)}, []string{"n2"}},
		{"rank, not name, decides",
			[]reachMember{m("a", 9, nil), m("b", 2, un{"a": old}), m("c", 3, nil)}, []string{"a"}},
		{"equal ranks: the larger name", []reachMember{m("a", 0, un{"b": old}), m("b", 0, nil)}, []string{"b"}},
		{"a pair younger than hold counts for nothing",
			[]reachMember{m("n1", 1, nil), m("n2", 2, un{"n1": young}), m("n3", 3, nil)}, nil},
		{"a node nobody hears goes, not the others",
			[]reachMember{m("n1", 1, nil), m("n2", 2, un{"n1": old}), m("n3", 3, un{"n1": old}), m("n4", 4, un{"n1": old})}, []string{"n1"}},
		{"a node that hears nobody goes",
			[]reachMember{m("n1", 1, nil), m("n2", 2, nil), m("n3", 3, nil), m("n4", 4, un{"n1": old, "n2": old, "n3": old})}, []string{"n4"}},
		{"a chain n1-n2-n3: the middle one",
			[]reachMember{m("n1", 1, un{"n2": old}), m("n2", 2, nil), m("n3", 3, un{"n2": old})}, []string{"n2"}},
		{"two separate pairs: one of each",
			[]reachMember{m("n1", 1, un{"n2": old}), m("n2", 2, nil), m("n3", 3, nil), m("n4", 4, un{"n3": old})}, []string{"n2", "n4"}},
		{"a triangle that cannot talk: two go",
			[]reachMember{m("n1", 1, un{"n2": old}), m("n2", 2, un{"n3": old}), m("n3", 3, un{"n1": old}), m("n4", 4, nil)}, []string{"n2", "n3"}},
		{"a name not in the cluster, and a member naming itself, count for nothing",
			[]reachMember{m("n1", 1, un{"gone": old, "n1": old}), m("n2", 2, nil)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 20 {
				in := slices.Clone(tc.members)
				r := rand.New(rand.NewPCG(uint64(i), 7))
				r.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
				got := slices.Sorted(maps.Keys(agreeReach(in, now, hold)))
				if !slices.Equal(got, tc.want) {
					t.Fatalf("order %v: left out %v, want %v", names(in), got, tc.want)
				}
			}
		})
	}
}

func names(ms []reachMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func BenchmarkAgreeReach(b *testing.B) {
	now := time.Unix(1000, 0)
	var ms []reachMember
	for i := range 32 {
		ms = append(ms, reachMember{Name: string(rune('a'+i%26)) + string(rune('0'+i/26)), Rank: i})
	}
	ms[3].Unheard = map[string]time.Time{ms[7].Name: now.Add(-time.Second)}
	for b.Loop() {
		agreeReach(ms, now, time.Millisecond)
	}
}
