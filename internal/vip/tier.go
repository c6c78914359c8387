package vip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/clusterd/clusterd/internal/vocab"
)

// Membership is what the tier needs from membership.
type Membership interface {
	Members() []heartbeat.Member
	SetExt(key, value string)
	SetState(heartbeat.State)
	SetHealthy(bool)
	State() heartbeat.State
}

// Options configure a Tier.
type Options struct {
	Cluster  string
	Node     string
	Priority int
	VIPs     []config.VIPConfig
	StateDir string
	Members  Membership
	// Settle: how long a node waits before taking a bucket whose previous
	// owner is still alive (it must have dropped it first); ~2 heartbeat
	// intervals.
	Settle time.Duration
	// LiveTTL: after the agent stops refreshing (kill -9), the node takes
	// no new flows after this long. Must be shorter than failure detection
	// so that a survivor never takes a bucket the zombie still accepts.
	LiveTTL time.Duration
	// Tick is how often membership is re-read.
	Tick time.Duration
	// ViewTimeout is the heartbeat timeout: a node back from a pause or a
	// cut NIC waits at least this long, so that every live peer is heard
	// again, before it takes new flows.
	ViewTimeout time.Duration
	// BackupBind is heartbeat.backup_bind: when it is on a VIP's NIC and no
	// peer is heard on it, that NIC is cut off and the node withdraws from
	// the VIP, as NLB does when its cluster-NIC heartbeats stop.
	BackupBind string
	Logger     *slog.Logger
	// Event records an event (type, node, detail).
	Event func(typ vocab.EventType, node, detail string)
}

// Metadata keys this tier publishes (vocab.Ext*). ExtSwitch is the unix
// milliseconds at which the change this node announces next (drain,
// resume, leave) takes effect on every node: the planned switch that hands
// its buckets over without a gap or an overlap.
const (
	extRules  = vocab.ExtRules
	extHealth = vocab.ExtHealth
	extInputs = vocab.ExtInputs
	extConns  = vocab.ExtConns
	extSwitch = vocab.ExtSwitch
)

// Tier is the NLB tier of one node.
type Tier struct {
	o     Options
	log   *slog.Logger
	plans []VIPPlan
	dp    datapath
	// newDP and linkUp reach the kernel: tests replace them.
	newDP  func(log *slog.Logger, stateDir string) (datapath, error)
	linkUp func(ifname string) (bool, string)
	// healthMu: one publishHealth at a time.
	healthMu sync.Mutex
	// opMu: one operator change at a time (Drain, Resume, Reload, a drain
	// that ends), held across what it writes to node.state_dir and
	// announces, so that the record and the node agree. Only those wait
	// on it.
	opMu sync.Mutex

	// The convergence state, from tables to defaults below, belongs to
	// convergeLoop's goroutine (converge and what it calls): no lock, so
	// that its datapath I/O and callbacks hold up nobody. Others see it
	// through view.
	tables [][]Table // [vip][rule]
	// moves: per [vip][rule], what changed owner at its last table change.
	moves      [][]ruleMoves
	sig        string // signature of the inputs tables were built from
	generation uint64
	applied    Ownership
	pending    *Ownership
	pendingAt  time.Time
	// pendingFrom: the live previous owners of the pending buckets; they
	// are taken only once each has let go (lettingGo), each owner's on its
	// own (pendingPrev, pendingDefPrev: who had each waiting bucket and
	// default; pendingReady: the earliest each owner's may be taken).
	pendingFrom    map[string]bool
	pendingPrev    map[[2]int]map[uint32]string
	pendingDefPrev map[int]string
	pendingReady   map[string]time.Time
	othersSaid     bool // takeReady said it took without every member's signature (once per hand-off)
	// Planned switches (inForce): held is each member's inputs as last in
	// force (a member that announced an instant still ahead counts as it
	// was until then); ahead is the planned steps staged in the datapath,
	// in time order; switchAt is when the first is due (its instant, a
	// taker's takeLag later when switching by timer).
	held     map[string]heldInputs
	ahead    []stagedStep
	switchAt time.Time
	// dropAt: by timer, the planned switch's first step, when a node that
	// also takes buckets lets go of those it gives (staged first); it
	// takes them takeLag later, at switchAt. Zero when there is no such
	// step.
	dropAt time.Time
	// timerSwitchSaid: the warning that planned switches go by timer (no
	// StageAt) was logged.
	timerSwitchSaid bool
	pubSig          string // the signature this node publishes (Converged compares with it)
	failOpen        map[int]bool
	lastMembers     map[string]heartbeat.State
	lastCut         map[string]bool // members left out (heartbeat.Member.Cut) at the last change
	defaults        map[int]string

	backupOn []bool // heartbeat.backup_bind is on the VIP's NIC (fixed at start)

	// mu guards the state below, shared by the health, link, refresh and
	// operator paths; it is held only to read or write these fields, never
	// across I/O or a callback.
	mu       sync.Mutex
	checkers []*checker
	linkOK   []bool // the VIP's NIC reaches the LAN
	drain    drainState
	// drainProblem: the drain file could not be read at start (the node
	// stays draining until an operator acts).
	drainProblem string
	// resyncFrom: back from a pause or a cut NIC, not taking new flows
	// since then (refreshLoop); zero when not resyncing.
	resyncFrom time.Time
	resyncBack time.Time // when it was back (the cut NIC reached the LAN again)
	linkCut    bool      // a VIP NIC is cut off (watchLinks)
	announced  time.Time // the instant of this node's last planned change (announceSwitch)
	// drainRules: rules drained by ports; written under opMu and mu, read
	// under either.
	drainRules map[string]bool

	// view is what status readers see of the convergence (Status, Owner,
	// Generation, Converged, Problems), replaced whole at the end of every
	// converge (publishView); readers never wait for a convergence.
	view atomic.Pointer[statusView]

	// wake has convergeLoop run now (Wake): a member failed, or this
	// node was left out, and the tables must follow at once.
	wake chan struct{}

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Wake has the tier converge now rather than at its next tick: membership
// calls it when a member fails or this node is left out, so that a node
// failed while alive stops taking new flows before the others take its
// buckets (they wait failedGrace for that), and those take them as soon
// as they may.
func (t *Tier) Wake() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// statusView is a copy of the state status readers need; nothing in it
// changes after publishView made it.
type statusView struct {
	tables      [][]Table // replaced whole by converge, never changed in place
	moves       [][]ruleMoves
	generation  uint64
	defaults    map[int]string
	pubSig      string
	sig         string
	pending     bool
	pendingAt   time.Time
	pendingFrom map[string]bool // replaced whole, never changed in place
}

// publishView makes the status readers' copy anew (convergeLoop's
// goroutine).
func (t *Tier) publishView() {
	v := &statusView{tables: t.tables, generation: t.generation, defaults: t.defaults, pubSig: t.pubSig, sig: t.sig,
		pending: t.pending != nil, pendingAt: t.pendingAt, pendingFrom: t.pendingFrom}
	if t.moves != nil {
		v.moves = make([][]ruleMoves, len(t.moves))
		for i := range t.moves {
			v.moves[i] = append([]ruleMoves(nil), t.moves[i]...)
		}
	}
	t.view.Store(v)
}

// snapshot is the status readers' copy (empty before the first change).
func (t *Tier) snapshot() *statusView {
	if v := t.view.Load(); v != nil {
		return v
	}
	return &statusView{}
}

type drainState struct {
	Draining bool      `json:"draining"`
	Drained  bool      `json:"drained"`
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline,omitempty"`
}

// New prepares the tier; nothing touches the kernel before Start.
func New(o Options) (*Tier, error) {
	t := &Tier{o: o, log: o.Logger, failOpen: map[int]bool{}, drainRules: map[string]bool{}, newDP: newDatapath, linkUp: linkUp, wake: make(chan struct{}, 1)}
	seed := Seed(o.Cluster)
	for i, v := range o.VIPs {
		pfx, err := netip.ParsePrefix(v.VIP)
		if err != nil {
			return nil, err
		}
		mac, err := ClusterMAC(v.Mode, pfx.Addr())
		if err != nil {
			return nil, err
		}
		p := VIPPlan{Index: i, Addr: pfx, Interface: v.Interface, Mode: v.Mode, MAC: mac, Seed: seed}
		for _, r := range v.Rules {
			pr, _ := config.ParsePorts(r.Ports)
			rp := RulePlan{Lo: pr.Lo, Hi: pr.Hi, Affinity: r.Affinity, Filtering: r.Filtering}
			switch r.Protocol {
			case "tcp":
				rp.Protos = []uint8{6}
			case "udp":
				rp.Protos = []uint8{17}
			default:
				rp.Protos = []uint8{6, 17}
			}
			p.Rules = append(p.Rules, rp)
		}
		t.plans = append(t.plans, p)
		if v.Health != nil {
			t.checkers = append(t.checkers, newChecker(*v.Health))
		} else {
			t.checkers = append(t.checkers, nil)
		}
	}
	return t, nil
}

// Start installs the datapath and starts converging.
func (t *Tier) Start(ctx context.Context) error {
	if len(t.plans) == 0 {
		return nil
	}
	dp, err := t.newDP(t.log, t.o.StateDir)
	if err != nil {
		return err
	}
	dp = tracing(dp, t.log)
	if err := dp.Setup(t.plans, t.o.LiveTTL); err != nil {
		dp.Close()
		return fmt.Errorf("setting up the VIP datapath: %w", err)
	}
	t.dp = dp
	if err := dp.Refresh(); err != nil {
		return fmt.Errorf("arming the liveness element: %w", err)
	}
	t.backupOn = make([]bool, len(t.plans))
	for i, p := range t.plans {
		t.backupOn[i] = t.o.BackupBind != "" && onInterface(p.Interface, t.o.BackupBind)
	}
	t.loadDrain()
	t.publishRules()
	t.publishHealth()
	ctx, t.cancel = context.WithCancel(ctx)
	t.wg.Add(3)
	go func() { defer t.wg.Done(); t.refreshLoop(ctx) }()
	go func() { defer t.wg.Done(); t.convergeLoop(ctx) }()
	go func() { defer t.wg.Done(); t.healthLoop(ctx) }()
	for i, c := range t.checkers {
		if c != nil {
			t.wg.Add(1)
			go func() { defer t.wg.Done(); t.checkLoop(ctx, i, c) }()
		}
	}
	return nil
}

// Shutdown is the graceful stop: no new flows at once, established
// connections get up to grace (fewer if they finish), then the VIP and the
// rules go. Peers take the buckets at the instant this node announces.
func (t *Tier) Shutdown(grace time.Duration) {
	if t.dp == nil {
		return
	}
	t.log.Info("stopping new flows; established connections get node.shutdown_drain", slog.Duration("shutdown_drain", grace))
	t.afterPlanned()
	// Make before break: the others take this node's buckets at the
	// announced instant, and until then it goes on taking their new
	// flows (its converge loop lets go at that instant); only then does
	// it stop new flows altogether.
	at := t.announceSwitch()
	t.o.Members.SetState(heartbeat.StateDraining)
	time.Sleep(time.Until(at) + 2*t.o.Tick)
	// The loops stop first: a refresh after StopNew would re-arm the
	// liveness element (and a converge re-apply), so that new flows went
	// on for up to LiveTTL (TestTierLifecycle, flaky under load).
	if t.cancel != nil {
		t.cancel()
	}
	t.wg.Wait()
	if err := t.dp.StopNew(); err != nil {
		t.log.Warn("stopping new flows", slog.Any("error", err))
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		n, err := t.dp.Connections()
		if err != nil || n == 0 {
			break
		}
		t.o.Members.SetExt(extConns, strconv.Itoa(n))
		time.Sleep(100 * time.Millisecond)
	}
	t.Close()
}

// Close removes the datapath at once (idempotent).
func (t *Tier) Close() error {
	var err error
	t.closeOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
		}
		t.wg.Wait()
		if t.dp != nil {
			err = t.dp.Close()
		}
	})
	return err
}

