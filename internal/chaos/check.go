//go:build linux

package chaos

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
	"github.com/clusterd/clusterd/internal/vip"
)

// splitWindow: two servers acknowledging writes within this span of each
// other, on both sides of one another (A, B, A), is a split brain: a
// genuine failover takes a lease (1 s) and the campaign never moves the
// group back within it.
const splitWindow = 2 * time.Second

// check audits the whole run and fills the report's figures.
func check(c *cluster, w *workloads, faults []*fault, rss map[int][2]int, rep *Report) {
	w.mu.Lock()
	defer w.mu.Unlock()
	bad := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}

	// Every acknowledged write is on the final primary.
	vip, local, err := w.rows()
	if err != nil {
		bad("reading the final primary: %v", err)
	} else {
		var lost []string
		for _, a := range w.acks {
			if a.via == "vip" && !vip[a.id] || a.via == "local" && !local[fmt.Sprintf("%s:%d", a.node, a.id)] {
				lost = append(lost, fmt.Sprintf("%s write %d acknowledged by %s at %s", a.via, a.id, a.node, a.at.Format("15:04:05.000")))
			}
		}
		if len(lost) > 0 {
			bad("%d acknowledged writes lost, first: %s", len(lost), strings.Join(lost[:min(5, len(lost))], "; "))
		}
	}
	for _, a := range w.acks {
		if a.via == "vip" {
			rep.WritesAcked++
		} else {
			rep.LocalAcked++
		}
	}
	// Through the VIP only: the local writers' tries on the standby fail
	// by design, and counting them (as before stop 20) made the rate
	// look about half what the client saw.
	rep.Writes = w.vipTries

	// No two servers acknowledged writes in overlapping time.
	acks := append([]ack(nil), w.acks...)
	sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
	last := map[string]ack{}
	for _, a := range acks {
		if prev, ok := last[a.node]; ok {
			for other, b := range last {
				if other != a.node && b.at.After(prev.at) && a.at.Sub(prev.at) < splitWindow {
					bad("split brain: %s acknowledged %s write %d at %s, %s acknowledged %s write %d at %s, then %s again (%s write %d at %s)",
						prev.node, prev.via, prev.id, prev.at.Format("15:04:05.000"), b.node, b.via, b.id, b.at.Format("15:04:05.000"),
						a.node, a.via, a.id, a.at.Format("15:04:05.000"))
				}
			}
		}
		last[a.node] = a
	}

	// New connections: none reset (answered by two nodes) outside the
	// window of a fault that stops a web server. A connection is in
	// flight for up to its timeout: one that began just before such a
	// fault can be reset by it (seen in a 1 h run: a SYN sent 3 ms before
	// a web server's kill -9, answered with RST by its kernel).
	during := func(t time.Time, slack time.Duration, kinds ...Kind) *fault {
		for _, f := range faults {
			for _, k := range kinds {
				if f.Kind == k && !t.Add(connTimeout).Before(f.at) && !t.After(f.healed.Add(slack)) {
					return f
				}
			}
		}
		return nil
	}
	rep.NewConns = len(w.conns)
	resets := 0
	var firstReset string
	for _, cn := range w.conns {
		if cn.err == nil {
			rep.NewConnsOK++
			continue
		}
		if strings.Contains(cn.err.Error(), "reset by peer") && during(cn.at, time.Second, WebKill, Kill, Storm, Term) == nil {
			resets++
			if firstReset == "" {
				firstReset = fmt.Sprintf("%s: %v (%s; faults then: %s)", cn.at.Format("15:04:05.000"), cn.err, bucketOf(cn.port), activeAt(faults, cn.at))
			}
		}
	}
	if resets > 0 {
		bad("%d new connections reset (answered by two nodes), first at %s", resets, firstReset)
	}

	// Streams: none cut unless a fault touched the node serving it.
	rep.Streams = len(w.streams)
	for _, s := range w.streams {
		if !s.cut {
			continue
		}
		rep.StreamsCut++
		involved := false
		for _, f := range faults {
			if !f.at.After(s.end) && !f.healed.Add(time.Second).Before(s.start) && (f.involvesName(s.node) || f.Kind == Loss || f.Kind == Partition || f.Kind == OneWay) {
				involved = true
			}
		}
		if !involved {
			bad("a stream served by %s from %s was cut at %s with no fault on %s: %v (faults then: %s)", s.node,
				s.start.Format("15:04:05.000"), s.end.Format("15:04:05.000"), s.node, s.err, activeAt(faults, s.end))
		}
	}

	// Figures per fault kind.
	for _, f := range faults {
		end := f.healed.Add(5 * time.Second)
		rep.Longest[f.Kind] = max(rep.Longest[f.Kind], longestGap(acks, f.at, end))
		if d, at := longestFailRun(w.conns, f.at, end); d > rep.LongestNLB[f.Kind] {
			rep.LongestNLB[f.Kind], rep.LongestNLBAt[f.Kind] = d, at
		}
	}

	for _, p := range c.panics() {
		bad("agent panicked: %s", p)
	}
	for pid, v := range rss {
		if v[1]-v[0] > 64*1024 {
			bad("agent pid %d grew from %d MiB to %d MiB", pid, v[0]/1024, v[1]/1024)
		}
	}
}

func (f *fault) involvesName(name string) bool {
	for _, n := range append(append([]*testnet.Node(nil), f.Targets...), f.Others...) {
		if n.Name == name {
			return true
		}
	}
	return false
}

func activeAt(faults []*fault, t time.Time) string {
	var s []string
	for _, f := range faults {
		if !t.Before(f.at) && !t.After(f.healed.Add(time.Second)) {
			s = append(s, f.String())
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " + ")
}

// longestGap is the longest time without an acknowledged VIP write that
// overlaps [from, to].
func longestGap(acks []ack, from, to time.Time) time.Duration {
	var longest time.Duration
	prev := time.Time{}
	for _, a := range acks {
		if a.via != "vip" {
			continue
		}
		if !prev.IsZero() && a.at.After(from) && prev.Before(to) {
			longest = max(longest, a.at.Sub(prev))
		}
		prev = a.at
	}
	return longest
}

// longestFailRun is the longest span from a failed new connection to the
// next answered one, starting in [from, to].
func longestFailRun(conns []conn, from, to time.Time) (longest time.Duration, at time.Time) {
	cs := append([]conn(nil), conns...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].at.Before(cs[j].at) })
	var failStart time.Time
	for _, cn := range cs {
		if cn.err != nil {
			if failStart.IsZero() && !cn.at.Before(from) && !cn.at.After(to) {
				failStart = cn.at
			}
			continue
		}
		if !failStart.IsZero() {
			if d := cn.at.Sub(failStart); d > longest {
				longest, at = d, failStart
			}
			failStart = time.Time{}
		}
	}
	return longest, at
}

// bucketOf names the NLB bucket of a new connection from the client's
// port: the agents' ownership trace (CLUSTERD_TRACE_OWNERSHIP) then shows
// which nodes held it and when.
func bucketOf(port int) string {
	if port == 0 {
		return "client port not known"
	}
	c := netip.AddrPortFrom(netip.MustParseAddr(testnet.ClientIP), uint16(port))
	return fmt.Sprintf("client port %d, bucket %d", port, vip.Bucket("none", c, vip.Seed(testnet.ClusterName), vip.TableSize))
}
