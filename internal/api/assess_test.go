package api

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/vocab"
)

// Assess over statuses, each with its members and groups shuffled: the
// worst severity and the findings do not depend on the order.
func TestAssess(t *testing.T) {
	m := func(name string, state vocab.MemberState) Member { return Member{Name: name, State: state} }
	well := func() *Status {
		return &Status{Converged: true,
			Members: []Member{m("n1", "active"), m("n2", "active"), m("n3", "active")},
			Groups:  []Group{{Name: "db", Owner: "n1", State: "online", Replication: "sync", Standby: "n2"}},
			Quorum:  &Quorum{Voters: 3, Alive: 3, HasQuorum: true, Leader: "n1"}}
	}
	th := DefaultThresholds()
	for _, tc := range []struct {
		name  string
		edit  func(*Status)
		worst Severity
		want  []string // substrings of the findings, in order
	}{
		{"all well", func(*Status) {}, OK, nil},
		{"a member failed", func(s *Status) { s.Members[2].State = "failed"; s.Quorum.Alive = 2 }, Warning, []string{"quorum: 2 of 3", "member n3 failed"}},
		{"quorum lost", func(s *Status) {
			s.Members[1].State, s.Members[2].State = "failed", "failed"
			s.Quorum.Alive, s.Quorum.HasQuorum = 1, false
		}, Critical, []string{"quorum lost: 1 of 3", "member n2 failed", "member n3 failed"}},
		{"group offline", func(s *Status) { s.Groups[0].State, s.Groups[0].Owner = "offline", "" }, Critical, []string{"group db is offline"}},
		{"group degraded", func(s *Status) { s.Groups[0].State, s.Groups[0].Standby = "degraded", "" }, Warning, []string{"group db is degraded"}},
		{"standby not synchronous", func(s *Status) { s.Groups[0].Replication = "async" }, Warning, []string{"not synchronous"}},
		{"lag warning", func(s *Status) { s.Groups[0].LagBytes = th.LagWarn }, Warning, []string{"lag"}},
		{"lag critical", func(s *Status) { s.Groups[0].LagBytes = th.LagCrit + 1 }, Critical, []string{"lag"}},
		{"a member left", func(s *Status) { s.Members[0].State = "left" }, Warning, []string{"member n1 left"}},
		{"config mismatch", func(s *Status) { s.Members[1].ConfigMismatch = []string{"load_balancing"} }, Warning, []string{"config differs"}},
		{"not converged", func(s *Status) { s.Converged = false }, Warning, []string{"converged: no"}},
		{"an agent's problem", func(s *Status) { s.Problems = []string{"n2: the backup heartbeat path is down"} }, Warning, []string{"backup heartbeat path"}},
		{"no groups, no quorum", func(s *Status) { s.Groups, s.Quorum = nil, nil }, OK, nil},
	} {
		for run := range 4 {
			s := well()
			tc.edit(s)
			r := rand.New(rand.NewSource(int64(run)))
			r.Shuffle(len(s.Members), func(i, j int) { s.Members[i], s.Members[j] = s.Members[j], s.Members[i] })
			fs := Assess(s, th)
			if got := Worst(fs); got != tc.worst {
				t.Errorf("%s (run %d): worst %s, want %s: %v", tc.name, run, got, tc.worst, fs)
			}
			if len(fs) != len(tc.want) {
				t.Errorf("%s (run %d): %d findings, want %d: %v", tc.name, run, len(fs), len(tc.want), fs)
				continue
			}
			for _, w := range tc.want {
				found := false
				for _, f := range fs {
					found = found || strings.Contains(f.Text, w)
				}
				if !found {
					t.Errorf("%s (run %d): no finding says %q: %v", tc.name, run, w, fs)
				}
			}
			for i := 1; i < len(fs); i++ {
				if fs[i].Severity > fs[i-1].Severity {
					t.Errorf("%s: findings not worst first: %v", tc.name, fs)
				}
			}
		}
	}
}

// The plugin line: status word, one line, perfdata after '|'.
func TestCheckLine(t *testing.T) {
	s := &Status{Converged: true, VIPs: []VIP{{Address: "10.0.0.100/24"}}, Members: []Member{{Name: "n1", State: "active", Buckets: 8190}, {Name: "n2", State: "failed"}},
		Groups: []Group{{Name: "db", State: "online", LagBytes: 12, Failovers: 2}}, Quorum: &Quorum{Voters: 3, Alive: 2, HasQuorum: true}}
	fs := Assess(s, DefaultThresholds())
	line := CheckLine(s, fs, DefaultThresholds())
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "CLUSTERD WARNING - ") {
		t.Fatalf("%q", line)
	}
	_, perf, ok := strings.Cut(line, " | ")
	if !ok {
		t.Fatalf("no perfdata: %q", line)
	}
	for _, w := range []string{"members_active=1;;;0;2", "members_failed=1;;;0;2", "buckets_n1=8190;;;0", "lag_db=12B;16777216;268435456;0", "failovers_db=2c", "voters_alive=2;;2:;0;3"} {
		if !strings.Contains(perf, w) {
			t.Errorf("perfdata lacks %q: %s", w, perf)
		}
	}
	ok2 := CheckLine(&Status{Converged: true, Members: []Member{{Name: "n1", State: "active"}}}, nil, Thresholds{})
	if !strings.HasPrefix(ok2, "CLUSTERD OK - 1 of 1 members active |") {
		t.Errorf("%q", ok2)
	}
}
