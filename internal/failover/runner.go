package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/vip"
)

// runner drives one group's resource on a node listed among its owners:
// primary while it holds a lease for the recorded epoch, standby (or
// stopped) otherwise. Three loops keep the lease independent of slow
// resource actions: the sender renews every Renew whatever the resource
// is doing, the watchdog fences the moment the lease runs out (even in
// the middle of a promote), and the actor runs the resource's actions
// one at a time.
type runner struct {
	m     *Manager
	g     config.GroupConfig
	res   Resource
	vip   *vip.Owned // nil if the group has no VIP
	log   *slog.Logger
	t     Timing
	start time.Time

	mu         sync.Mutex
	seq        uint64
	sent       map[uint64]time.Time
	v          verdict // the latest verdict from a leader
	vSeq       uint64
	maxEpoch   uint64 // the highest epoch a verdict has named
	vAt        time.Time
	leaseUntil time.Time
	leaseEpoch uint64
	primary    uint64 // epoch this node acts as primary for
	released   uint64 // epoch this node gave up
	ready      bool
	health     Health
	repl       ReplicationInfo
	following  string    // the owner a standby was last started against
	coolUntil  time.Time // after a resource failure: not ready until then
	// standbySince: since when the resource has run healthy as a standby
	// (zero: it does not).
	standbySince time.Time
	// namedSync: the synchronous standby this node last reported;
	// unnamedSeq: the first report after that which named none (see
	// recordedSync).
	namedSync  string
	unnamedSeq uint64
	retryAt    time.Time // a failed standby start is retried from then
	retryWait  time.Duration
	sending    bool

	vipMu  sync.Mutex // serialises VIP changes between the watchdog and the actor
	pushed time.Time  // the lease end last written to the kernel fence (under vipMu)
	wake   chan struct{}
	now    chan struct{} // report at once (reportNow)
}

func newRunner(m *Manager, g config.GroupConfig, res Resource, log *slog.Logger) (*runner, error) {
	r := &runner{m: m, g: g, res: res, log: log, t: m.t, start: time.Now(),
		sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1), now: make(chan struct{}, 1)}
	if g.VIP != nil {
		var err error
		if r.vip, err = vip.NewOwned(g.VIP.Address, g.VIP.Interface); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// reportNow makes the sender report at once (the leader has just
// appointed this node).
func (r *runner) reportNow() {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// clean removes a group VIP a crashed agent may have left on the NIC:
// nothing vouches for it now. Failing here (no privilege, no such
// interface) stops the agent's start, as it would fail every claim later.
func (r *runner) clean() error {
	if r.vip == nil {
		return nil
	}
	if err := r.vip.Release(); err != nil {
		return fmt.Errorf("group %s: %w", r.g.Name, err)
	}
	return nil
}

func (r *runner) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.sender(ctx) }()
	go func() { defer wg.Done(); r.watchdog(ctx) }()
	go func() { defer wg.Done(); r.actor(ctx) }()
	wg.Wait()
	if c, ok := r.res.(io.Closer); ok {
		if err := c.Close(); err != nil {
			r.log.Warn("closing the resource's connections", slog.Any("error", err))
		}
	}
}

// sender reports to the leader every Renew.
func (r *runner) sender(ctx context.Context) {
	t := time.NewTicker(r.t.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.now:
		}
		r.mu.Lock()
		if r.sending {
			r.mu.Unlock()
			continue // the previous report is still on its way
		}
		rep := r.reportLocked()
		r.sending = true
		r.mu.Unlock()
		go func() {
			r.m.sendReport(rep)
			r.mu.Lock()
			r.sending = false
			r.mu.Unlock()
		}()
	}
}

// reportLocked numbers and builds the next report (r.mu held).
func (r *runner) reportLocked() report {
	r.seq++
	now := time.Now()
	r.sent[r.seq] = now
	for s, at := range r.sent {
		if now.Sub(at) > 2*r.t.Lease {
			delete(r.sent, s)
		}
	}
	// Remember what this node last named as its synchronous standby and
	// the first report that stopped naming it: until the leader has
	// answered that report, the record may still come to name the standby
	// (an earlier report may be on its way), so commits must keep waiting
	// for it (see recordedSync).
	switch {
	case r.repl.SyncWith != "":
		r.namedSync, r.unnamedSeq = r.repl.SyncWith, 0
	case r.namedSync != "" && r.unnamedSeq == 0:
		r.unnamedSeq = r.seq
	}
	cool := now.Before(r.coolUntil)
	return report{Group: r.g.Name, Node: r.m.name, Seq: r.seq, Primary: r.primary, Released: r.released,
		Ready: r.ready && !cool, Cooling: r.ready && cool, Health: r.health.String(),
		Mode: r.repl.Mode, LagBytes: r.repl.LagBytes, SyncWith: r.repl.SyncWith}
}

