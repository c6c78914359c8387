package heartbeat

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// 10,000 junk packets from one stranger make one log line, not 10,000;
// another source and another kind of line still get theirs.
func TestMemberlistErrorsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	for i := range 10000 {
		l.Printf("[ERR] memberlist: Failed to decrypt packet from=10.0.0.5:%d: No installed keys could decrypt the message", 1024+i%5000)
	}
	l.Printf("[ERR] memberlist: Failed to decrypt packet from=10.0.0.6:999: No installed keys could decrypt the message")
	l.Printf("[WARN] memberlist: Was able to connect to node2 over TCP but UDP probes failed")
	l.Printf("[INFO] memberlist: Marking node2 as failed")
	l.Printf("[INFO] memberlist: Marking node2 as failed")
	lines := strings.Count(buf.String(), "\n")
	if lines != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", lines, buf.String())
	}
	for _, ip := range []string{"10.0.0.5", "10.0.0.6"} {
		if !strings.Contains(buf.String(), "from="+ip) {
			t.Errorf("no line for %s", ip)
		}
	}
}

func TestLineLimiterBounded(t *testing.T) {
	ll := NewLineLimiter(1e9, 100)
	for i := range 1000 {
		ll.Allow(fmt.Sprint(i), time.Time{})
	}
	if len(ll.seen) > 100 {
		t.Fatalf("limiter holds %d keys", len(ll.seen))
	}
}
