package failover

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/vocab"
)

// arbiter runs on every voter and acts only while its voter leads the
// quorum: it grants leases to owners, appoints a new owner when a lease
// runs out, and carries out planned moves. Its decisions go through raft,
// so a majority stands behind every owner change.
type arbiter struct {
	q      *Quorum
	m      *Manager
	groups map[string]config.GroupConfig
	t      Timing
	log    *slog.Logger

	mu         sync.Mutex
	reports    map[string]map[string]reportAt // group -> node -> latest report
	grants     map[string]grant               // group -> the latest lease this leader granted
	released   map[string]uint64              // group -> epoch its owner gave up
	moves      map[string]time.Time           // group -> deadline of the move under way
	barrier    time.Time                      // leadership term whose log this node has caught up with
	transfer   time.Time                      // last leadership hand-off attempt
	barrierErr time.Time                      // the term whose failing barrier was last logged (tick's goroutine only)

	published map[string]publishedAt // group -> the summary last put in metadata (publish's goroutine only)
	words     bool                   // published in protocol 1's form (publish's goroutine only)
}

type publishedAt struct {
	s  summary
	at time.Time
}

// lagEvery: a change of replication lag alone is published at most this
// often. Lag moves with every write; metadata is gossiped to every node and
// each change costs every peer a full heartbeat decode.
const lagEvery = 5 * time.Second

type reportAt struct {
	report
	at time.Time
}

type grant struct {
	epoch uint64
	until time.Time
}

// Reasons for an owner change (the event's and trap's detail).
const (
	reasonPlaced   = "placed"        // first owner of a new group
	reasonFailed   = "owner_failed"  // the owner stopped answering
	reasonLease    = "lease_expired" // the owner is alive but lost its lease (cut off from the leader)
	reasonResource = "resource_failed"
	reasonLeft     = "owner_left" // the owner's agent stopped (SIGTERM, service stop)
	reasonMove     = "operator_move"
	reasonFailback = "failback"
	reasonNoTarget = "move_failed"
)

func newArbiter(q *Quorum, m *Manager, groups []config.GroupConfig, t Timing, log *slog.Logger) *arbiter {
	a := &arbiter{q: q, m: m, t: t, log: log, groups: map[string]config.GroupConfig{},
		reports: map[string]map[string]reportAt{}, grants: map[string]grant{}, released: map[string]uint64{}, moves: map[string]time.Time{},
		published: map[string]publishedAt{}}
	for _, g := range groups {
		a.groups[g.Name] = g
		a.reports[g.Name] = map[string]reportAt{}
	}
	return a
}

