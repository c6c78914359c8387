//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// Options shape a campaign.
type Options struct {
	Seed     int64
	Duration time.Duration // faults are injected until this much time has passed
	Kinds    []Kind
	// MaxHold bounds how long one fault lasts (a SIGSTOP may otherwise
	// last 20 s, a storm 30 s).
	MaxHold time.Duration
	// Double is the chance that a second fault overlaps the first.
	Double float64
	// WholeWithin is the bound on convergence after the last fault heals:
	// a cluster not whole by then is a violation.
	WholeWithin time.Duration
	Dir         string // working directory (PostgreSQL data, logs)
	Log         func(format string, args ...any)
}

// WholeAim is how soon after a heal the cluster should be whole again
// (issue 8's aim). Slower heals are reported with what held them up; only
// Options.WholeWithin makes one a violation.
const WholeAim = 5 * time.Second

// Report is what a campaign found.
type Report struct {
	Seed       int64
	Began      time.Time // fault times are counted from here
	Faults     []string  // "+12.3s kill node4 for 2.1s", in order
	ByKind     map[Kind]int
	Skipped    int // faults that had nothing to act on (a postmaster kill while none ran)
	Violations []string

	NewConns, NewConnsOK int
	Streams, StreamsCut  int
	Writes, WritesAcked  int // through the VIP
	LocalAcked           int
	Longest              map[Kind]time.Duration // longest write outage during a fault of that kind
	LongestNLB           map[Kind]time.Duration // longest run of failed new connections
	LongestNLBAt         map[Kind]time.Time     // when that run began
	Converge             []time.Duration        // time to whole after each heal
	SlowHeals            []string               // heals past WholeAim, with what cleared last
	MaxRSS               map[string]int         // KiB, per node
}

// Run runs one campaign on a fresh cluster.
func Run(t testnet.TB, o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = t.Logf
	}
	c, err := newCluster(t, o.Dir)
	if err != nil {
		return nil, err
	}
	if err := c.setup(); err != nil {
		return nil, err
	}
	rep := &Report{Seed: o.Seed, ByKind: map[Kind]int{}, Longest: map[Kind]time.Duration{}, LongestNLB: map[Kind]time.Duration{}, LongestNLBAt: map[Kind]time.Time{}, MaxRSS: map[string]int{}}
	w := &workloads{}
	w.start(c)
	began := time.Now()
	rep.Began = began
	r := rand.New(rand.NewSource(o.Seed))
	var done []*fault
	rss := map[int][2]int{} // pid -> first, last
	sample := func() {
		for _, nd := range c.Nodes {
			pid := nd.PID()
			kb := rssKiB(pid)
			if kb == 0 {
				continue
			}
			rep.MaxRSS[nd.Name] = max(rep.MaxRSS[nd.Name], kb)
			v, ok := rss[pid]
			if !ok {
				v[0] = kb
			}
			v[1] = kb
			rss[pid] = v
		}
	}
	time.Sleep(2 * time.Second) // the workloads' baseline
	sample()
	for time.Since(began) < o.Duration {
		batch := []*fault{c.plan(r, o.Kinds[r.Intn(len(o.Kinds))], o.MaxHold)}
		if r.Float64() < o.Double {
			second := c.plan(r, o.Kinds[r.Intn(len(o.Kinds))], o.MaxHold)
			if !overlaps(batch[0], second) {
				batch = append(batch, second)
			}
		}
		hold := time.Duration(0)
		for _, f := range batch {
			if err := c.apply(f, r); errors.Is(err, errNotApplied) {
				o.Log("skipped +%s %s: %v", since(began, time.Now()), f, err)
				rep.Skipped++
				continue
			} else if err != nil {
				rep.Violations = append(rep.Violations, fmt.Sprintf("+%s applying %s: %v", since(began, time.Now()), f, err))
				continue
			}
			line := fmt.Sprintf("+%s %s", since(began, f.at), f)
			rep.Faults = append(rep.Faults, line)
			rep.ByKind[f.Kind]++
			o.Log("fault %s", line)
			hold = max(hold, f.Hold)
		}
		time.Sleep(hold)
		for _, f := range batch {
			if f.undo != nil {
				f.undo()
			}
			f.healed = time.Now()
			done = append(done, f)
		}
		d, problems, ok := c.waitWhole(o.WholeWithin)
		rep.Converge = append(rep.Converge, d)
		if ok && d > WholeAim {
			rep.SlowHeals = append(rep.SlowHeals, fmt.Sprintf("+%s %s after healing %s; last to clear: %s",
				since(began, time.Now()), d.Round(10*time.Millisecond), faultList(batch), strings.Join(problems[:min(4, len(problems))], "; ")))
		}
		if !ok {
			rep.Violations = append(rep.Violations, fmt.Sprintf("+%s not whole %s after healing %s: %s",
				since(began, time.Now()), o.WholeWithin, faultList(batch), strings.Join(problems[:min(6, len(problems))], "; ")))
			o.Log("not whole: %v", problems)
			// Later faults would only pile up on this one.
			break
		}
		o.Log("whole again %s after the heal", d.Round(10*time.Millisecond))
		sample()
	}
	time.Sleep(time.Second)
	w.halt()
	sample()
	check(c, w, done, rss, rep)
	return rep, nil
}

