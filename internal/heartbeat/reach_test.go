package heartbeat

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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
				m.heardLocked(p)
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
	t.Run("a mended split: a failed member heard again that failed this node", func(t *testing.T) {
		m := reachRig(t, 3, t0)
		heard(m, silent)
		m.setPeerStateLocked(m.peers["n02"], StateFailed, silent, "split")
		send := func(seq uint64, down []string, now time.Time) {
			hb := heartbeat{Name: "n02", Boot: 7, Seq: seq, Interval: 50, V: 9, Down: down,
				Meta: &Meta{Priority: 2, State: StateActive, Boot: 7, ProbePort: 1, Proto: ProtocolVersion}}
			b, _ := json.Marshal(hb)
			if err := m.handleHeartbeat(pathPrivate, m.sealer.seal(b), netip.MustParseAddr("127.0.0.2"), now); err != nil {
				t.Fatal(err)
			}
		}
		// Its first heartbeat after the heal: it is back here, and it
		// still serves this node's buckets, so this node stops at once.
		send(100, []string{"n01"}, later)
		if x := m.member("n02"); x.State != StateActive {
			t.Fatalf("n02 after its first heartbeat: %+v; want active", x)
		}
		if !m.member("n01").Cut {
			t.Fatal("this node was not left out on the heartbeat of a member that still counts it failed")
		}
		// It heard this node: its list no longer names it.
		send(101, nil, later.Add(10*time.Millisecond))
		m.check(later.Add(20 * time.Millisecond))
		if m.member("n01").Cut {
			t.Fatal("still left out after the member heard this node again")
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
// peer whose memberlist had the others dead) is joined through memberlist
// from its first full heartbeat; the heartbeat alone makes no member (it
// may be a replayed capture of a member since forgotten). A
// liveness-only heartbeat and the backup path note nobody; the list is
// bounded, and a stranger that became a member is dropped from it.
func TestStrangerIsJoined(t *testing.T) {
	m, _ := watchRig(t, 3)
	now := time.Now()
	send := func(path int, name string, from string, meta bool) {
		hb := heartbeat{Name: name, Boot: 9, Seq: 1, Interval: 50, V: 1}
		if meta {
			hb.Meta = &Meta{Priority: 9, State: StateActive, Boot: 9, ProbePort: 1, Proto: ProtocolVersion}
		}
		b, _ := json.Marshal(hb)
		if err := m.handleHeartbeat(path, m.sealer.seal(b), netip.MustParseAddr(from), now); err == nil {
			t.Errorf("a heartbeat from stranger %s was taken", name)
		}
	}
	send(pathPrivate, "n09", "127.0.0.9", false)
	send(pathBackup, "n09", "127.0.0.9", true)
	if len(m.strangers) != 0 {
		t.Fatalf("noted from a liveness-only or backup-path heartbeat: %v", m.strangers)
	}
	send(pathPrivate, "n09", "127.0.0.9", true)
	if x := m.member("n09"); x.Name != "" {
		t.Fatalf("a heartbeat alone made a member: %+v", x)
	}
	got := m.strangerTargetsLocked(now)
	if want := net.JoinHostPort("127.0.0.9", strconv.Itoa(m.opts.Port)); !slices.Equal(got, []string{want}) {
		t.Fatalf("join targets %v, want [%s]", got, want)
	}
	if again := m.strangerTargetsLocked(now.Add(time.Second)); len(again) != 0 {
		t.Errorf("tried again within 2 s: %v", again)
	}
	for i := range maxStrangers + 10 {
		send(pathPrivate, fmt.Sprintf("x%d", i), fmt.Sprintf("127.0.1.%d", i), true)
	}
	if len(m.strangers) > maxStrangers {
		t.Errorf("%d strangers kept, bound %d", len(m.strangers), maxStrangers)
	}
	// memberlist joined it: it is a member now, no longer a stranger.
	m.peers["n09"] = &peer{name: "n09", addr: netip.MustParseAddr("127.0.0.9"), state: StateActive}
	m.strangerTargetsLocked(now.Add(3 * time.Second))
	if _, still := m.strangers[netip.MustParseAddr("127.0.0.9")]; still {
		t.Error("a stranger that became a member is still tried")
	}
}

// The reason names the pair from the lists agreement read, whichever side
// reported it (an empty "()" was seen for a pair from a Down list).
func TestCutReason(t *testing.T) {
	ms := []reachMember{{Name: "n1", Unheard: map[string]time.Time{"n2": {}}}, {Name: "n2"}, {Name: "n3", Unheard: map[string]time.Time{"n1": {}}}}
	for name, want := range map[string]string{"n2": "(n1 does not hear it)", "n1": "(it does not hear n2, n3 does not hear it)"} {
		if got := cutReason("n3", name, "", ms); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q in it", name, got, want)
		}
	}
	if got := cutReason("n3", "n3", "n1", nil); !strings.HasPrefix(got, "n1 failed this node") {
		t.Errorf("self failed by n1: %q", got)
	}
}
