//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// errNotApplied: a fault that had nothing to act on when its turn came
// (the campaign skips it; it is no violation of the cluster's).
var errNotApplied = errors.New("fault not applied")

// Kind is a kind of fault.
type Kind string

// Fault kinds.
const (
	Kill      Kind = "kill"      // kill -9 of an agent; restarted at heal
	Stop      Kind = "stop"      // SIGSTOP of an agent for the hold, then SIGCONT
	Term      Kind = "term"      // SIGTERM of an agent (a clean stop); restarted at heal
	Storm     Kind = "storm"     // kill -9 and restart one agent every 1-3 s for the hold
	PGKill    Kind = "pgkill"    // kill -9 of the PostgreSQL postmaster on the group's owner
	WebKill   Kind = "webkill"   // the web server of a web node stops; started again at heal
	Cable     Kind = "cable"     // a node's private, public or both cables pulled
	Partition Kind = "partition" // a set of nodes cut off from the rest and the clients on both networks (a switch split)
	OneWay    Kind = "oneway"    // frames from one node set to another dropped, the other way flows
	Loss      Kind = "loss"      // 10-50 % of a node's frames dropped on both NICs
	Flap      Kind = "flap"      // a node's private cable flaps every 100-500 ms
	Move      Kind = "move"      // clusterctl move db
	Drain     Kind = "drain"     // clusterctl drain of a web node, resumed at heal
)

// AllKinds is every kind the campaign knows, in report order.
var AllKinds = []Kind{Kill, Stop, Term, Storm, PGKill, WebKill, Cable, Partition, OneWay, Loss, Flap, Move, Drain}

// ParseKinds reads a comma-separated list ("all" for every kind).
func ParseKinds(s string) ([]Kind, error) {
	if s == "" || s == "all" {
		return AllKinds, nil
	}
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(f))
		if !slices.Contains(AllKinds, k) {
			return nil, fmt.Errorf("unknown fault kind %q (known: %v)", k, AllKinds)
		}
		out = append(out, k)
	}
	return out, nil
}

// fault is one scheduled fault: what, on whom, for how long.
type fault struct {
	Kind    Kind
	Targets []*testnet.Node
	Others  []*testnet.Node // the other side of a partition
	Hold    time.Duration
	Detail  string // e.g. which cable, how much loss

	at, healed time.Time
	undo       func()
}

func names(ns []*testnet.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

func (f *fault) String() string {
	s := fmt.Sprintf("%s %s", f.Kind, names(f.Targets))
	if len(f.Others) > 0 {
		s += " | " + names(f.Others)
	}
	if f.Detail != "" {
		s += " (" + f.Detail + ")"
	}
	return s + fmt.Sprintf(" for %s", f.Hold.Round(10*time.Millisecond))
}

// involves says whether the fault touches node nd.
func (f *fault) involves(nd *testnet.Node) bool {
	return slices.Contains(f.Targets, nd) || slices.Contains(f.Others, nd)
}

// plan draws a fault of kind k from r. maxHold bounds holds.
func (c *cluster) plan(r *rand.Rand, k Kind, maxHold time.Duration) *fault {
	hold := func(lo, hi time.Duration) time.Duration {
		hi = min(hi, maxHold)
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int63n(int64(hi-lo)))
	}
	pick := func(from []*testnet.Node) *testnet.Node { return from[r.Intn(len(from))] }
	f := &fault{Kind: k, Hold: hold(time.Second, 8*time.Second)}
	switch k {
	case Kill, Term, Storm, Loss, Flap:
		f.Targets = []*testnet.Node{pick(c.Nodes)}
	case Stop:
		f.Targets = []*testnet.Node{pick(c.Nodes)}
		f.Hold = hold(200*time.Millisecond, 20*time.Second)
	case PGKill, Move:
		// Aimed at whoever owns the group when it happens.
	case WebKill, Drain:
		f.Targets = []*testnet.Node{pick(c.web)}
	case Cable:
		f.Targets = []*testnet.Node{pick(c.Nodes)}
		f.Detail = []string{"private", "public", "both"}[r.Intn(3)]
	case Partition, OneWay:
		perm := r.Perm(len(c.Nodes))
		k := 1 + r.Intn(2) // a minority of one or two
		for i, p := range perm {
			if i < k {
				f.Targets = append(f.Targets, c.Nodes[p])
			} else {
				f.Others = append(f.Others, c.Nodes[p])
			}
		}
	}
	switch k {
	case Loss:
		f.Detail = fmt.Sprintf("%d%%", 10+r.Intn(41))
	case Flap:
		f.Detail = fmt.Sprintf("every %dms", 100+r.Intn(401))
	case Storm:
		f.Hold = hold(5*time.Second, 30*time.Second)
	}
	return f
}