// refreshLoop keeps the kernel's liveness element alive while this agent
// runs. If the loop itself did not run for longer than the element lives
// (SIGSTOP, a VM freeze, a swap storm), peers may have failed this node and
// taken its buckets while it was away: it then stays fail-closed (takes no
// new flows) until its view is current again (see resynced), rather than
// answer with the bucket map it had before the pause. A VIP NIC that
// reaches the LAN again after a cut starts the same wait (watchLinks).
func (t *Tier) refreshLoop(ctx context.Context) {
	tk := time.NewTicker(t.o.LiveTTL / 5)
	defer tk.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		now := time.Now()
		if gap := now.Sub(last); gap > t.o.LiveTTL {
			if t.startResync(now) {
				t.log.Warn("this agent did not run for longer than the liveness window: taking no new flows until its view of the cluster is current",
					slog.Duration("paused", gap.Round(time.Millisecond)))
			}
		}
		last = now
		t.mu.Lock()
		from, back := t.resyncFrom, t.resyncBack
		t.mu.Unlock()
		if !from.IsZero() {
			if !t.resynced(from, back, now) {
				continue
			}
			t.log.Info("view of the cluster is current again: taking new flows", slog.Duration("after", now.Sub(from).Round(time.Millisecond)))
			t.endResync()
		}
		if err := t.dp.Refresh(); err != nil {
			t.log.Error("refreshing the liveness element: new flows stop soon", slog.Any("error", err))
		}
	}
}

// startResync stops new flows at once and until resynced; it reports
// whether a resync was not already under way. The node also announces
// itself unhealthy for every VIP until then (publishHealth), so that
// the others keep its buckets: in the 1-hour chaos run of stop 25 a node
// back from a cable pull, whose peers gave its share back at once, took
// no new flows in it for 2.9 s (it waited out lostGrace for a peer killed
// just after the heal) — a third, then half, of all new connections
// unanswered.
func (t *Tier) startResync(now time.Time) bool {
	t.mu.Lock()
	fresh := t.resyncFrom.IsZero()
	if fresh {
		t.resyncFrom, t.resyncBack = now, now
	}
	t.mu.Unlock()
	if err := t.dp.StopNew(); err != nil {
		t.log.Warn("stopping new flows", slog.Any("error", err))
	}
	t.publishHealth()
	return fresh
}

// endResync: the view is current again; the node announces its health
// as it is, and the others hand its share back the usual way (a bucket
// moves once its previous owner has let go).
func (t *Tier) endResync() {
	t.mu.Lock()
	t.resyncFrom, t.resyncBack = time.Time{}, time.Time{}
	t.mu.Unlock()
	t.publishHealth()
}

// lostGrace: how long a node back from a cut waits to hear again the
// peers it lost during the cut before it takes them for dead. A peer is
// heard again within a second (ARP entries that failed during the cut
// are resolved anew); only if they really died meanwhile does the node
// serve alone, this much later.
const lostGrace = 3 * time.Second

// resynced says whether a node that stopped taking new flows at from (a
// pause, a cut VIP NIC) and was back at back may take them again: its VIP
// NICs reach the LAN; a heartbeat timeout has passed since it was back;
// every live peer's metadata has arrived fresh since then (what it held
// before is stale); every peer it lost around the cut is heard again (or
// lostGrace has passed); everyone computed the same bucket map as this
// node (so those who took its buckets have dropped them); and no hand-off
// of its own is pending.
func (t *Tier) resynced(from, back, now time.Time) bool {
	if now.Sub(back) < max(t.o.Settle, t.o.ViewTimeout) {
		return false
	}
	members := t.o.Members.Members()
	for _, m := range members {
		if m.Self {
			continue
		}
		if !m.State.Down() && !m.MetaAt.After(back) {
			return false
		}
		if m.State.Down() && !m.Since.Before(from.Add(-t.o.ViewTimeout)) && now.Sub(back) < lostGrace {
			return false
		}
	}
	t.mu.Lock()
	cut := t.linkCut
	t.mu.Unlock()
	return !t.snapshot().pending && !cut && t.Converged(members)
}

func (t *Tier) convergeLoop(ctx context.Context) {
	tm := time.NewTimer(t.o.Tick)
	defer tm.Stop()
	for {
		t.converge(time.Now())
		// Every Tick, and exactly at a planned switch: all nodes then
		// change within the timer's precision, not within a Tick.
		wait := t.o.Tick
		if at := t.nextSwitch(); !at.IsZero() {
			wait = min(wait, max(time.Until(at), 0))
		}
		tm.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-tm.C:
		case <-t.wake:
			if !tm.Stop() {
				select {
				case <-tm.C:
				default:
				}
			}
		}
	}
}

// memberRules parses a member's published weights and handling priorities.
func memberRules(ext map[string]string) [][][2]int {
	var out [][][2]int
	for _, v := range strings.Split(ext[extRules], ";") {
		var rules [][2]int
		for _, r := range strings.Split(v, ",") {
			w, hp, _ := strings.Cut(r, "/")
			wi, err1 := strconv.Atoi(w)
			hi, err2 := strconv.Atoi(hp)
			if err1 != nil || err2 != nil {
				rules = append(rules, [2]int{0, 99})
				continue
			}
			rules = append(rules, [2]int{wi, hi})
		}
		out = append(out, rules)
	}
	return out
}