// notTheOwner is what recordedSync returns to a primary that the quorum
// no longer records as the owner and that named no standby: not empty, so
// commits that wait keep waiting.
const notTheOwner = "(another owner)"

// recordedSync is the synchronous standby the quorum's record names, or
// may yet name: what this node reported last, until the leader has
// answered a later report that named none (r.mu held).
func (r *runner) recordedSync() string {
	if r.primary != 0 && (r.v.Owner != r.m.name || r.v.Epoch != r.primary) {
		// The last answer gives the group to another node (or epoch): the
		// standby this node waited for may be that owner already, so no
		// record of this node's epoch will ever release it. Its commits
		// keep waiting and fail when it is fenced, rather than be
		// acknowledged with no second copy (seen in the chaos campaign:
		// the old primary stopped waiting after the failover and
		// acknowledged writes that the new primary never had).
		if r.namedSync != "" {
			return r.namedSync
		}
		return notTheOwner
	}
	if r.v.SyncWith != "" || r.namedSync == "" {
		return r.v.SyncWith
	}
	if r.unnamedSeq != 0 && r.vSeq >= r.unnamedSeq {
		r.namedSync = ""
		return ""
	}
	return r.namedSync
}

// onVerdict takes a leader's answer. A granted lease runs from the moment
// the report was sent, so this node's lease ends before the leader's.
func (r *runner) onVerdict(v verdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v.Ask {
		if v.Owner == r.m.name {
			r.reportNow()
		}
		return
	}
	if v.NotLeader || v.Stale || v.Seq < r.vSeq || v.Epoch < r.maxEpoch {
		// (A lower epoch than one already seen can only come from a
		// leader whose records lag: epochs never go back.)
		return
	}
	sentAt, ok := r.sent[v.Seq]
	if !ok {
		return
	}
	r.maxEpoch = v.Epoch
	r.v, r.vSeq, r.vAt = v, v.Seq, time.Now()
	if v.LeaseMS > 0 && v.Owner == r.m.name {
		lease := time.Duration(v.LeaseMS) * time.Millisecond
		// A tenth off for the two clocks running at slightly different
		// rates over the lease.
		until := sentAt.Add(lease - lease/10)
		if v.Epoch != r.leaseEpoch || until.After(r.leaseUntil) {
			r.leaseUntil, r.leaseEpoch = until, v.Epoch
		}
	}
	r.poke()
}

// watchdog fences: the moment a primary's lease runs out, its VIP goes
// and the actor is told to stop the resource.
func (r *runner) watchdog(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		lost := r.primary != 0 && time.Now().After(r.leaseUntil)
		until := r.leaseUntil
		r.mu.Unlock()
		if lost {
			r.releaseVIP()
			r.poke()
			continue
		}
		r.renewVIP(until)
	}
}

// actor reconciles the resource with the latest verdict, on every verdict
// and at least every monitor interval.
func (r *runner) actor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if !r.m.abandon.Load() {
				r.shutdown()
			}
			return
		case <-r.wake:
		case <-t.C:
		}
		r.reconcile(ctx)
	}
}

func (r *runner) state() (v verdict, vAt time.Time, leaseOK bool, primary, released uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	leaseOK = time.Now().Before(r.leaseUntil) && r.leaseEpoch == r.v.Epoch && r.v.Owner == r.m.name
	return r.v, r.vAt, leaseOK, r.primary, r.released
}

func (r *runner) set(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
}

