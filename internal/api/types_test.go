package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestEventJSONRoundTrip: every field survives encoding and decoding
// (group and from included, as docs/failover.md promises), the time keeps
// a fraction, and an event without group/from does not carry them.
func TestEventJSONRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, e := range []Event{
		{Time: at, Type: "group_failover", Node: "db2", Detail: "db: db1 -> db2 (lease_expired)", Group: "db", From: "db1"},
		{Time: at.Add(1500 * time.Microsecond), Type: "member_failed", Node: "web3", Detail: "no heartbeat"},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !back.Time.Equal(e.Time) || back.Type != e.Type || back.Node != e.Node || back.Detail != e.Detail || back.Group != e.Group || back.From != e.From {
			t.Errorf("round trip: %+v -> %s -> %+v", e, b, back)
		}
		if !strings.Contains(string(b), `"time":"2026-12-01T10:00:00.00`) {
			t.Errorf("time without its fraction: %s", b)
		}
		if e.Group == "" && strings.Contains(string(b), `"group"`) {
			t.Errorf("empty group encoded: %s", b)
		}
	}
}
