package failover

import "testing"

func TestSummaryRoundTrip(t *testing.T) {
	s := summary{Owner: "db1", Epoch: 7, State: "online", Repl: "sync", Reason: reasonFailed, Prev: "db2", Failovers: 3, LagBytes: 4096, Standby: "db2"}
	got, err := parseSummary(s.String())
	if err != nil || got != s {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "a|b", "db1|x|online|sync|r|p|1|2|s", "db1|1|online|sync|r|p|1|2"} {
		if _, err := parseSummary(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseSummary: a peer's metadata never crashes the reader, and what
// parses prints back to the same fields.
func FuzzParseSummary(f *testing.F) {
	f.Add("db1|7|online|sync|owner_failed|db2|3|4096|db2")
	f.Add("|0|offline|none||||0|0|")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := parseSummary(v)
		if err != nil {
			return
		}
		again, err := parseSummary(s.String())
		if err != nil || again != s {
			t.Fatalf("%q -> %+v -> %q -> %+v %v", v, s, s.String(), again, err)
		}
	})
}
