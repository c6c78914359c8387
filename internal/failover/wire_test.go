package failover

import (
	"testing"

	"github.com/clusterd/clusterd/internal/config"
)

var testOwners = []string{"db1", "db2"}

func TestSummaryRoundTrip(t *testing.T) {
	for _, s := range []summary{
		{Owner: "db1", Epoch: 7, State: "online", Repl: "sync", Reason: reasonFailed, Prev: "db2", Failovers: 3, LagBytes: 4096, Standby: "db2"},
		{State: "offline", Repl: "none"},
		// A word or node the reader has no code for travels whole.
		{Owner: "db3", Epoch: 1, State: "frozen", Repl: "quorum", Reason: "cosmic_ray", Prev: "db1"},
	} {
		enc := s.encode(testOwners)
		got, err := parseSummary(enc, testOwners)
		if err != nil || got != s {
			t.Fatalf("round trip %q: %+v %v", enc, got, err)
		}
	}
	if enc := (summary{Owner: "db2", Epoch: 7, State: "online", Repl: "sync", Reason: reasonFailed, Prev: "db1", Standby: "db1"}).encode(testOwners); enc != "1|7|o|s|f|0|0|0|0" {
		t.Errorf("compact form %q", enc)
	}
	for _, bad := range []string{"", "a|b", "0|x|o|s|f|1|1|2|1", "0|1|o|s|f|1|1|2", "7|1|o|s|f|1|1|2|1", "0|1|q|s|f|1|1|2|1", "01|1|o|s|f|1|1|2|1"} {
		if _, err := parseSummary(bad, testOwners); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseSummary: a peer's metadata never crashes the reader, and what
// parses prints back to the same fields.
func FuzzParseSummary(f *testing.F) {
	f.Add("0|7|o|s|f|1|3|4096|1")
	f.Add("|0|x|n||||0|")
	f.Add("=db9|1|=frozen|a|=x|0|1|2|=")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseSummary(v, testOwners)
		if err != nil {
			return
		}
		again, err := parseSummary(s.encode(testOwners), testOwners)
		if err != nil || again != s {
			t.Fatalf("%q -> %+v -> %q -> %+v %v", v, s, s.encode(testOwners), again, err)
		}
	})
}

// A rolling upgrade: the summary in protocol 1's words is read from such
// a leader, the compact one from a leader of this release, and the
// compact one wins when both are there.
func TestLeaderSummaryEitherForm(t *testing.T) {
	g := config.GroupConfig{Name: "db", Owners: testOwners}
	s := summary{Owner: testOwners[1], Epoch: 7, State: "online", Repl: "sync", Reason: reasonMove, Prev: testOwners[0], Failovers: 3, LagBytes: 12, Standby: testOwners[0]}
	for _, tc := range []struct {
		name string
		ext  map[string]string
	}{
		{"words (protocol 1)", map[string]string{extGroupWords + "db": s.words()}},
		{"compact", map[string]string{extGroup + "db": s.encode(testOwners)}},
		{"both", map[string]string{extGroup + "db": s.encode(testOwners), extGroupWords + "db": "junk"}},
	} {
		got, ok := leaderSummary(tc.ext, g)
		if !ok || got != s {
			t.Errorf("%s: %+v %v, want %+v", tc.name, got, ok, s)
		}
	}
	if _, ok := leaderSummary(map[string]string{}, g); ok {
		t.Error("a summary from nothing")
	}
	// What protocol 1 wrote (its summary.String, kept here as text).
	old := "db2|7|online|sync|move|db1|3|12|db1"
	if got, err := parseWords(old); err != nil || got.Owner != "db2" || got.Failovers != 3 {
		t.Errorf("protocol 1's summary: %+v %v", got, err)
	}
}