// servesVIP reports whether a member announces rules for VIP index vip.
func servesVIP(ext map[string]string, vip int) bool {
	r := ext[extRules]
	return r != "" && vip < strings.Count(r, ";")+1
}

func memberHealthy(ext map[string]string, vip int) bool {
	h := ext[extHealth]
	return vip >= len(h) || h[vip] == '1'
}

// ruleInput is what one rule's table is made of.
type ruleInput struct {
	cands []Candidate
	best  string // filtering single: the eligible node with the lowest handling_priority
}

// convergence is what the bucket tables are a function of. Its sig is
// equal on every node that sees the same members, weights and health.
type convergence struct {
	rules    [][]ruleInput // [vip][rule]
	defaults map[int]string
	failOpen map[int]bool
	sig      string
}

// inputs reads the members' state into the convergence inputs. It is
// cheap, so it runs every tick; the tables are built only when sig
// changes.
func (t *Tier) inputs(members []heartbeat.Member) convergence {
	c := convergence{defaults: map[int]string{}, failOpen: map[int]bool{}}
	var active []heartbeat.Member
	for _, m := range members {
		// A cut member (it and another live member cannot hear each
		// other: heartbeat.Member.Cut) takes no new flows; every node
		// leaves out the same one, this node too when it is the one.
		if m.State == heartbeat.StateActive && !m.Cut {
			active = append(active, m)
		}
	}
	sort.Slice(active, func(i, j int) bool { return active[i].Priority < active[j].Priority })
	published := make([][][][2]int, len(active))
	for i, m := range active {
		published[i] = memberRules(m.Ext)
	}
	var sig strings.Builder
	for vi, p := range t.plans {
		var eligible, members []int // indexes into active
		for i, m := range active {
			// A member that does not serve this VIP (a database node in
			// the same cluster) takes no part: no buckets, never the
			// default host.
			if !servesVIP(m.Ext, vi) {
				continue
			}
			members = append(members, i)
			if memberHealthy(m.Ext, vi) {
				eligible = append(eligible, i)
			}
		}
		if len(eligible) == 0 && len(members) > 0 {
			c.failOpen[vi] = true
			eligible = members
		}
		if len(eligible) > 0 {
			c.defaults[vi] = active[eligible[0]].Name
		}
		rules := make([]ruleInput, len(p.Rules))
		for ri := range p.Rules {
			bestHP := 1 << 30
			for _, i := range eligible {
				w, hp := 0, 99
				if mr := published[i]; vi < len(mr) && ri < len(mr[vi]) {
					w, hp = mr[vi][ri][0], mr[vi][ri][1]
				}
				rules[ri].cands = append(rules[ri].cands, Candidate{Name: active[i].Name, Weight: w})
				if w > 0 && hp < bestHP {
					bestHP, rules[ri].best = hp, active[i].Name
				}
				fmt.Fprintf(&sig, "%d/%d/%s/%d/%d;", vi, ri, active[i].Name, w, hp)
			}
		}
		c.rules = append(c.rules, rules)
		fmt.Fprintf(&sig, "default=%s;", c.defaults[vi])
	}
	h := sha256.Sum256([]byte(sig.String()))
	c.sig = hex.EncodeToString(h[:6])
	return c
}

// build makes every rule's table from the inputs: the same inputs give
// the same tables on every node.
func (t *Tier) build(c convergence) [][]Table {
	tables := make([][]Table, len(t.plans))
	for vi, p := range t.plans {
		for ri, r := range p.Rules {
			in := c.rules[vi][ri]
			switch r.Filtering {
			case "single":
				tables[vi] = append(tables[vi], Single(in.best, TableSize))
			case "disabled":
				tables[vi] = append(tables[vi], Single("", TableSize))
			default:
				tables[vi] = append(tables[vi], Assign(in.cands, TableSize))
			}
		}
	}
	return tables
}

// failedGrace: how long after a member is failed its buckets are taken.
// Were it alive and hearing the others (a one-way fault that nobody hears
// it through), it stops taking new flows when it reads that it was
// failed; taking its buckets before that would answer a few new flows
// twice (seen in CI under load: one reset). It reads it from the
// heartbeat sent to it at once, leaves itself out on receipt and wakes its
// converge (Wake): a few milliseconds, twice that as margin. A dead or hung
// member's kernel stopped long before (LiveTTL), so for it this only
// delays a takeover by as much.
const failedGrace = 10 * time.Millisecond

// announceLimit: an announced instant further ahead than this is not a
// planned switch (a clock far off); see switchAhead.
func (t *Tier) announceLimit() time.Duration { return 2 * switchAhead(t.o.Settle) }

// handOffInput is what a hand-off is decided from.
type handOffInput struct {
	node                   string
	tables, prevTables     [][]Table // new and current tables (prevTables nil: the first)
	defaults, prevDefaults map[int]string
	applied                Ownership // what this node accepts now
	states                 map[string]heartbeat.State
	contested              map[string]bool // failed, but a member still heard it
	justFailed             map[string]bool // failed too recently to have read it, were it alive
	letGo                  map[string]bool // at a planned instant: owners that switch now too
}

// handOffResult: want is what this node owns in the new tables; now what
// it may take at once; the rest waits for its live previous owners
// (from), each bucket's in prevOf and each default host's in defPrev.
type handOffResult struct {
	want, now Ownership
	from      map[string]bool
	prevOf    map[[2]int]map[uint32]string
	defPrev   map[int]string
}

// handOff decides what this node takes now when the tables change: never
// a bucket (or the default host) that a live previous owner may still
// accept new flows in. What it had and keeps, what a failed owner had,
// and in the first tables everything are taken at once; what nobody had
// in the current tables waits for every serving member (see free); a contested owner's (failed although
// a member still heard it: alive, cut off one way), a just-failed owner's
// (it may be alive and hear the others, and stops only once it reads that
// it was failed) and a live owner's wait until it has let go, unless it
// switches at this planned instant too.
func handOff(in handOffInput) handOffResult {
	r := handOffResult{
		want:    Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}},
		now:     Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}},
		from:    map[string]bool{},
		prevOf:  map[[2]int]map[uint32]string{},
		defPrev: map[int]string{},
	}
	gone := func(owner string) bool {
		return !alive(in.states, owner) && !in.contested[owner] && !in.justFailed[owner]
	}
	// free: a bucket (or default host) nobody had in the current tables
	// is taken at once only in the first tables. Later, "nobody" means
	// the view they came from had every serving member out — around the
	// heal of a one-way fault a node's view can leave out, for a moment,
	// every serving member, itself included, while another member, in
	// its own view, serves them all — so it waits for every member that
	// serves the VIPs to compute the same tables (takeReady), as for a
	// live owner (the chaos campaign: two resets at such a heal).
	free := func(prev string) bool {
		if prev == nobody {
			return in.prevTables == nil || in.letGo[nobody]
		}
		return gone(prev) || in.letGo[prev]
	}
	for vi := range in.tables {
		r.want.Default[vi] = in.defaults[vi] == in.node
		prevDef := in.prevDefaults[vi]
		r.now.Default[vi] = r.want.Default[vi] && (in.applied.Default[vi] || prevDef == in.node || free(prevDef))
		if r.want.Default[vi] && !r.now.Default[vi] {
			r.from[prevDef] = true
			r.defPrev[vi] = prevDef
		}
		for ri, tb := range in.tables[vi] {
			key := [2]int{vi, ri}
			mine := tb.Buckets(in.node)
			r.want.Owned[key] = mine
			had := map[uint32]bool{}
			for _, b := range in.applied.Owned[key] {
				had[b] = true
			}
			for _, b := range mine {
				prev := ""
				if in.prevTables != nil {
					prev = in.prevTables[vi][ri].Owner(int(b))
				}
				if had[b] || free(prev) {
					r.now.Owned[key] = append(r.now.Owned[key], b)
					continue
				}
				r.from[prev] = true
				if r.prevOf[key] == nil {
					r.prevOf[key] = map[uint32]string{}
				}
				r.prevOf[key][b] = prev
			}
		}
	}
	return r
}

// nobody is the previous owner of a bucket no member had in the current
// tables; takeReady takes it once every member that serves the VIPs
// computes the same tables (lettingGo finds no member of that name).
const nobody = ""

// stagedStep is a planned switch staged in the datapath: from at on, the
// tables of sig (own: what this node then owns).
type stagedStep struct {
	at       time.Time
	sig      string
	tables   [][]Table
	defaults map[int]string
	own      Ownership
	timed    bool // the kernel switches at the instant by itself (StageAt)
}

