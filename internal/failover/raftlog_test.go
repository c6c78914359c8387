package failover

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRaftRepeatKey(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`raft: failed to heartbeat to: peer=node2 backoff time=10ms error="dial tcp 10.77.2.12:7947: connect: connection refused"`,
			"failed to heartbeat to|peer=node2"},
		{`raft: failed to appendEntries to: peer="{Voter node2 node2}" error="connecting to quorum peer 10.77.2.12:7947: i/o timeout"`,
			"failed to appendEntries to|peer={Voter node2 node2}"},
		{`raft: failed to appendEntries to: peer="{Voter node3 node3}" error=EOF`,
			"failed to appendEntries to|peer={Voter node3 node3}"},
		{`raft: failed to make requestVote RPC: target="{Voter node3 node3}" error="i/o timeout" term=11`,
			"failed to make requestVote RPC|target={Voter node3 node3}"},
		{`raft: rejecting pre-vote request since we have a leader: from=10.77.2.11:7947 leader=10.77.2.13:7947 leader-id=node3`,
			"rejecting pre-vote request since we have a leader|from=10.77.2.11:7947"},
		// a key inside another key's name is not it
		{`raft: something: xpeer=a peer=b`, "something|peer=b"},
		// about no peer: always logged
		{`raft: failed to contact quorum of nodes, stepping down`, ""},
		{`raft: Election timeout reached, restarting election`, ""},
		{`raft: heartbeat timeout reached, starting election: last-leader-addr=10.77.2.13:7947 last-leader-id=node3`, ""},
		{``, ""},
		{`raft: x: peer="unterminated`, "x|peer=unterminated"},
	} {
		if got := raftRepeatKey(tc.line); got != tc.want {
			t.Errorf("raftRepeatKey(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestHclogWriterHoldsRepeats: raft's per-peer errors come out once per
// window, a line about no peer every time.
func TestHclogWriterHoldsRepeats(t *testing.T) {
	var buf bytes.Buffer
	w := newHclogWriter(slog.New(slog.NewTextHandler(&buf, nil)))
	for range 50 {
		_, _ = w.Write([]byte(`2026-12-07T05:00:00.000Z [ERROR] raft: failed to heartbeat to: peer=node2 backoff time=10ms error="refused"` + "\n"))
		_, _ = w.Write([]byte(`2026-12-07T05:00:00.000Z [WARN]  raft: failed to contact quorum of nodes, stepping down` + "\n"))
	}
	out := buf.String()
	if n := strings.Count(out, "failed to heartbeat to"); n != 1 {
		t.Errorf("the heartbeat error was logged %d times, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "stepping down"); n != 50 {
		t.Errorf("the step-down was logged %d times, want 50", n)
	}
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "component=quorum") {
		t.Errorf("level or component lost:\n%s", out)
	}
}