func since(t0, t time.Time) string { return fmt.Sprintf("%.1fs", t.Sub(t0).Seconds()) }

func faultList(fs []*fault) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.String())
	}
	return strings.Join(s, " + ")
}

// overlaps: two faults at once must not fight over one node (a kill
// during a storm of the same node says nothing new).
func overlaps(a, b *fault) bool {
	if a.Kind == b.Kind && (a.Kind == Partition || a.Kind == OneWay || a.Kind == Loss || a.Kind == Move || a.Kind == PGKill) {
		return true
	}
	for _, x := range a.Targets {
		if b.involves(x) {
			return true
		}
	}
	return len(b.Targets) == 0 && len(a.Targets) == 0
}

func rssKiB(pid int) int {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// String is the report as printed.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos campaign, seed %d: %d faults from %s\n", r.Seed, len(r.Faults), r.Began.Format("15:04:05.000"))
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	var kinds []string
	for _, k := range AllKinds {
		if r.ByKind[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ByKind[k]))
		}
	}
	fmt.Fprintf(&b, "faults by kind: %s\n", strings.Join(kinds, ", "))
	if r.Skipped > 0 {
		fmt.Fprintf(&b, "faults skipped (nothing to act on when their turn came): %d\n", r.Skipped)
	}
	pct := func(a, n int) float64 {
		if n == 0 {
			return 100
		}
		return 100 * float64(a) / float64(n)
	}
	fmt.Fprintf(&b, "NLB new connections: %d, %.2f%% answered; streams: %d, %d cut\n", r.NewConns, pct(r.NewConnsOK, r.NewConns), r.Streams, r.StreamsCut)
	fmt.Fprintf(&b, "PostgreSQL writes through the VIP: %d tried, %d acknowledged (%.2f%%); local writes acknowledged: %d\n",
		r.Writes, r.WritesAcked, pct(r.WritesAcked, r.Writes), r.LocalAcked)
	for _, k := range AllKinds {
		if r.ByKind[k] > 0 {
			at := ""
			if d := r.LongestNLB[k]; d > 0 {
				at = " from +" + since(r.Began, r.LongestNLBAt[k])
			}
			fmt.Fprintf(&b, "  %-9s longest write outage %6s, longest run of failed new connections %6s%s\n", k,
				r.Longest[k].Round(10*time.Millisecond), r.LongestNLB[k].Round(10*time.Millisecond), at)
		}
	}
	if len(r.Converge) > 0 {
		s := slices.Clone(r.Converge)
		slices.Sort(s)
		fmt.Fprintf(&b, "whole again after a heal: p50 %s, max %s\n", s[len(s)/2].Round(10*time.Millisecond), s[len(s)-1].Round(10*time.Millisecond))
	}
	if len(r.SlowHeals) > 0 {
		fmt.Fprintf(&b, "heals past the %s aim (%d of %d):\n", WholeAim, len(r.SlowHeals), len(r.Converge))
		for _, h := range r.SlowHeals {
			fmt.Fprintf(&b, "  - %s\n", h)
		}
	}
	var rs []string
	for n, kb := range r.MaxRSS {
		rs = append(rs, fmt.Sprintf("%s %d MiB", n, kb/1024))
	}
	slices.Sort(rs)
	fmt.Fprintf(&b, "max agent RSS: %s\n", strings.Join(rs, ", "))
	if len(r.Violations) == 0 {
		b.WriteString("violations: none\n")
	} else {
		fmt.Fprintf(&b, "VIOLATIONS (%d):\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  - %s\n", v)
		}
	}
	return b.String()
}