// planStep is a planned change's inputs from its instant on.
type planStep struct {
	at time.Time
	in convergence
}

// plan turns the views ahead into the inputs of each step, leaving out
// the steps that change no table (the same signature as the one before).
func (t *Tier) plan(ahead []aheadView, sig string) []planStep {
	var steps []planStep
	for _, a := range ahead {
		in := t.inputs(a.members)
		if in.sig == sig {
			continue
		}
		steps = append(steps, planStep{a.at, in})
		sig = in.sig
	}
	return steps
}

func (t *Tier) converge(now time.Time) {
	start := time.Now()
	members := t.o.Members.Members()
	defer t.publishView()
	states := map[string]heartbeat.State{}
	cut := map[string]bool{}
	contested := map[string]bool{} // failed, but a member still heard it
	justFailed := map[string]bool{}
	for _, m := range members {
		states[m.Name] = m.State
		if m.Cut {
			cut[m.Name] = true
		}
		if m.Contested {
			contested[m.Name] = true
		}
		if m.State == heartbeat.StateFailed && now.Before(m.Since.Add(failedGrace)) {
			justFailed[m.Name] = true
		}
	}
	t.takeReady(members, now)
	cur, ahead, held := inForce(members, t.held, now, t.announceLimit())
	t.held = held
	in := t.inputs(cur)
	steps := t.plan(ahead, in.sig)
	final := in.sig // what this node publishes: the tables after every planned step
	if len(steps) > 0 {
		final = steps[len(steps)-1].in.sig
	}
	// A planned step whose instant has come: the tables in force are the
	// ones it staged.
	due := -1
	if in.sig != t.sig {
		for i, st := range t.ahead {
			if st.sig == in.sig {
				due = i
			}
		}
	}
	planned := false
	switch {
	case due >= 0:
		if !t.dropAt.IsZero() && !now.Before(t.dropAt) {
			// By timer, first step: let go of what this node gives.
			t.dropAt = time.Time{}
			if err := t.dp.Commit(); err != nil {
				t.log.Warn("letting go at the planned switch", slog.Any("error", err))
			} else {
				t.applied = kept(t.applied, t.ahead[due].own)
				// What is applied no longer matches the old tables: if the
				// change is called off before the second step, the next
				// converge must rebuild rather than see "nothing changed".
				t.sig = ""
			}
		}
		if due == 0 && now.Before(t.switchAt) {
			return // a taker switches takeLag after the instant
		}
		planned = true
	case in.sig == t.sig:
		t.lastMembers = states
		t.stageAhead(members, steps, final)
		return
	}
	var tables [][]Table
	var staged *Ownership
	if planned {
		st := t.ahead[due]
		tables, staged = st.tables, &st.own // built when the switch was staged
	} else {
		t.passStaged(now)
		tables = t.build(in)
	}
	failOpen, defaults := in.failOpen, in.defaults
	cause := describeChange(t.lastMembers, states)
	if c := describeCut(t.lastCut, cut); c != "" && t.lastMembers != nil {
		if cause == noStateChange {
			cause = c
		} else {
			cause += ", " + c
		}
	}
	t.lastMembers, t.lastCut = states, cut
	for vi := range t.plans {
		if failOpen[vi] != t.failOpen[vi] {
			if failOpen[vi] {
				t.o.Event(vocab.NodeUnhealthy, t.o.Node, fmt.Sprintf("no node passes the health check of %s: all active nodes serve it (fail open)", t.plans[vi].Addr))
			} else {
				t.o.Event(vocab.NodeHealthy, t.o.Node, fmt.Sprintf("a node passes the health check of %s again: fail-open ends", t.plans[vi].Addr))
			}
		}
	}
	t.failOpen = failOpen
	letGo := map[string]bool{} // at a planned switch: previous owners that switch now too
	if planned {
		// Those that publish what this node does heard the same planned
		// changes and switch at the same instants.
		for _, m := range members {
			if !m.Self && lettingGo(members, map[string]bool{m.Name: true}, final) == "" {
				letGo[m.Name] = true
			}
		}
		// Nobody's buckets too: every node that holds one gives it at
		// this instant, the kernel by its own clock.
		letGo[nobody] = true
	}
	h := handOff(handOffInput{node: t.o.Node, tables: tables, defaults: defaults, prevTables: t.tables, prevDefaults: t.defaults,
		applied: t.applied, states: states, contested: contested, justFailed: justFailed, letGo: letGo})
	want, now2, from, prevOf, defPrev := h.want, h.now, h.from, h.prevOf, h.defPrev
	var err error
	if staged != nil && sameOwnership(*staged, now2) {
		// Prepared ahead: the kernel switched at the instant (or every
		// node flips now, by timer); later steps stay staged.
		err = t.dp.Commit()
		if err == nil {
			t.ahead = t.ahead[due+1:]
		}
	} else {
		err = t.dp.Apply(now2)
		t.ahead = nil // Apply calls off whatever was staged
	}
	t.switchAt, t.dropAt = time.Time{}, time.Time{}
	if len(t.ahead) > 0 {
		t.switchAt = t.ahead[0].at
	}
	if err != nil {
		t.log.Error("applying bucket ownership", slog.Any("error", err))
		return
	}
	t.applied = now2
	t.clearPending()
	if len(from) > 0 {
		// Buckets of a live previous owner come after it has let go: at
		// least Settle, and not before it computed the same tables. A
		// cut owner that this node hears is let go of by agreement: it
		// drops its buckets in the step that publishes the tables
		// without it, so seeing them is enough (no Settle: its buckets
		// would be nobody's meanwhile). An owner that announced a
		// planned instant keeps its buckets until then: not before it.
		t.pending, t.pendingAt, t.pendingFrom = &want, now.Add(t.o.Settle), from
		t.pendingPrev, t.pendingDefPrev, t.pendingReady = prevOf, defPrev, map[string]time.Time{}
		for owner := range from {
			t.pendingReady[owner] = t.pendingAt
		}
		for _, m := range members {
			if !from[m.Name] {
				continue
			}
			if m.Cut && !m.Unheard {
				t.pendingReady[m.Name] = now
			}
			if justFailed[m.Name] {
				t.pendingReady[m.Name] = m.Since.Add(failedGrace)
			}
			if at := announced(m); at.After(t.pendingReady[m.Name]) && at.Before(now.Add(t.announceLimit())) {
				t.pendingReady[m.Name] = at
			}
		}
	}
	t.recordMoves(tables, now)
	t.tables, t.sig, t.defaults = tables, in.sig, defaults
	t.generation++
	t.stageAhead(members, steps, final)
	counts, taken := want.buckets(), now2.buckets()
	owns := fmt.Sprintf("this node owns %d buckets", counts)
	if taken != counts {
		// The log then tells when the kernel serves what (takeReady
		// takes the rest as each previous owner lets go).
		owns = fmt.Sprintf("this node owns %d buckets (%d taken now, the rest once their previous owners let go)", counts, taken)
	}
	t.o.Event(vocab.Converged, t.o.Node, fmt.Sprintf("generation %d: %s; %s; computed in %s",
		t.generation, cause, owns, time.Since(start).Round(time.Microsecond)))
}

// passStaged: before a change that was not planned, the timed steps whose
// instants have passed are what the kernel does now, so the hand-off
// starts from them (a failure at the instant of a drain must not give
// back what the kernel took at the instant, nor take again what it gave).
func (t *Tier) passStaged(now time.Time) {
	passed := 0
	for passed < len(t.ahead) && t.ahead[passed].timed && !t.ahead[passed].at.After(now) {
		passed++
	}
	if passed == 0 {
		return
	}
	if err := t.dp.Commit(); err != nil {
		t.log.Warn("committing the planned switch the kernel made", slog.Any("error", err))
		return
	}
	st := t.ahead[passed-1]
	t.applied, t.tables, t.defaults = st.own, st.tables, st.defaults
	t.ahead = t.ahead[passed:]
}

