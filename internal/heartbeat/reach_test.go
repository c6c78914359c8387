package heartbeat

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/netip"
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

// reachRig: this node n01 and peers n02..nN that speak ReachProto, all
// heard at start.
func reachRig(t *testing.T, n int, start time.Time) *Membership {
	m, _ := watchRig(t, n)
	m.lastCheck = time.Time{}
	for _, p := range m.peers {
		p.meta.Proto = ProtocolVersion
		p.seen = [2]time.Time{start, start}
	}
	return m
}

func (m *Membership) member(name string) Member {
	for _, x := range m.Members() {
		if x.Name == name {
			return x
		}
	}
	return Member{}
}

// The membership's side of mutual reachability, one check at a time: who
// is failed, who is kept while another member hears it, who is cut.
func TestReachDecisions(t *testing.T) {
	t0 := time.Now()
	silent := t0.Add(ProfileLAN.Timeout + 20*time.Millisecond) // a check after n02's timeout
	later := silent.Add(ProfileLAN.Timeout + 20*time.Millisecond)
	// heard refreshes every peer but the silent ones, at now.
	heard := func(m *Membership, now time.Time, except ...string) {
		for _, p := range m.peers {
			if !slices.Contains(except, p.name) {
				p.seen = [2]time.Time{now, now}
				m.heardLocked(p, now)
			}
		}
	}
	t.Run("one-way: kept while another hears it, then the pair is settled by rank", func(t *testing.T) {
		m := reachRig(t, 3, t0)
		heard(m, silent, "n02")
		m.check(silent)
		if x := m.member("n02"); x.State != StateActive || !x.Unheard || x.Cut {
			t.Fatalf("n02 right after its timeout: %+v; want active, unheard, not cut (n03 hears it)", x)
		}
		heard(m, later, "n02")
		m.check(later)
		// n01 (priority 1) and n02 (2) cannot talk: n02 goes, here and
		// on n03 (which reads n01's list).
		if x := m.member("n02"); x.State != StateActive || !x.Cut {
			t.Fatalf("n02 after the hold: %+v; want active and cut", x)
		}
		if m.member("n01").Cut {
			t.Fatal("this node (priority 1) was cut; the pair's larger priority goes")
		}
		u, _ := m.unheardListsLocked()
		if !slices.Equal(u, []string{"n02"}) {
			t.Fatalf("this node's heartbeats name %v as unheard", u)
		}
		// Healed: heard again, no longer cut.
		heard(m, later.Add(time.Millisecond))
		m.check(later.Add(time.Millisecond))
		if x := m.member("n02"); x.Unheard || x.Cut {
			t.Fatalf("after the heal: %+v", x)
		}
	})
	t.Run("dead: failed once the other survivor does not hear it either", func(t *testing.T) {
		m := reachRig(t, 3, t0)
		heard(m, silent, "n02")
		m.check(silent)
		m.takeReachLocked(m.peers["n03"], []string{"n02"}, nil, silent)
		m.check(silent.Add(10 * time.Millisecond))
		if x := m.member("n02"); x.State != StateFailed || x.Cut || x.Contested {
			t.Fatalf("n02: %+v; want failed, not contested (nobody hears it)", x)
		}
		_, d := m.unheardListsLocked()
		if !slices.Equal(d, []string{"n02"}) {
			t.Fatalf("Down list %v", d)
		}
	})
	t.Run("majority: of three survivors two suffice", func(t *testing.T) {
		m := reachRig(t, 4, t0)
		m.takeReachLocked(m.peers["n03"], []string{"n02"}, nil, silent)
		heard(m, silent, "n02")
		m.check(silent)
		if x := m.member("n02"); x.State != StateFailed || !x.Contested {
			t.Fatalf("n02: %+v; want failed (this node and n03 do not hear it), contested (n04 does)", x)
		}
	})
	t.Run("a member that failed this node: cut at once", func(t *testing.T) {
		m := reachRig(t, 3, t0)
		heard(m, silent)
		m.takeReachLocked(m.peers["n03"], nil, []string{"n01"}, silent)
		m.check(silent)
		if !m.member("n01").Cut {
			t.Fatal("n03 failed this node, which still serves")
		}
	})
	t.Run("hearing nobody: every peer failed, nobody vouched for by a silent one", func(t *testing.T) {
		m := reachRig(t, 4, t0)
		m.check(silent)
		for _, n := range []string{"n02", "n03", "n04"} {
			if x := m.member(n); x.State != StateFailed {
				t.Errorf("%s: %+v; want failed", n, x)
			}
		}
	})
	t.Run("a member of protocol 3 neither vouches nor reports", func(t *testing.T) {
		m := reachRig(t, 3, t0)
		m.peers["n03"].meta.Proto = 3
		heard(m, silent, "n02")
		m.check(silent)
		if x := m.member("n02"); x.State != StateFailed {
			t.Fatalf("n02: %+v; want failed as before protocol 4", x)
		}
	})
}

// A sender memberlist did not report (a restart that joined through a
// peer whose memberlist had the others dead) is taken as a member from
// its first full heartbeat; one whose priority or address is taken, a
// liveness-only heartbeat and the backup path are not enough.
func TestAdoptFromHeartbeat(t *testing.T) {
	m, _ := watchRig(t, 3)
	now := time.Now()
	send := func(path int, name string, prio int, from string, meta bool) error {
		hb := heartbeat{Name: name, Boot: 9, Seq: 1, Interval: 50, V: 1}
		if meta {
			hb.Meta = &Meta{Priority: prio, State: StateActive, Boot: 9, ProbePort: 1, Proto: ProtocolVersion}
		}
		b, _ := json.Marshal(hb)
		return m.handleHeartbeat(path, m.sealer.seal(b), netip.MustParseAddr(from), now)
	}
	if err := send(pathPrivate, "n09", 9, "127.0.0.9", false); err == nil {
		t.Error("a liveness-only heartbeat adopted a member")
	}
	if err := send(pathBackup, "n09", 9, "127.0.0.9", true); err == nil {
		t.Error("a heartbeat on the backup path adopted a member")
	}
	if err := send(pathPrivate, "n08", 2, "127.0.0.8", true); err == nil {
		t.Error("a member with n02's priority was adopted")
	}
	if err := send(pathPrivate, "n07", 7, "127.0.0.2", true); err == nil {
		t.Error("a member at n02's address was adopted")
	}
	if err := send(pathPrivate, "n09", 9, "127.0.0.9", true); err != nil {
		t.Fatalf("not adopted: %v", err)
	}
	if x := m.member("n09"); x.State != StateActive || x.Priority != 9 {
		t.Fatalf("adopted as %+v", x)
	}
}