func (r *runner) reconcile(ctx context.Context) {
	v, vAt, leaseOK, primary, released := r.state()
	p := Params{Epoch: v.Epoch, Primary: v.Owner, PrimaryAddr: v.OwnerAddr}

	if primary != 0 {
		switch {
		case !leaseOK || v.Epoch != primary:
			r.releaseVIP()
			if f, ok := r.res.(Fencer); ok && v.Epoch == primary {
				// Still the recorded owner (the quorum may be electing a
				// leader): fenced in place, resumed if the lease comes
				// back for this epoch, stopped if the group moves on.
				err := f.Fence(ctx)
				if err == nil {
					r.log.Warn("lease lost: fencing this node (VIP removed, server frozen until the lease is back or the group moves)", slog.Uint64("epoch", primary))
					r.set(func() { r.primary, r.ready, r.following = 0, false, "" })
					return
				}
				r.log.Error("fencing the resource in place; stopping it instead", slog.Any("error", err))
			}
			r.log.Warn("lease lost: fencing this node (VIP removed, resource stopped)", slog.Uint64("epoch", primary))
			if err := r.res.Stop(ctx); err != nil {
				r.log.Error("stopping the resource after losing the lease", slog.Any("error", err))
			}
			r.set(func() { r.primary, r.ready, r.following = 0, false, "" })
		case v.Target != "":
			r.log.Info("planned move: stepping down", slog.String("to", v.Target), slog.Uint64("epoch", primary))
			r.releaseVIP()
			if err := r.res.Demote(ctx, p); err != nil {
				r.log.Error("demote failed; stopping the resource instead", slog.Any("error", err))
				r.res.Stop(ctx)
			}
			r.set(func() { r.primary, r.released, r.following = 0, primary, "" })
		default:
			h, err := r.res.Monitor(ctx)
			if !r.running(h, true) {
				r.failed(ctx, primary, "monitoring ("+h.String()+")", err)
				return
			}
			r.observe(ctx, h)
			if r.vip != nil {
				r.claimVIP()
			}
		}
		return
	}

	if vAt.IsZero() {
		// No leader has answered yet. A resource left running as primary
		// (an agent restarted under it) may run until a lease would have
		// run out, then it must stop: nobody vouches for it.
		if time.Since(r.start) > r.t.Lease {
			r.standby(ctx, p, false)
		}
		return
	}

	if leaseOK && v.Epoch != released {
		if v.Target != "" {
			// Asked to move before it ever promoted: just let go.
			r.set(func() { r.released = v.Epoch })
			return
		}
		r.mu.Lock()
		p.SyncWith = r.v.SyncWith
		if p.SyncWith == "" && r.namedSync != "" && r.unnamedSeq == 0 {
			// This node named a standby in a report the leader has not
			// answered with a record yet: it may still be recorded.
			p.SyncWith = r.namedSync
		}
		r.mu.Unlock()
		r.promote(ctx, p)
		return
	}
	r.standby(ctx, p, true)
}

// fenced says whether res is fenced in place (Fencer).
func fenced(res Resource) bool {
	f, ok := res.(Fencer)
	return ok && f.Fenced()
}

// cooldown keeps a node whose resource failed out of the running for a
// while, so a group does not bounce between two broken nodes.
const cooldown = 30 * time.Second

// standbyProof: how long a standby must run healthy to end its cool-down
// early; longer than the postgresql agent's grace for a standby that does
// not stream, so that a standby that cannot follow never passes.
const standbyProof = 12 * time.Second

// notReadyRetry: how soon a standby start is retried while the primary
// it must follow is still promoting.
const notReadyRetry = 300 * time.Millisecond

// running reports whether h is what the role needs.
func (r *runner) running(h Health, asPrimary bool) bool {
	if !r.res.Roles() {
		return h == Standby || h == Primary
	}
	if asPrimary {
		return h == Primary
	}
	return h == Standby
}

func (r *runner) promote(ctx context.Context, p Params) {
	h, _ := r.res.Monitor(ctx)
	if fenced(r.res) {
		r.log.Info("lease back: resuming the fenced server", slog.Uint64("epoch", p.Epoch))
		if err := r.res.Promote(ctx, p); err != nil {
			r.failed(ctx, p.Epoch, "resuming after the fence", err)
			return
		}
	} else if !r.running(h, true) {
		r.log.Info("taking the group over: promoting", slog.Uint64("epoch", p.Epoch))
		if err := r.res.Promote(ctx, p); err != nil {
			r.failed(ctx, p.Epoch, "promoting", err)
			return
		}
	} else {
		r.log.Info("resource already primary here: adopting it", slog.Uint64("epoch", p.Epoch))
	}
	// A slow promote may have outlived the lease; the watchdog only
	// guards a node that is primary, so check here before claiming.
	if _, _, ok, _, _ := r.state(); !ok {
		r.log.Warn("lease ran out during promotion: stopping again", slog.Uint64("epoch", p.Epoch))
		r.res.Stop(ctx)
		return
	}
	r.set(func() { r.primary, r.ready = p.Epoch, false })
	if r.vip != nil {
		r.claimVIP()
	}
	h, _ = r.res.Monitor(ctx)
	r.observe(ctx, h)
	r.log.Info("primary", slog.Uint64("epoch", p.Epoch))
}