// apply starts the fault; its undo heals it.
func (c *cluster) apply(f *fault, r *rand.Rand) error {
	f.at = time.Now()
	switch f.Kind {
	case Kill:
		nd := f.Targets[0]
		nd.Kill()
		f.undo = func() { nd.Start() }
	case Term:
		nd := f.Targets[0]
		nd.Term(10 * time.Second)
		f.undo = func() { nd.Start() }
	case Stop:
		nd := f.Targets[0]
		nd.Pause()
		f.undo = nd.Resume
	case Storm:
		nd := f.Targets[0]
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		seed := r.Int63()
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewSource(seed))
			for {
				nd.Kill()
				nd.Start()
				select {
				case <-done:
					return
				case <-time.After(time.Second + time.Duration(rr.Int63n(int64(2*time.Second)))):
				}
			}
		}()
		f.undo = func() { close(done); wg.Wait() }
	case PGKill:
		owner := c.groupOwner()
		if owner == nil {
			return fmt.Errorf("no group owner to kill the postmaster of")
		}
		f.Targets = []*testnet.Node{owner}
		if err := testnet.SignalPostmaster(c.pgDataDir(owner), syscall.SIGKILL); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			// The owner's server is not running this moment (starting,
			// being promoted or rewound; or killed, its pid file left):
			// nothing to kill.
			return fmt.Errorf("%w: no postmaster running on %s", errNotApplied, owner.Name)
		} else if err != nil {
			return fmt.Errorf("killing the postmaster on %s: %w", owner.Name, err)
		}
		f.undo = func() {}
	case WebKill:
		nd := f.Targets[0]
		c.backends[nd].Stop()
		f.undo = func() { c.backends[nd] = nd.Serve(80) }
	case Cable:
		nd := f.Targets[0]
		nics := map[string][]string{"private": {testnet.Private}, "public": {testnet.Public}, "both": {testnet.Private, testnet.Public}}[f.Detail]
		for _, nic := range nics {
			nd.Cable(nic, false)
		}
		f.undo = func() {
			for _, nic := range nics {
				nd.Cable(nic, true)
			}
		}
	case Partition:
		// A switch split: the minority loses the clients too. A filter
		// that cuts nodes from each other while clients still reach
		// both sides is not this fault: the NLB tier is not
		// quorum-gated (design.md, "Partitions"), and both sides would
		// answer the VIP.
		c.SplitSwitch(f.Targets, f.Others)
		f.undo = c.Heal
	case OneWay:
		c.OneWay(f.Targets, f.Others)
		f.undo = c.HealOneWay
	case Loss:
		var pct int
		fmt.Sscanf(f.Detail, "%d%%", &pct)
		c.Loss(pct, "", f.Targets...)
		f.undo = c.HealLoss
	case Flap:
		nd := f.Targets[0]
		var ms int
		fmt.Sscanf(f.Detail, "every %dms", &ms)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			up := false
			for {
				nd.Cable(testnet.Private, up)
				up = !up
				select {
				case <-done:
					nd.Cable(testnet.Private, true)
					return
				case <-time.After(time.Duration(ms) * time.Millisecond):
				}
			}
		}()
		f.undo = func() { close(done); wg.Wait() }
	case Move:
		via := c.Nodes[r.Intn(len(c.Nodes))]
		if !via.Running() {
			via = c.web[0]
		}
		f.Targets = []*testnet.Node{via}
		out, code := via.Ctl("move", "db", "--timeout", "20s")
		f.Detail = fmt.Sprintf("exit %d: %s", code, lastLine(out))
		f.undo = func() {}
	case Drain:
		nd := f.Targets[0]
		out, code := nd.Ctl("drain")
		f.Detail = fmt.Sprintf("exit %d: %s", code, lastLine(out))
		f.undo = func() { nd.Ctl("resume") }
	default:
		return fmt.Errorf("fault kind %s is not implemented", f.Kind)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