// stageAhead has the datapath switch at each planned step's instant (what
// is already staged stays; a step that changed is staged anew; steps no
// longer planned are called off) and publishes final, the signature of
// the tables after the last step.
func (t *Tier) stageAhead(members []heartbeat.Member, steps []planStep, final string) {
	defer func() {
		if t.pubSig != final {
			t.publishSig(final)
		}
	}()
	// The kernel holds two steps ahead (three buffers); a third is
	// staged once the first has passed.
	if len(steps) > 2 {
		steps = steps[:2]
	}
	same := 0 // steps already staged as they are
	for same < len(steps) && same < len(t.ahead) && steps[same].at.Equal(t.ahead[same].at) && steps[same].in.sig == t.ahead[same].sig {
		same++
	}
	if same == len(steps) && same == len(t.ahead) {
		return
	}
	if len(steps) == 0 {
		// Called off (the change went back before its instant): the
		// kernel must not switch at it.
		if err := t.dp.Apply(t.applied); err != nil {
			t.log.Warn("calling off the planned switch", slog.Any("error", err))
		}
		t.ahead, t.switchAt, t.dropAt = nil, time.Time{}, time.Time{}
		return
	}
	if same < len(t.ahead) || !t.dropAt.IsZero() {
		same = 0 // a staged step changed: stage from the first on
	}
	t.ahead = t.ahead[:same]
	// The kernel switches at each instant by its own clock: every node
	// gives and takes at once, no gap and no overlap. Not while a member
	// of the previous protocol is in the cluster: it gives by its timer,
	// a few ms late, and a taker exactly on time would overlap it.
	timed := timedSwitches(members)
	var err error = errPreviousProtocol
	for _, ps := range steps[same:] {
		if !timed {
			break
		}
		st := t.stepOf(ps)
		if err = t.dp.StageAt(st.at, st.own); err != nil {
			break
		}
		st.timed = true
		t.ahead = append(t.ahead, st)
	}
	if err == nil {
		t.switchAt, t.dropAt = t.ahead[0].at, time.Time{}
		return
	}
	if !t.timerSwitchSaid && err != errPreviousProtocol {
		t.timerSwitchSaid = true
		t.log.Warn("the kernel cannot switch buckets at an instant (nft meta time, Linux 5.4): planned switches go by the agent's timer, with a short gap", slog.Any("error", err))
	}
	// By timer, one step at a time: every node lets go of what it gives
	// at the instant and takes what it gets takeLag later (the timers of
	// two nodes are never exactly together, and a short gap, a SYN
	// retransmitted, is better than an overlap, a SYN answered by two
	// nodes: a reset).
	st := t.stepOf(steps[0])
	stage := []Ownership{st.own}
	t.ahead, t.switchAt, t.dropAt = nil, st.at, time.Time{}
	if takes(t.applied, st.own) {
		t.switchAt = st.at.Add(takeLag)
		if k := kept(t.applied, st.own); !sameOwnership(k, t.applied) {
			t.dropAt = st.at
			stage = []Ownership{k, st.own}
		}
	}
	if err := t.dp.Stage(stage...); err != nil {
		t.log.Warn("staging the planned switch (it is applied at the instant instead)", slog.Any("error", err))
		t.switchAt, t.dropAt = time.Time{}, time.Time{}
		return
	}
	t.ahead = []stagedStep{st}
}

// stepOf builds a planned step's tables and what this node then owns.
func (t *Tier) stepOf(ps planStep) stagedStep {
	tables := t.build(ps.in)
	return stagedStep{at: ps.at, sig: ps.in.sig, tables: tables, defaults: ps.in.defaults,
		own: ownershipOf(tables, ps.in.defaults, t.o.Node)}
}

// handoffSlow: a hand-off waiting longer than this is shown as a problem
// (one normally completes within a heartbeat interval after Settle).
const handoffSlow = 5 * time.Second

// lettingGo names a live previous owner that still holds buckets this node
// is to take, or "" when all have let go. An active owner has let go once
// it publishes the same convergence signature as this node: the same
// inputs give the same tables, so it dropped them (it drops in the same
// step that publishes the signature). Waiting a fixed time instead is not
// enough: the Maglev table moves a few buckets between the nodes that
// stay when one comes back, and a node that hears the returning one later
// than its peers (heartbeats arrive a little apart, metadata later still)
// keeps answering them meanwhile, so both would answer a new flow. A
// failed, left, joining, draining or drained owner takes no new flows of
// its own and has let go.
//
// A cut owner that this node does not hear (a one-way fault) cannot show
// its tables here; it cuts itself by the same agreement at about the same
// moment (both read the same lists), so it has let go once the Settle that
// converge waits before taking from it has passed.
func lettingGo(members []heartbeat.Member, from map[string]bool, sig string) string {
	for _, m := range members {
		if !from[m.Name] || m.Self || m.State != heartbeat.StateActive || m.Cut && m.Unheard {
			continue
		}
		if m.Ext[extInputs] != sig {
			return m.Name
		}
	}
	return ""
}

// othersWait bounds how long a hand-off whose previous owners have let go
// waits for the other members that serve the VIPs to compute the same
// tables (takeReady): they normally do within a heartbeat interval of
// the owners.
const othersWait = time.Second

// servingVIPs names the members that take part in the VIPs (they publish
// their rules; a database node in the same cluster does not).
func servingVIPs(members []heartbeat.Member) map[string]bool {
	out := map[string]bool{}
	for _, m := range members {
		if m.Ext[extRules] != "" {
			out[m.Name] = true
		}
	}
	return out
}

// errPreviousProtocol: a member switches by timer (it predates switches
// timed by the kernel), so every node does.
var errPreviousProtocol = errors.New("a member of the previous protocol switches by timer")

// timedSwitches says whether every live member switches by the kernel's
// clock (heartbeat.TimedSwitchProto on).
func timedSwitches(members []heartbeat.Member) bool {
	for _, m := range members {
		if !m.State.Down() && m.Proto < heartbeat.TimedSwitchProto {
			return false
		}
	}
	return true
}

// takeLag: how long after a planned switch's instant a node that takes
// buckets switches (see converge).
const takeLag = 20 * time.Millisecond

// kept is what of applied next keeps: applied without what it gives.
func kept(applied, next Ownership) Ownership {
	o := Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}}
	for vi, d := range applied.Default {
		o.Default[vi] = d && next.Default[vi]
	}
	for k, bs := range applied.Owned {
		in := map[uint32]bool{}
		for _, b := range next.Owned[k] {
			in[b] = true
		}
		for _, b := range bs {
			if in[b] {
				o.Owned[k] = append(o.Owned[k], b)
			}
		}
	}
	return o
}

// takes reports whether next holds a bucket (or the default host) that
// applied does not.
func takes(applied, next Ownership) bool {
	for vi, d := range next.Default {
		if d && !applied.Default[vi] {
			return true
		}
	}
	for k, bs := range next.Owned {
		had := map[uint32]bool{}
		for _, b := range applied.Owned[k] {
			had[b] = true
		}
		for _, b := range bs {
			if !had[b] {
				return true
			}
		}
	}
	return false
}

// ruleMoves is what changed owner at a rule's last table change.
type ruleMoves struct {
	moves []api.BucketMove
	at    time.Time
}

// recordMoves keeps, per rule, the buckets that change owner from the
// current tables to next (a rule whose table is unchanged keeps its
// record). The first tables are not a move.
func (t *Tier) recordMoves(next [][]Table, now time.Time) {
	if t.moves == nil {
		t.moves = make([][]ruleMoves, len(next))
		for vi := range next {
			t.moves[vi] = make([]ruleMoves, len(next[vi]))
		}
	}
	if t.tables == nil {
		return
	}
	for vi := range next {
		for ri := range next[vi] {
			if m := Moves(t.tables[vi][ri], next[vi][ri]); len(m) > 0 {
				t.moves[vi][ri] = ruleMoves{m, now}
			}
		}
	}
}

// ownershipOf is what name owns in these tables.
func ownershipOf(tables [][]Table, defaults map[int]string, name string) Ownership {
	o := Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}}
	for vi := range tables {
		o.Default[vi] = defaults[vi] == name
		for ri, tb := range tables[vi] {
			o.Owned[[2]int{vi, ri}] = tb.Buckets(name)
		}
	}
	return o
}

// sameOwnership compares two ownerships built from the same tables
// (bucket lists in ascending order).
func sameOwnership(a, b Ownership) bool {
	if len(a.Default) != len(b.Default) || len(a.Owned) != len(b.Owned) {
		return false
	}
	for k, v := range a.Default {
		if b.Default[k] != v {
			return false
		}
	}
	for k, v := range a.Owned {
		// Both come from Table.Buckets order (ascending): no sort on the
		// switch's critical path.
		if !slices.Equal(v, b.Owned[k]) {
			return false
		}
	}
	return true
}

// switchAhead: how far ahead a planned switch is announced, so that every
// node has the announcement (a heartbeat carries it) before the instant:
// three Settle periods (330 ms lan, 135 ms fast).
func switchAhead(settle time.Duration) time.Duration { return 3 * settle }

