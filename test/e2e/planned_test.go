//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// TestPlannedStopLosesNothing: a drain, a resume and a SIGTERM are
// planned switches (make before break): the node keeps its buckets until
// the instant it announced, when the others take them, each kernel by its
// own clock (nft meta time: StageAt). A client opening a new connection
// every 5 ms (1 s timeout: a dropped SYN fails it) sees no failure at all
// over the three switches, with filtering multiple and single (before the
// planned switch: 8 and 18-25 failed; with switches by the agents' timers,
// takers 20 ms late to never overlap: up to 15 SYNs in the gaps).
func TestPlannedStopLosesNothing(t *testing.T) {
	for _, filtering := range []string{"multiple", "single"} {
		t.Run(filtering, func(t *testing.T) {
			cfg := strings.Replace(lbConfig(50, "multicast"), "        protocol: tcp\n", "        protocol: tcp\n        filtering: "+filtering+"\n", 1)
			n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return cfg }})
			for _, nd := range n.Nodes {
				nd.Serve(80)
			}
			n.Start()
			n.WaitConverged(20 * time.Second)
			time.Sleep(time.Second)

			poll := startVIPPoller(n, 5*time.Millisecond, true)
			start := time.Now()
			// The node that serves (with single: the one with every bucket).
			target := n.Nodes[0]
			time.Sleep(500 * time.Millisecond)
			t.Logf("drain at %s", time.Now().Format("15:04:05.000"))
			if out, code := target.Ctl("drain"); code != 0 {
				t.Fatalf("drain: exit %d %s", code, out)
			}
			time.Sleep(1500 * time.Millisecond)
			t.Logf("resume at %s", time.Now().Format("15:04:05.000"))
			if out, code := target.Ctl("resume"); code != 0 {
				t.Fatalf("resume: exit %d %s", code, out)
			}
			time.Sleep(1500 * time.Millisecond)
			t.Logf("SIGTERM at %s", time.Now().Format("15:04:05.000"))
			if !target.Term(10 * time.Second) {
				t.Fatal("no exit on SIGTERM")
			}
			time.Sleep(1500 * time.Millisecond)
			res := poll.halt()

			// A reset means two nodes answered (an overlap). A SYN that
			// falls into a gap is dropped and retransmitted by the client
			// 1 s later, which this client's 1 s timeout counts as failed.
			v := tallyVIP(t, res, start)
			resets, dropped, by := len(v.resets), len(v.lost), v.by
			t.Logf("filtering %s: %d new connections over drain, resume and SIGTERM of %s: %d reset, %d with the first SYN lost; answered by %v",
				filtering, len(res), target.Name, resets, dropped, by)
			// Every node's kernel switches at the same instant of the same
			// clock here (on real hosts: within their NTP agreement).
			if resets+dropped > 0 {
				t.Errorf("%d resets and %d lost SYNs over 3 planned switches, want none", resets, dropped)
			}
		})
	}
}