// failed gives the group up after the resource failed on its way to (or
// while) being primary of epoch: VIP off, resource stopped, the epoch
// released so the leader can hand the group on at once, and this node
// out of the running for the cool-down.
func (r *runner) failed(ctx context.Context, epoch uint64, what string, err error) {
	r.log.Error("resource failed while "+what+": releasing the group", slog.Any("error", err))
	r.releaseVIP()
	start := time.Now()
	if err := r.res.Stop(ctx); err != nil {
		r.log.Error("stopping the failed resource", slog.Any("error", err), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	} else {
		r.log.Info("failed resource stopped: the group is released", slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	}
	r.set(func() {
		r.primary, r.released, r.ready, r.health, r.following = 0, epoch, false, Failed, ""
		r.coolUntil, r.standbySince = time.Now().Add(cooldown), time.Time{}
	})
}

// standby keeps a resource with roles running as a standby of the owner,
// and one without roles stopped; either way the node is then ready.
func (r *runner) standby(ctx context.Context, p Params, known bool) {
	h, err := r.res.Monitor(ctx)
	if !r.res.Roles() {
		if h != NotRunning {
			r.log.Info("stopping the resource: this node does not own the group", slog.String("health", h.String()))
			if err := r.res.Stop(ctx); err != nil {
				r.log.Error("stopping the resource", slog.Any("error", err))
				r.set(func() { r.ready, r.health = false, Failed })
				return
			}
			h = NotRunning
		}
		r.set(func() { r.ready, r.health = known, h })
		return
	}
	if h == Primary && fenced(r.res) && p.Primary == r.m.name && known {
		// Frozen when its lease ran out, and still the recorded owner:
		// it waits, frozen, for the lease to come back (promote thaws
		// it) or for the group to move on (then it is stopped here).
		r.set(func() { r.ready, r.health = false, h })
		return
	}
	if h == Primary || h == Failed {
		// Running as primary without a lease, or broken: stop first.
		r.log.Warn("stopping the resource: it is primary (or failed) on a node without the lease", slog.String("health", h.String()), slog.Any("error", err))
		r.res.Stop(ctx)
		h = NotRunning
	}
	if !known {
		r.set(func() { r.ready, r.health = false, h })
		return
	}
	if p.Primary == r.m.name {
		// The record names this node but it holds no lease (it let the
		// epoch go, or is waiting for its first grant): it cannot follow
		// itself. Its stopped resource holds every commit it
		// acknowledged, so it may take the group back under a new epoch
		// (a postmaster that crashed with no synchronous standby to
		// promote: nobody else may).
		r.set(func() { r.ready, r.health = h == NotRunning, h })
		return
	}
	if p.Primary == "" {
		// Nobody owns the group yet (a new cluster): nothing to follow;
		// any owner may be placed, and promotion sets it up.
		r.set(func() { r.ready, r.health = h != Failed, h })
		return
	}
	r.mu.Lock()
	follow := r.following != p.Primary
	wait := time.Now().Before(r.retryAt)
	r.mu.Unlock()
	if (h == NotRunning || follow) && !wait {
		if err := r.res.Start(ctx, p); err != nil {
			notYet := errors.Is(err, ErrPrimaryNotReady)
			if notYet {
				r.log.Info("starting the standby: waiting for the primary", slog.String("primary", p.Primary), slog.Any("reason", err))
			} else {
				r.log.Error("starting the standby", slog.String("primary", p.Primary), slog.Any("error", err))
			}
			r.set(func() {
				// Back off: 1 s, doubling to 30 s, so a broken primary is
				// not hammered; one that is promoting is asked again soon
				// (it is done in about a second), else the standby would
				// start seconds after it could.
				if notYet {
					r.retryWait = notReadyRetry
				} else {
					r.retryWait = min(max(2*r.retryWait, time.Second), 30*time.Second)
				}
				r.retryAt = time.Now().Add(r.retryWait)
				r.ready, r.health = false, Failed
			})
			return
		}
		r.set(func() { r.following, r.retryWait = p.Primary, 0 })
		h, _ = r.res.Monitor(ctx)
	}
	r.set(func() {
		r.ready = h == Standby
		now := time.Now()
		if h != Standby {
			r.standbySince = time.Time{}
			return
		}
		if r.standbySince.IsZero() {
			r.standbySince = now
		}
		// A standby that has shown its resource works again ends the
		// cool-down after its failure early, so the group has an heir
		// again (else it would stay degraded for the whole cool-down).
		switch {
		case !now.Before(r.coolUntil):
		case r.v.SyncWith == r.m.name && r.v.Owner != r.m.name:
			// The quorum records it as the primary's synchronous standby:
			// it streams and has flushed every acknowledged commit. It is
			// the group's only heir; keeping it out would leave the group
			// nobody to fail over to.
			r.log.Info("the primary holds this standby synchronous since its failure: eligible again", slog.Duration("after", now.Sub(r.standbySince).Round(time.Millisecond)))
			r.coolUntil = time.Time{}
		case now.Sub(r.standbySince) >= standbyProof:
			r.log.Info("the standby has run healthy since its failure: eligible again", slog.Duration("after", now.Sub(r.standbySince).Round(time.Second)))
			r.coolUntil = time.Time{}
		}
	})
	r.observe(ctx, h)
}

// observe records health and, for replicating resources, replication.
func (r *runner) observe(ctx context.Context, h Health) {
	rp, ok := r.res.(Replicator)
	if !ok {
		r.set(func() { r.health, r.repl = h, ReplicationInfo{} })
		return
	}
	r.mu.Lock()
	recorded, last := r.recordedSync(), r.repl
	r.mu.Unlock()
	info, err := rp.Replication(ctx, h, recorded)
	if h == Failed || err != nil {
		// A primary that cannot be asked (its server died, a query
		// failed) acknowledges nothing more: the standby last reported
		// still holds every acknowledged commit and stays the heir. An
		// empty answer here would clear it from the record and leave the
		// group with no one to fail over to.
		info = last
	}
	r.set(func() { r.health, r.repl = h, info })
}

func (r *runner) claimVIP() {
	r.vipMu.Lock()
	defer r.vipMu.Unlock()
	if r.vip.Held() {
		return
	}
	// Only under a valid lease: the watchdog may have fenced meanwhile.
	if _, _, ok, _, _ := r.state(); !ok {
		return
	}
	r.mu.Lock()
	until := r.leaseUntil
	r.mu.Unlock()
	r.pushed = until
	if err := r.vip.Claim(until); err != nil {
		r.log.Error("claiming the group VIP", slog.Any("error", err))
		return
	}
	r.log.Info("group VIP claimed", slog.String("vip", r.vip.Prefix.String()))
}

// renewVIP carries a lease extension into the kernel fence.
func (r *runner) renewVIP(until time.Time) {
	if r.vip == nil {
		return
	}
	r.vipMu.Lock()
	defer r.vipMu.Unlock()
	if !r.vip.Held() || !until.After(r.pushed) {
		return
	}
	if err := r.vip.Renew(until); err != nil {
		r.log.Error("renewing the group VIP's kernel lease", slog.Any("error", err))
		return
	}
	r.pushed = until
}

func (r *runner) releaseVIP() {
	if r.vip == nil {
		return
	}
	r.vipMu.Lock()
	defer r.vipMu.Unlock()
	if !r.vip.Held() {
		return
	}
	if err := r.vip.Release(); err != nil {
		r.log.Error("releasing the group VIP", slog.Any("error", err))
	}
}

// shutdown on agent stop: a primary steps down cleanly (the lease lapses
// and a standby takes over); nothing is left holding the VIP.
func (r *runner) shutdown() {
	r.releaseVIP()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.mu.Lock()
	primary := r.primary
	r.mu.Unlock()
	if primary == 0 {
		if fenced(r.res) {
			// Frozen after its lease ran out: nobody will thaw it now, and
			// a frozen server holds its clients' connections forever.
			r.log.Info("agent stopping: stopping the fenced server")
			if err := r.res.Stop(ctx); err != nil {
				r.log.Error("stopping the fenced server", slog.Any("error", err))
			}
		}
		return
	}
	r.log.Info("agent stopping: stopping the group's resource", slog.Uint64("epoch", primary))
	if err := r.res.Stop(ctx); err != nil {
		r.log.Error("stopping the resource", slog.Any("error", err))
	}
	// Say so at once, so the leader hands the group over now rather than
	// when the lease would have run out.
	r.mu.Lock()
	r.primary, r.released, r.ready, r.health = 0, primary, false, NotRunning
	rep := r.reportLocked()
	rep.Leaving = true
	r.mu.Unlock()
	r.m.sendReport(rep)
}