// announceSwitch publishes the instant at which this node's next change
// takes effect everywhere and returns it; call it before the change, and
// afterPlanned before anything of the change.
func (t *Tier) announceSwitch() time.Time {
	at := time.Now().Add(switchAhead(t.o.Settle)).Truncate(time.Millisecond)
	t.mu.Lock()
	t.announced = at
	t.mu.Unlock()
	t.o.Members.SetExt(extSwitch, strconv.FormatInt(at.UnixMilli(), 10))
	return at
}

// afterPlanned waits until this node's previous planned change is a
// Settle past its instant. A second change before the first one's instant
// (a resume, then a drain 283 ms later: the chaos campaign's 2 resets)
// made every node call off the switch its kernel was to make by itself at
// that instant, each as soon as it heard of the second — and a node that
// heard 47 ms before the instant, its converge loop slow under load,
// called it off after its kernel had switched. Taken one after the other,
// no planned switch is ever called off for a change of the same node; the
// operator's second command waits up to 3 × Settle + Settle (440 ms with
// lan) for the first.
func (t *Tier) afterPlanned() {
	for wait := t.untilPlanned(); wait > 0; wait = t.untilPlanned() {
		time.Sleep(wait)
	}
}

// untilPlanned is how long until this node's previous planned change is
// a Settle past its instant (≤ 0: it is).
func (t *Tier) untilPlanned() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Until(t.announced.Add(t.o.Settle))
}

// lockOp takes opMu for an operator's change once afterPlanned, without
// holding it while it waits (the drain watch takes it too).
func (t *Tier) lockOp() {
	for {
		t.afterPlanned()
		t.opMu.Lock()
		if t.untilPlanned() <= 0 {
			return
		}
		t.opMu.Unlock()
	}
}

func (t *Tier) publishSig(sig string) {
	t.pubSig = sig
	t.o.Members.SetExt(extInputs, sig)
}

// nextSwitch is when convergeLoop must run next for a planned switch
// (zero: none pending).
func (t *Tier) nextSwitch() time.Time {
	if !t.dropAt.IsZero() {
		return t.dropAt
	}
	at := t.switchAt
	// A failed owner's buckets, due failedGrace after its failure: taken
	// then, not up to a tick later.
	now := time.Now()
	for owner, ready := range t.pendingReady {
		if ready.After(now) && (at.IsZero() || ready.Before(at)) && t.lastMembers[owner] == heartbeat.StateFailed {
			at = ready
		}
	}
	return at
}

func alive(states map[string]heartbeat.State, name string) bool {
	s, ok := states[name]
	return ok && !s.Down()
}

// noStateChange: the cause of a change in which no member's state changed.
const noStateChange = "weights, health or rules changed"

// describeChange says what changed between two views of the members.
func describeChange(old, cur map[string]heartbeat.State) string {
	if old == nil {
		return "start"
	}
	var parts []string
	for n, s := range cur {
		if o, ok := old[n]; !ok {
			parts = append(parts, n+" appeared ("+s.String()+")")
		} else if o != s {
			parts = append(parts, fmt.Sprintf("%s %s→%s", n, o, s))
		}
	}
	for n := range old {
		if _, ok := cur[n]; !ok {
			parts = append(parts, n+" forgotten")
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return noStateChange
	}
	return strings.Join(parts, ", ")
}

// clearPending: no hand-off waits.
func (t *Tier) clearPending() {
	t.pending, t.pendingFrom, t.pendingPrev, t.pendingDefPrev, t.pendingReady = nil, nil, nil, nil, nil
	t.othersSaid = false
}

// takeReady takes the pending buckets of each previous owner that has let
// go (one slow owner does not hold up the buckets of the others).
//
// Not while a planned switch is staged: applying would replace what the
// kernel is to switch to at the instant (the node would keep, after it,
// buckets it gives). The waiting buckets are decided anew at the instant.
func (t *Tier) takeReady(members []heartbeat.Member, now time.Time) {
	if t.pending == nil || len(t.ahead) > 0 {
		return
	}
	ready := map[string]bool{}
	for owner := range t.pendingFrom {
		if now.After(t.pendingReady[owner]) && lettingGo(members, map[string]bool{owner: true}, t.sig) == "" {
			ready[owner] = true
		}
	}
	if len(ready) == 0 {
		return
	}
	if other := lettingGo(members, servingVIPs(members), t.sig); other != "" {
		// The previous owner named by this node's tables is not the only
		// node that may hold the bucket: around a heal every node passes
		// through views of its own (a member left out for 50 ms in some
		// views, heard again in others), and the owner in this node's
		// previous tables may never have taken a bucket that a third node
		// still holds. A node that publishes this node's signature has
		// dropped what these tables do not give it; one that does not may
		// hold anything. So wait for every member that serves the VIPs,
		// up to othersWait: one whose view stays apart for longer must not
		// leave the buckets unserved for good.
		if now.Before(t.pendingAt.Add(othersWait)) {
			return
		}
		if !t.othersSaid {
			t.othersSaid = true
			t.log.Warn("taking buckets while a member has not computed the same bucket tables", slog.String("member", other),
				slog.Duration("waited", now.Sub(t.pendingAt).Round(time.Millisecond)))
		}
	}
	next := Ownership{Owned: map[[2]int][]uint32{}, Default: map[int]bool{}}
	for vi, d := range t.pending.Default {
		prev, waiting := t.pendingDefPrev[vi]
		next.Default[vi] = d && (!waiting || ready[prev])
	}
	for key, bs := range t.pending.Owned {
		for _, b := range bs { // ascending, as Table.Buckets gives them
			if prev, waiting := t.pendingPrev[key][b]; !waiting || ready[prev] {
				next.Owned[key] = append(next.Owned[key], b)
			}
		}
	}
	if err := t.dp.Apply(next); err != nil {
		t.log.Error("applying bucket ownership", slog.Any("error", err))
		return
	}
	t.applied = next
	from := slices.Sorted(maps.Keys(ready))
	if len(from) > 0 && from[0] == nobody {
		from[0] = "(nobody in the previous tables)"
	}
	t.log.Info("previous owners let go: buckets taken", slog.Any("from", from), slog.Int("owned", next.buckets()))
	rest := map[string]bool{}
	for owner := range t.pendingFrom {
		if !ready[owner] {
			rest[owner] = true
		}
	}
	if len(rest) == 0 {
		t.clearPending()
		return
	}
	// What is taken is no longer waiting.
	for key, m := range t.pendingPrev {
		for b, prev := range m {
			if ready[prev] {
				delete(m, b)
			}
		}
		if len(m) == 0 {
			delete(t.pendingPrev, key)
		}
	}
	for vi, prev := range t.pendingDefPrev {
		if ready[prev] {
			delete(t.pendingDefPrev, vi)
		}
	}
	t.pendingFrom = rest // replaced whole: the status view holds the old map
}

// describeCut says which members were left out or taken back in.
func describeCut(old, cur map[string]bool) string {
	var parts []string
	for n := range cur {
		if !old[n] {
			parts = append(parts, n+" left out (it and a live member cannot hear each other)")
		}
	}
	for n := range old {
		if !cur[n] {
			parts = append(parts, n+" taken back in")
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// publishRules announces this node's weights and handling priorities
// (drained rules count as weight 0).
func (t *Tier) publishRules() {
	t.o.Members.SetExt(extRules, rulesExt(t.o.VIPs, func(vi int, r config.RuleConfig) int {
		if t.drainRules[ruleKey(vi, r.Ports)] {
			return 0
		}
		return *r.Weight
	}))
}

func rulesExt(vips []config.VIPConfig, weight func(vi int, r config.RuleConfig) int) string {
	var vs []string
	for vi, v := range vips {
		var rs []string
		for _, r := range v.Rules {
			rs = append(rs, fmt.Sprintf("%d/%d", weight(vi, r), r.HandlingPriority))
		}
		vs = append(vs, strings.Join(rs, ","))
	}
	return strings.Join(vs, ";")
}

// WorstExt is the largest metadata the tier can announce under vips, for
// the metadata budget check.
func WorstExt(vips []config.VIPConfig) map[string]string {
	if len(vips) == 0 {
		return map[string]string{}
	}
	return map[string]string{
		extRules:  rulesExt(vips, func(int, config.RuleConfig) int { return 100 }),
		extHealth: strings.Repeat("1", len(vips)),
		extInputs: strings.Repeat("f", 12), // convergence.sig: 6 bytes in hex
		extConns:  strconv.Itoa(math.MaxInt32),
	}
}

func ruleKey(vi int, ports string) string { return fmt.Sprintf("%d/%s", vi, ports) }

func (t *Tier) publishHealth() {
	// One publisher at a time, so that an older verdict never overwrites
	// a newer one; the verdicts are read under mu, published outside it.
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	var b strings.Builder
	all := true
	t.mu.Lock()
	resyncing := !t.resyncFrom.IsZero() // takes no new flows: serves nothing (startResync)
	for i, c := range t.checkers {
		if !resyncing && (c == nil || c.healthy) && (t.linkOK == nil || t.linkOK[i]) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
			all = false
		}
	}
	t.mu.Unlock()
	t.o.Members.SetExt(extHealth, b.String())
	t.o.Members.SetHealthy(all)
}

// Cadence of the watches in healthLoop: a link check is two netlink
// dumps (a cut VIP NIC is noticed within 100 ms) and a drain check a
// conntrack dump.
const (
	linkEvery  = 100 * time.Millisecond
	drainEvery = 500 * time.Millisecond
)

// healthLoop runs the link and drain watches; each VIP's health check runs
// in a goroutine of its own (checkLoop), so that a slow check (up to its
// timeout) delays neither another check nor a watch.
func (t *Tier) healthLoop(ctx context.Context) {
	var nextDrain time.Time
	tk := time.NewTicker(linkEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.watchLinks()
			if now.After(nextDrain) {
				nextDrain = now.Add(drainEvery)
				t.watchDrain(now)
			}
		}
	}
}

// checkLoop runs VIP i's health check every interval (start to start) and
// publishes the verdict when it changes.
func (t *Tier) checkLoop(ctx context.Context, i int, c *checker) {
	tm := time.NewTimer(0)
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tm.C:
		}
		start := time.Now()
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		changed := c.observe(err)
		healthy := c.healthy
		t.mu.Unlock()
		if changed {
			if healthy {
				t.o.Event(vocab.NodeHealthy, t.o.Node, fmt.Sprintf("health check of %s passes %d times in a row", t.plans[i].Addr, c.cfg.Rise))
			} else {
				t.o.Event(vocab.NodeUnhealthy, t.o.Node, fmt.Sprintf("health check of %s failed %d times in a row: %v", t.plans[i].Addr, c.cfg.Fall, err))
			}
			t.publishHealth()
		}
		tm.Reset(max(c.cfg.Interval.D()-time.Since(start), 0))
	}
}