// onReport answers a candidate. Only a leader grants; the grant is given
// to the recorded owner of the recorded epoch and nobody else.
func (a *arbiter) onReport(r report) verdict {
	v := verdict{Group: r.Group, Seq: r.Seq}
	g, ok := a.groups[r.Group]
	if !ok || !slices.Contains(g.Owners, r.Node) {
		v.NotLeader = true // not ours to answer; the sender's config differs
		return v
	}
	leading, since := a.q.leading()
	if !leading {
		v.NotLeader = true
		return v
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.barrier.Equal(since) {
		// A new leader's records may lag what was committed before it
		// led (a voter elected right after a restart applies its log
		// after it won): a grant read from them could name an owner of
		// an old epoch. The chaos campaign saw exactly that — node3,
		// restarted in a storm, leader 0.6 s later, granted node1 a lease
		// for epoch 19 while node2 was primary for epoch 22; node1
		// promoted and acknowledged a write. Nothing is answered until
		// tick's barrier has caught up.
		v.NotLeader = true
		return v
	}
	now := time.Now()
	rec := a.q.fsm.get(r.Group)
	// Reports travel on separate connections and may arrive out of order:
	// an older one must not undo a newer one (it could name a standby the
	// owner has since stopped waiting for). A restarted agent counts from
	// 1 again; its reports are taken once the old ones are stale.
	if a.staleReport(r, now) {
		v.Stale = true
		return v
	}
	a.reports[r.Group][r.Node] = reportAt{r, now}
	if r.Released != 0 && r.Released >= a.released[r.Group] {
		a.released[r.Group] = r.Released
	}
	v.Owner, v.Epoch, v.Target, v.SyncWith = rec.Owner, rec.Epoch, rec.Target, rec.SyncWith
	v.OwnerAddr = a.m.addrOf(rec.Owner)
	if rec.Owner == r.Node && rec.Epoch > 0 && a.released[r.Group] != rec.Epoch {
		a.grants[r.Group] = grant{epoch: rec.Epoch, until: now.Add(a.t.Lease)}
		v.LeaseMS = a.t.Lease.Milliseconds()
	}
	return v
}

// staleReport says whether r is older than the report already taken from
// its node (a.mu held).
func (a *arbiter) staleReport(r report, now time.Time) bool {
	prev, ok := a.reports[r.Group][r.Node]
	return ok && r.Seq <= prev.Seq && now.Sub(prev.at) < 2*a.t.Lease
}

// fresh is the latest report of node if it is recent enough to act on.
// Called with a.mu held, like candidate.
func (a *arbiter) fresh(group, node string, now time.Time) (report, bool) {
	r, ok := a.reports[group][node]
	if !ok || now.Sub(r.at) > 3*a.t.Renew {
		return report{}, false
	}
	return r.report, true
}

// strictSync: a group whose resource replicates synchronously may fail
// over automatically only to the standby the quorum recorded as
// synchronous; with none recorded, nobody but the owner itself is known
// to hold every acknowledged commit, and the group waits for the owner.
func strictSync(g config.GroupConfig) bool {
	return g.Resource.Type == config.ResourcePostgreSQL && g.Resource.Synchronous != nil && *g.Resource.Synchronous
}

// heirs says which nodes may take a group over without losing an
// acknowledged write: the owner itself (no other node has been primary
// since it was, so it holds all it acknowledged) and the recorded
// synchronous standby if there is one; for a strictly synchronous
// resource without one, only the owner; else anyone (nil).
func heirs(g config.GroupConfig, rec Record) func(string) bool {
	switch {
	case rec.SyncWith != "":
		return func(n string) bool { return n == rec.SyncWith || n == rec.Owner }
	case strictSync(g):
		return func(n string) bool { return n == rec.Owner }
	}
	return nil
}

// candidate picks the node to take a group over: the first owner in
// preference order that is ready and allowed (nil: any), skipping avoid
// unless nobody else is; if none is ready, the first allowed one that is
// ready but for its cool-down (the cool-down keeps a group from bouncing
// between broken nodes, not from its only heir).
func (a *arbiter) candidate(g config.GroupConfig, avoid string, allowed func(string) bool, now time.Time) string {
	var fallback, cooling string
	for _, n := range g.Owners {
		r, ok := a.fresh(g.Name, n, now)
		if !ok || r.Primary != 0 || !r.Ready && !r.Cooling {
			continue
		}
		if allowed != nil && !allowed(n) {
			continue
		}
		switch {
		case !r.Ready:
			if cooling == "" {
				cooling = n
			}
		case n == avoid:
			fallback = n
		default:
			return n
		}
	}
	if fallback != "" {
		return fallback
	}
	return cooling
}

func allows(allowed func(string) bool, n string) bool { return allowed == nil || allowed(n) }

// tick makes the leader's decisions; called every Renew/4.
func (a *arbiter) tick() {
	leading, since := a.q.leading()
	if !leading {
		a.mu.Lock()
		a.barrier = time.Time{}
		clear(a.grants)
		clear(a.moves)
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	caughtUp := a.barrier.Equal(since)
	a.mu.Unlock()
	if !caughtUp {
		// Read nothing before the log this leader inherited is applied.
		if err := a.q.barrier(); err != nil {
			a.barrierFailed(since, time.Now(), err)
			return
		}
		a.mu.Lock()
		a.barrier = since
		a.mu.Unlock()
	}
	now := time.Now()
	for name, g := range a.groups {
		rec := a.q.fsm.get(name)
		a.mu.Lock()
		next, why := a.decide(g, rec, since, now)
		a.mu.Unlock()
		if next == nil {
			continue
		}
		// Committed outside the lock: raft may take a moment, and reports
		// (lease renewals) must not wait for it.
		err := a.q.set(name, rec.Epoch, *next)
		if err == nil && next.Epoch != rec.Epoch {
			// The new owner gets a lease's time to ask for its lease
			// before this leader gives up on it.
			a.mu.Lock()
			a.grants[name] = grant{epoch: next.Epoch, until: time.Now().Add(a.t.Lease)}
			a.mu.Unlock()
			a.m.askReport(name, next.Owner, next.Epoch)
		}
		switch {
		case err == nil && why != "":
			a.log.Info(why, slog.String("group", name), slog.String("from", rec.Owner), slog.String("to", next.Owner),
				slog.Uint64("epoch", next.Epoch), slog.String("reason", next.Reason))
		case err != nil && !errors.Is(err, errStale) && !errors.Is(err, errNotLeader):
			a.log.Warn("group decision not committed", slog.String("group", name), slog.Any("error", err))
		}
	}
	a.publish(now)
	a.handOff(now)
}

// barrierFailed says, once per term, that this leader cannot commit: until
// it can, it grants no lease and moves no group. One cause is known by
// name: hashicorp/raft 1.7.3 (issue #696) could leave a node's "leadership
// transfer in progress" flag set for good (a second transfer request in
// one term blocked behind the first one's catch-up for a silent target,
// then leadership lost), and every later term it led then refused all
// writes, its barrier included. The 1-hour chaos campaign of stop 22 hit
// it (benchmarks.md). The raft built here carries the fix
// (third_party/raft); the ERROR stays so that a flag stuck any other way
// is not silent either.
func (a *arbiter) barrierFailed(since, now time.Time, err error) {
	if a.barrierErr.Equal(since) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) {
		return // logged already, or the term is over (the next leader goes on)
	}
	a.barrierErr = since
	if errors.Is(err, raft.ErrLeadershipTransferInProgress) && now.Sub(a.transfer) > transferRetry {
		a.log.Error("the quorum leader refuses every write: raft's leadership transfer flag is stuck (hashicorp/raft#696); no lease is granted and no group moves while this node leads: restart this agent",
			slog.Any("error", err))
		return
	}
	a.log.Warn("the quorum leader cannot commit yet: no lease is granted and no group moves until it does", slog.Any("error", err))
}

// transferRetry: how soon a leader that still should not lead asks raft
// again to hand leadership on (and, in barrierFailed, how long a refused
// write may be blamed on this node's own transfer in flight).
const transferRetry = 2 * time.Second

// handOff passes leadership to a voter that owns no group when this
// leader owns one. If the owner and the leader are the same node, its
// death costs an election and then a full hold before the failover;
// with them apart, only the lease. A leader that is only listed as an
// owner (a standby) passes it to a live pure witness if there is one: a
// standby would have to hand leadership on when it takes over, and the
// death of its node would cost an election and its standby at once.
func (a *arbiter) handOff(now time.Time) {
	if now.Sub(a.transfer) < transferRetry {
		return
	}
	owners := map[string]bool{}
	for name := range a.groups {
		// The target of a move under way counts: it owns the group in a
		// moment, and leadership should be elsewhere by then.
		rec := a.q.fsm.get(name)
		owners[rec.Owner], owners[rec.Target] = true, true
	}
	// Prefer a pure witness (a voter listed as no group's owner): a
	// standby would have to hand leadership on again when it takes over.
	listed := map[string]bool{}
	for _, g := range a.groups {
		for _, o := range g.Owners {
			listed[o] = true
		}
	}
	if !owners[a.q.name] {
		if !listed[a.q.name] {
			return
		}
		for _, v := range a.q.voters {
			if !listed[v] && !a.m.down(v) {
				a.transferTo(v, now)
				return
			}
		}
		return
	}
	voters := slices.Clone(a.q.voters)
	slices.SortStableFunc(voters, func(x, y string) int {
		switch {
		case listed[x] == listed[y]:
			return 0
		case !listed[x]:
			return -1
		}
		return 1
	})
	for _, v := range voters {
		if v != a.q.name && !owners[v] && !a.m.down(v) {
			a.transferTo(v, now)
			return
		}
	}
}

// transferTo asks raft to hand leadership to voter v. The request is
// queued without waiting (raft answers ErrEnqueueTimeout when busy); the
// transfer itself runs in raft's loop and is retried two seconds later
// if this node still leads and still should not.
func (a *arbiter) transferTo(v string, now time.Time) {
	a.transfer = now
	a.log.Info("handing quorum leadership to a voter that owns no group", slog.String("to", v))
	// Not waited for: the answer comes when the transfer is over or
	// failed, and the future's buffered channel takes it either way.
	a.q.raft.LeadershipTransferToServer(raft.ServerID(v), raft.ServerAddress(v))
}

// decide is the leader's rule book for one group: the record to commit,
// if any, and what to log. Called with a.mu held.
func (a *arbiter) decide(g config.GroupConfig, rec Record, since, now time.Time) (*Record, string) {
	gr := a.grants[g.Name]
	released := rec.Epoch != 0 && a.released[g.Name] == rec.Epoch
	owner, ownerOK := a.fresh(g.Name, rec.Owner, now)

	next := rec
	next.Prev = rec.Owner
	next.Epoch = rec.Epoch + 1

	if rec.Owner == "" {
		c := a.candidate(g, "", nil, now) // a new group: nobody has data yet
		if c == "" || (c != g.Owners[0] && now.Sub(since) < 3*a.t.Renew) {
			// Give every owner a few reports' time, so the preferred
			// one gets the group if it is up.
			return nil, ""
		}
		next.Owner, next.Reason, next.Prev = c, reasonPlaced, ""
		return &next, "placing group"
	}

	// Has the owner's lease run out? Either it said it let go, or this
	// leader's own grant expired and any grant of an earlier leader must
	// have too (hold).
	expired := released || (now.After(gr.until) && now.Sub(since) > a.t.hold())

	if !expired && ownerOK && owner.Primary == rec.Epoch && owner.SyncWith != rec.SyncWith {
		// The owner changed its synchronous standby: record it, so a
		// failover goes to the node that has the data. The owner orders
		// its own steps around this record (see the postgresql agent).
		next = rec
		next.SyncWith = owner.SyncWith
		return &next, ""
	}

	if rec.Target != "" {
		deadline, moving := a.moves[g.Name]
		if !moving {
			deadline = now.Add(moveTimeout)
			a.moves[g.Name] = deadline
		}
		if expired {
			c := rec.Target
			if r, ok := a.fresh(g.Name, c, now); !ok || !r.Ready || !allows(heirs(g, rec), c) {
				c = a.candidate(g, rec.Owner, heirs(g, rec), now)
			}
			if c == "" {
				if now.After(deadline) {
					// Nobody can take over: give it back to the owner
					// under a new epoch, so it may promote again.
					next.Owner, next.Target, next.Reason, next.Prev = rec.Owner, "", reasonNoTarget, rec.Prev
					delete(a.moves, g.Name)
					return &next, "move failed: no owner ready; the group stays where it was"
				}
				return nil, ""
			}
			next.Owner, next.Target, next.SyncWith, next.Failovers = c, "", "", rec.Failovers+1
			if released {
				next.Reason = rec.Reason // operator_move or failback, chosen when the move began
			} else {
				next.Reason = a.whyGone(rec.Owner)
			}
			delete(a.moves, g.Name)
			return &next, "group moves"
		}
		if now.After(deadline) {
			// The owner never let go: call the move off, same epoch.
			next = rec
			next.Target, next.Reason = "", reasonNoTarget
			delete(a.moves, g.Name)
			return &next, "move called off: the owner did not step down in time"
		}
		return nil, ""
	}

	if expired {
		c := a.candidate(g, rec.Owner, heirs(g, rec), now)
		if c == "" {
			return nil, "" // offline until someone is ready
		}
		next.Owner, next.SyncWith, next.Failovers = c, "", rec.Failovers+1
		next.Reason = a.whyGone(rec.Owner)
		if released {
			next.Reason = reasonResource
			if r, ok := a.reports[g.Name][rec.Owner]; ok && r.Leaving {
				next.Reason = reasonLeft
			}
		}
		if c == rec.Owner {
			next.Failovers = rec.Failovers
		}
		return &next, "failing group over"
	}

	if g.Failback == "immediate" && g.Owners[0] != rec.Owner && ownerOK && owner.Primary == rec.Epoch {
		if r, ok := a.fresh(g.Name, g.Owners[0], now); ok && r.Ready && allows(heirs(g, rec), g.Owners[0]) {
			next = rec
			next.Target, next.Reason = g.Owners[0], reasonFailback
			return &next, "failing back to the preferred owner"
		}
	}
	return nil, ""
}

// whyGone names why an owner lost its lease: failed if membership agrees
// it is gone, else it is alive but cut off from the leader.
func (a *arbiter) whyGone(node string) string {
	if a.m.down(node) {
		return reasonFailed
	}
	return reasonLease
}

// moveTimeout bounds a planned move: the owner must step down and the
// target be ready within it, or the move is called off.
const moveTimeout = 30 * time.Second

// move starts a planned switchover; "" picks the next preferred owner.
func (a *arbiter) move(group, node string) (string, error) {
	g, ok := a.groups[group]
	if !ok {
		return "", fmt.Errorf("unknown group %q", group)
	}
	if leading, _ := a.q.leading(); !leading {
		return "", errNotLeader
	}
	now := time.Now()
	rec := a.q.fsm.get(group)
	if rec.Owner == "" {
		return "", fmt.Errorf("group %s has no owner yet", group)
	}
	if rec.Target != "" {
		return "", fmt.Errorf("group %s is already moving to %s", group, rec.Target)
	}
	a.mu.Lock()
	if node == "" {
		node = a.candidate(g, rec.Owner, heirs(g, rec), now)
		if node == rec.Owner {
			node = ""
		}
	}
	r, ok := a.fresh(group, node, now)
	a.mu.Unlock()
	switch {
	case node == "":
		return "", fmt.Errorf("group %s: no other owner is ready to take over", group)
	case node == rec.Owner:
		return "", fmt.Errorf("group %s already runs on %s", group, node)
	case !slices.Contains(g.Owners, node):
		return "", fmt.Errorf("%s is not one of group %s's owners %v", node, group, g.Owners)
	case !ok:
		return "", fmt.Errorf("%s is not reporting for group %s (down, or not running clusterd)", node, group)
	case !r.Ready:
		return "", fmt.Errorf("%s is not ready to take group %s over (%s)", node, group, r.Health)
	case !allows(heirs(g, rec), node):
		return "", fmt.Errorf("%s is not group %s's synchronous standby (recorded: %q): it may lack acknowledged commits; wait until status shows it as standby", node, group, rec.SyncWith)
	}
	next := rec
	next.Target, next.Reason = node, reasonMove
	if err := a.q.set(group, rec.Epoch, next); err != nil {
		return "", err
	}
	return node, nil
}

// publish puts the leader's view of every group in its metadata.
func (a *arbiter) publish(now time.Time) {
	// While a member of the release before the compact summaries is in the
	// cluster, publish them as it reads them (a rolling upgrade).
	words := false
	for _, m := range a.m.mem.Members() {
		if !m.Self && !m.State.Down() && m.Proto < 2 {
			words = true
		}
	}
	if words != a.words {
		a.words, a.published = words, map[string]publishedAt{}
	}
	for name, g := range a.groups {
		rec := a.q.fsm.get(name)
		s := summary{Owner: rec.Owner, Epoch: rec.Epoch, Reason: rec.Reason, Prev: rec.Prev, Failovers: rec.Failovers, Repl: "none"}
		a.mu.Lock()
		owner, ok := a.fresh(name, rec.Owner, now)
		gr := a.grants[name]
		// Only a standby that may take over counts: another one may lack
		// acknowledged commits.
		allowed := heirs(g, rec)
		standby := ""
		for _, n := range g.Owners {
			if r, ok := a.fresh(name, n, now); ok && n != rec.Owner && r.Ready && allows(allowed, n) {
				standby = n
				break
			}
		}
		nobody := a.candidate(g, rec.Owner, allowed, now) == ""
		a.mu.Unlock()
		if ok && owner.Mode != "" {
			s.Repl, s.LagBytes = owner.Mode, owner.LagBytes
		}
		if rec.SyncWith != "" {
			s.Standby = rec.SyncWith
		}
		if s.Standby == "" {
			s.Standby = standby
		}
		switch {
		case rec.Owner == "":
			s.State = vocab.GroupOffline
		case rec.Target != "":
			s.State = vocab.GroupFailingOver
		case ok && owner.Primary == rec.Epoch && gr.epoch == rec.Epoch && now.Before(gr.until):
			s.State = vocab.GroupOnline
			if len(g.Owners) > 1 && standby == "" {
				s.State = vocab.GroupDegraded
			}
		case now.After(gr.until) && nobody:
			s.State = vocab.GroupOffline
		default:
			s.State = vocab.GroupFailingOver
		}
		prev, seen := a.published[name]
		if seen {
			same := prev.s
			same.LagBytes = s.LagBytes
			if prev.s == s || same == s && now.Sub(prev.at) < lagEvery {
				continue
			}
		}
		a.published[name] = publishedAt{s, now}
		if words {
			a.m.mem.SetExt(extGroupWords+name, s.words())
			a.m.mem.SetExt(extGroup+name, "")
		} else {
			a.m.mem.SetExt(extGroup+name, s.encode(g.Owners))
			a.m.mem.SetExt(extGroupWords+name, "")
		}
	}
}
