package vip

import (
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// TestInForce: which members count as they were (held until their
// announced instant) and which as they are, and the views from each
// instant on; the same whatever order the members come in.
func TestInForce(t *testing.T) {
	now := time.Unix(5000, 0)
	limit := 660 * time.Millisecond
	act, drn, fld := heartbeat.StateActive, heartbeat.StateDraining, heartbeat.StateFailed
	ms := func(d int) string {
		return strconv.FormatInt(now.Add(time.Duration(d)*time.Millisecond).UnixMilli(), 10)
	}
	type mem struct {
		name  string
		state heartbeat.State
		rules string
		hs    string
		proto int
	}
	type held map[string]heldInputs
	h := func(st heartbeat.State, rules string) heldInputs { return heldInputs{state: st, rules: rules} }
	cases := []struct {
		name    string
		members []mem
		held    held
		cur     string   // name:state of every member in force now
		ahead   []string // per step: +ms name:state ...
	}{
		{"nothing announced",
			[]mem{{"a", act, "50/1", "", 4}, {"b", act, "50/1", "", 4}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1")},
			"a:active b:active", nil},
		{"a drain ahead: held active until its instant",
			[]mem{{"a", drn, "50/1", ms(300), 4}, {"b", act, "50/1", "", 4}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1")},
			"a:active b:active", []string{"+300 a:draining b:active"}},
		{"a drain, then b's weight change: two steps, the second with both",
			[]mem{{"a", drn, "50/1", ms(300), 4}, {"b", act, "0/1", ms(400), 4}, {"c", act, "50/1", "", 4}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1"), "c": h(act, "50/1")},
			"a:active b:active/50/1 c:active", []string{"+300 a:draining b:active/50/1 c:active", "+400 a:draining b:active/0/1 c:active"}},
		{"the same instant: one step",
			[]mem{{"a", drn, "50/1", ms(300), 4}, {"b", drn, "50/1", ms(300), 4}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1")},
			"a:active b:active", []string{"+300 a:draining b:draining"}},
		{"failed with an instant ahead: at once",
			[]mem{{"a", fld, "50/1", ms(300), 4}, {"b", act, "50/1", "", 4}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1")},
			"a:failed b:active", nil},
		{"an instant further ahead than the limit (a clock far off): at once",
			[]mem{{"a", drn, "50/1", ms(2000), 4}},
			held{"a": h(act, "50/1")},
			"a:draining", nil},
		{"the instant has passed: as it is",
			[]mem{{"a", drn, "50/1", ms(-5), 4}},
			held{"a": h(act, "50/1")},
			"a:draining", nil},
		{"never seen before: nothing to hold",
			[]mem{{"a", drn, "50/1", ms(300), 4}, {"b", act, "50/1", "", 4}},
			held{"b": h(act, "50/1")},
			"a:draining b:active", nil},
		{"a member of the release before planned switches: nobody held",
			[]mem{{"a", drn, "50/1", ms(300), 4}, {"b", act, "50/1", "", 1}},
			held{"a": h(act, "50/1"), "b": h(act, "50/1")},
			"a:draining b:active", nil},
		{"announced but unchanged: nothing held",
			[]mem{{"a", act, "50/1", ms(300), 4}},
			held{"a": h(act, "50/1")},
			"a:active", nil},
	}
	show := func(members []heartbeat.Member) string {
		byName := map[string]heartbeat.Member{}
		var names []string
		for _, m := range members {
			byName[m.Name] = m
			names = append(names, m.Name)
		}
		slices.Sort(names)
		s := ""
		for i, n := range names {
			m := byName[n]
			if i > 0 {
				s += " "
			}
			s += n + ":" + m.State.String()
			if m.Ext[extRules] != "50/1" {
				s += "/" + m.Ext[extRules]
			}
		}
		return s
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for shuffle := range 20 {
				rng := rand.New(rand.NewSource(int64(shuffle)))
				var members []heartbeat.Member
				for _, m := range c.members {
					ext := map[string]string{extRules: m.rules}
					if m.hs != "" {
						ext[extSwitch] = m.hs
					}
					members = append(members, heartbeat.Member{Name: m.name, State: m.state, Proto: m.proto, Ext: ext})
				}
				rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
				cur, ahead, next := inForce(members, c.held, now, limit)
				want := c.cur
				if got := show(cur); got != stripDefault(want) {
					t.Fatalf("shuffle %d: in force %q, want %q", shuffle, got, want)
				}
				var got []string
				for _, a := range ahead {
					got = append(got, fmt.Sprintf("+%d %s", a.at.Sub(now).Milliseconds(), show(a.members)))
				}
				if fmt.Sprint(got) != fmt.Sprint(stripAll(c.ahead)) {
					t.Fatalf("shuffle %d: ahead %q, want %q", shuffle, got, c.ahead)
				}
				// What is in force now is what the next call holds.
				for _, m := range cur {
					if next[m.Name] != inputsOf(m) {
						t.Fatalf("shuffle %d: %s held as %+v, in force %+v", shuffle, m.Name, next[m.Name], inputsOf(m))
					}
				}
				// The members passed in are not changed.
				for _, m := range members {
					for _, cm := range c.members {
						if cm.name == m.Name && (m.State != cm.state || m.Ext[extRules] != cm.rules) {
							t.Fatalf("shuffle %d: %s changed in the caller's list", shuffle, m.Name)
						}
					}
				}
			}
		})
	}
}

// stripDefault drops the "/50/1" the expectations spell out for clarity.
func stripDefault(s string) string { return strings.ReplaceAll(s, "/50/1", "") }

func stripAll(ss []string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, stripDefault(s))
	}
	return out
}

// BenchmarkInForce: 32 members, every converge tick (10 ms): steady (no
// change since the last tick) and with one drain announced ahead.
func BenchmarkInForce(b *testing.B) {
	now := time.Unix(5000, 0)
	var members []heartbeat.Member
	held := map[string]heldInputs{}
	for i := range 32 {
		m := heartbeat.Member{Name: fmt.Sprintf("web%02d", i), State: heartbeat.StateActive, Proto: 4, Ext: map[string]string{extRules: "50/1", extHealth: "1"}}
		members = append(members, m)
		held[m.Name] = inputsOf(m)
	}
	b.Run("steady", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inForce(members, held, now, 660*time.Millisecond)
		}
	})
	drain := slices.Clone(members)
	drain[7].State = heartbeat.StateDraining
	drain[7].Ext = map[string]string{extRules: "50/1", extHealth: "1", extSwitch: strconv.FormatInt(now.Add(300*time.Millisecond).UnixMilli(), 10)}
	b.Run("drain-ahead", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inForce(drain, held, now, 660*time.Millisecond)
		}
	})
}