// watchLinks withdraws the node from a VIP whose NIC has lost its link, or
// whose backup heartbeat path (on that NIC) hears no peer: clients could
// not reach the buckets it owns.
func (t *Tier) watchLinks() {
	var self heartbeat.Member
	peers := 0
	members := t.o.Members.Members()
	for _, m := range members {
		if m.Self {
			self = m
		} else if !m.State.Down() {
			peers++
		}
	}
	changed, resync := false, false
	for i, p := range t.plans {
		ok, why := t.linkUp(p.Interface)
		if ok && peers > 0 && t.backupOn[i] {
			if up, has := self.Paths["backup"]; has && !up {
				ok, why = false, "no peer heard on the backup heartbeat path of "+p.Interface
			}
		}
		t.mu.Lock()
		if t.linkOK == nil {
			t.linkOK = make([]bool, len(t.plans))
			for i := range t.linkOK {
				t.linkOK[i] = true
			}
		}
		was := t.linkOK[i]
		t.linkOK[i] = ok
		t.mu.Unlock()
		if ok != was {
			changed = true
			if !ok && len(members) > 1 {
				// Cut off: from now until it is back and hears the others
				// again, this node's map may give it buckets they took
				// meanwhile. No new flows from the moment of the cut
				// (the link watch runs every 100 ms; waiting for the link
				// to come back would leave that long to answer stale).
				resync = true
			}
			if ok {
				t.o.Event(vocab.NodeHealthy, t.o.Node, fmt.Sprintf("%s reaches the LAN again: takes %s flows once its view of the cluster is current", p.Interface, p.Addr))
			} else {
				t.o.Event(vocab.NodeUnhealthy, t.o.Node, fmt.Sprintf("%s: withdrawing from %s", why, p.Addr))
			}
		}
	}
	cut := false
	t.mu.Lock()
	for _, ok := range t.linkOK {
		cut = cut || !ok
	}
	if t.linkCut && !cut && !t.resyncFrom.IsZero() {
		t.resyncBack = time.Now()
	}
	t.linkCut = cut
	t.mu.Unlock()
	if resync {
		t.startResync(time.Now())
	}
	if changed {
		t.publishHealth()
	}
}

// --- drain ---------------------------------------------------------------

func (t *Tier) drainFile() string { return filepath.Join(t.o.StateDir, "drain.json") }

// loadDrain restores a drain from node.state_dir. A drain file that exists
// but cannot be read keeps the node out of service: the operator drained
// it for a reason, and a damaged record of that is no reason to take
// flows.
func (t *Tier) loadDrain() {
	b, err := os.ReadFile(t.drainFile())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var d drainState
	if err == nil {
		if err = json.Unmarshal(b, &d); err == nil && d.Since.IsZero() && d.Draining {
			err = errors.New("no drain time")
		}
	}
	if err != nil {
		problem := fmt.Sprintf("the drain state %s cannot be read (%v): the node stays draining; check it, then run clusterctl resume (or drain) to write it anew", t.drainFile(), err)
		t.mu.Lock()
		t.drain, t.drainProblem = drainState{Draining: true, Since: time.Now()}, problem
		t.mu.Unlock()
		t.log.Error("keeping the node draining", slog.String("problem", problem))
		t.o.Members.SetState(heartbeat.StateDraining)
		return
	}
	if !d.Draining {
		return
	}
	t.mu.Lock()
	t.drain = d
	t.mu.Unlock()
	st := heartbeat.StateDraining
	if d.Drained {
		st = heartbeat.StateDrained
	}
	t.o.Members.SetState(st)
	t.log.Info("restored drain state from node.state_dir; run clusterctl resume to take flows again", slog.String("state", st.String()))
}

// saveDrain records d durably (removes the record when not draining).
func (t *Tier) saveDrain(d drainState) error {
	if !d.Draining {
		if err := statefile.Remove(t.drainFile()); err != nil {
			return fmt.Errorf("recording the resume in node.state_dir: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := statefile.Write(t.drainFile(), b); err != nil {
		return fmt.Errorf("recording the drain in node.state_dir (it would be lost at a restart): %w", err)
	}
	return nil
}

// Problems lists what keeps this node's VIP tier from doing its job.
func (t *Tier) Problems() []string { return t.problems(time.Now()) }

func (t *Tier) problems(now time.Time) []string {
	members := t.o.Members.Members()
	v := t.snapshot()
	var out []string
	if v.pending && now.Sub(v.pendingAt) > handoffSlow {
		if who := lettingGo(members, v.pendingFrom, v.sig); who != "" {
			out = append(out, fmt.Sprintf("waiting since %s for %s to let go of buckets this node is to take: it has not computed the same bucket tables (see its status)",
				v.pendingAt.Add(-t.o.Settle).Format(time.RFC3339), who))
		}
	}
	t.mu.Lock()
	drainProblem, resyncing := t.drainProblem, !t.resyncFrom.IsZero()
	t.mu.Unlock()
	if drainProblem != "" {
		out = append(out, drainProblem)
	}
	if resyncing {
		out = append(out, "taking no new flows: this agent was paused or its VIP NIC was cut off, and it waits until its view of the cluster is current")
	}
	return out
}

// ErrNotLB is returned for drain operations on a node without VIPs.
var ErrNotLB = errors.New("this node serves no load-balanced VIP")

// Drain stops new flows on this node (or on one rule's ports) at once;
// established connections go on. The node is drained when none are left
// or when timeout passes (0: no timeout); remaining connections are not
// cut.
func (t *Tier) Drain(rule string, timeout time.Duration) error {
	if len(t.plans) == 0 {
		return ErrNotLB
	}
	t.lockOp()
	defer t.opMu.Unlock()
	if rule != "" {
		found := false
		t.mu.Lock()
		for vi, v := range t.o.VIPs {
			for _, r := range v.Rules {
				if r.Ports == rule {
					t.drainRules[ruleKey(vi, rule)] = true
					found = true
				}
			}
		}
		t.mu.Unlock()
		if !found {
			return fmt.Errorf("no rule with ports %q on this node", rule)
		}
		t.announceSwitch()
		t.publishRules()
		t.o.Event(vocab.NodeDraining, t.o.Node, "rule "+rule+" takes no new flows")
		return nil
	}
	now := time.Now()
	d := drainState{Draining: true, Since: now}
	if timeout > 0 {
		d.Deadline = now.Add(timeout)
	}
	// Recorded first: a drain that would not survive a restart is refused.
	if err := t.saveDrain(d); err != nil {
		return err
	}
	t.mu.Lock()
	t.drain, t.drainProblem = d, ""
	t.mu.Unlock()
	// Planned: this node keeps its buckets until the announced instant,
	// when the others take them (no gap, no overlap).
	t.announceSwitch()
	t.o.Members.SetState(heartbeat.StateDraining)
	t.o.Event(vocab.NodeDraining, t.o.Node, "takes no new flows; established connections go on")
	return nil
}

// Resume undoes Drain.
func (t *Tier) Resume() error {
	if len(t.plans) == 0 {
		return ErrNotLB
	}
	t.lockOp()
	defer t.opMu.Unlock()
	t.mu.Lock()
	draining := t.drain.Draining
	t.mu.Unlock()
	if draining {
		if err := t.saveDrain(drainState{}); err != nil {
			return err
		}
	}
	t.mu.Lock()
	wasRules := len(t.drainRules) > 0
	t.drainRules = map[string]bool{}
	t.mu.Unlock()
	t.announceSwitch()
	t.publishRules()
	if !draining {
		if wasRules {
			t.o.Event(vocab.NodeResumed, t.o.Node, "all rules take new flows again")
		}
		return nil
	}
	t.mu.Lock()
	t.drain, t.drainProblem = drainState{}, ""
	t.mu.Unlock()
	t.o.Members.SetExt(extConns, "")
	t.o.Members.SetState(heartbeat.StateActive)
	t.o.Event(vocab.NodeResumed, t.o.Node, "takes new flows again")
	return nil
}

// watchDrain moves draining to drained at zero connections or at the
// deadline, and publishes the remaining count.
func (t *Tier) watchDrain(now time.Time) {
	t.mu.Lock()
	d := t.drain
	t.mu.Unlock()
	if !d.Draining || d.Drained {
		return
	}
	n, err := t.dp.Connections()
	if err != nil {
		t.log.Warn("counting connections", slog.Any("error", err))
		return
	}
	t.opMu.Lock()
	defer t.opMu.Unlock()
	t.mu.Lock()
	same := t.drain == d
	t.mu.Unlock()
	if !same {
		// Resumed (or drained anew) while counting: this count is of a
		// drain that no longer is. Marking it drained now would take the
		// resumed node out again (seen in the chaos campaign: a resume
		// during the conntrack read left the node drained for good).
		return
	}
	t.o.Members.SetExt(extConns, strconv.Itoa(n))
	timedOut := !d.Deadline.IsZero() && now.After(d.Deadline)
	// A drain is at least one tick old before it can end, so peers see
	// "draining" before "drained".
	if (n == 0 || timedOut) && now.Sub(d.Since) > 200*time.Millisecond {
		d.Drained = true
		t.mu.Lock()
		t.drain = d
		t.mu.Unlock()
		if err := t.saveDrain(d); err != nil {
			// Still drained now; after a restart it would come back
			// draining, which is safe.
			t.log.Warn("the drained state is not recorded", slog.Any("error", err))
		}
		t.o.Members.SetState(heartbeat.StateDrained)
		detail := "no connections left"
		if n > 0 {
			detail = fmt.Sprintf("drain timeout passed with %d connections left (not cut)", n)
		}
		t.o.Event(vocab.NodeDrained, t.o.Node, detail)
	}
}

// --- status and owner ----------------------------------------------------

// Status fills the VIP part of status and each member's bucket count.
func (t *Tier) Status() (vips []api.VIP, buckets map[string]int) {
	buckets = map[string]int{}
	var ctr map[int]Counters
	if t.dp != nil {
		ctr, _ = t.dp.Counters()
	}
	sv := t.snapshot()
	for vi, p := range t.plans {
		v := api.VIP{Address: p.Addr.String(), Mode: p.Mode, MAC: p.MAC.String(), Generation: sv.generation,
			PacketsAccepted: ctr[vi].Accepted, PacketsDropped: ctr[vi].Dropped, Rules: []api.Rule{}}
		for ri := range t.o.VIPs[vi].Rules {
			r := &t.o.VIPs[vi].Rules[ri] // fields Reload does not change only
			owners := map[string]int{}
			if sv.tables != nil {
				owners = sv.tables[vi][ri].Counts()
			}
			for n, c := range owners {
				buckets[n] += c
			}
			ar := api.Rule{Ports: r.Ports, Protocol: r.Protocol, BucketsTotal: TableSize, Owners: owners}
			if vi < len(sv.moves) && ri < len(sv.moves[vi]) && sv.moves[vi][ri].moves != nil {
				m := sv.moves[vi][ri]
				at := m.at
				ar.LastMoves, ar.MovedAt = append([]api.BucketMove(nil), m.moves...), &at
			}
			v.Rules = append(v.Rules, ar)
		}
		vips = append(vips, v)
	}
	return vips, buckets
}

// Converged reports whether every active member that serves VIPs computed
// the same tables (a database node in the same cluster computes none).
func (t *Tier) Converged(members []heartbeat.Member) bool {
	if len(t.plans) == 0 {
		return true
	}
	mine := t.snapshot().pubSig
	for _, m := range members {
		if !m.Self && !servesVIP(m.Ext, 0) {
			continue // takes no part in the VIPs
		}
		if m.Unheard {
			// Its tables cannot be seen here first hand (a one-way
			// fault); the members that hear it compare them.
			continue
		}
		if !m.State.Down() && m.State != heartbeat.StateJoining && m.Ext[extInputs] != mine {
			return false
		}
	}
	return true
}

// Owner says which node serves a flow and in which bucket.
func (t *Tier) Owner(vip netip.AddrPort, client netip.AddrPort, proto string) (api.OwnerResponse, error) {
	sv := t.snapshot()
	pn := uint8(6)
	if proto == "udp" {
		pn = 17
	}
	for vi, p := range t.plans {
		if p.Addr.Addr() != vip.Addr() {
			continue
		}
		for ri, r := range p.Rules {
			if vip.Port() < r.Lo || vip.Port() > r.Hi || !slices.Contains(r.Protos, pn) {
				continue
			}
			cfg := &t.o.VIPs[vi].Rules[ri] // fields Reload does not change only
			resp := api.OwnerResponse{Rule: cfg.Ports + "/" + cfg.Protocol, Filtering: r.Filtering, Affinity: r.Affinity}
			if r.Filtering == "disabled" {
				resp.Note = "the rule is disabled: this traffic is dropped on every node"
				return resp, nil
			}
			resp.Bucket = Bucket(r.Affinity, client, p.Seed, TableSize)
			if sv.tables != nil {
				resp.Node = sv.tables[vi][ri].Owner(resp.Bucket)
			}
			if resp.Node == "" {
				resp.Note = "no node owns this bucket now: new flows are dropped until one does"
			}
			return resp, nil
		}
		return api.OwnerResponse{Rule: "none", Bucket: -1, Node: sv.defaults[vi], Note: "no port rule matches: the default host serves it"}, nil
	}
	return api.OwnerResponse{}, fmt.Errorf("%s is not a load-balanced VIP of this cluster", vip.Addr())
}

// Generation is the bucket map generation on this node.
func (t *Tier) Generation() uint64 { return t.snapshot().generation }

// ErrRestartNeeded: a reload changed something about the VIPs that only a
// restart applies.
var ErrRestartNeeded = errors.New("VIP addresses, modes, interfaces, health checks and port rules change only on restart")

// Reload applies new weights and handling priorities (what an operator
// changes on a live NLB cluster); anything else about the VIPs needs a
// restart and is refused with ErrRestartNeeded, keeping the running values.
func (t *Tier) Reload(vips []config.VIPConfig) error {
	t.opMu.Lock()
	defer t.opMu.Unlock()
	if len(vips) != len(t.o.VIPs) {
		return ErrRestartNeeded
	}
	for i, v := range vips {
		old := t.o.VIPs[i]
		if v.VIP != old.VIP || v.Interface != old.Interface || v.Mode != old.Mode || len(v.Rules) != len(old.Rules) ||
			fmt.Sprint(v.Health) != fmt.Sprint(old.Health) {
			return ErrRestartNeeded
		}
		for j, r := range v.Rules {
			o := old.Rules[j]
			if r.Ports != o.Ports || r.Protocol != o.Protocol || r.Filtering != o.Filtering || r.Affinity != o.Affinity {
				return ErrRestartNeeded
			}
		}
	}
	t.mu.Lock()
	for i, v := range vips {
		for j, r := range v.Rules {
			t.o.VIPs[i].Rules[j].Weight = r.Weight
			t.o.VIPs[i].Rules[j].HandlingPriority = r.HandlingPriority
		}
	}
	t.mu.Unlock()
	t.publishRules() // under opMu, which every writer of what it reads holds
	return nil
}
