// Package failover is the MSCS-style tier: failover groups, the quorum
// that decides who owns them, the leases that fence an old owner, and the
// resource agents (postgresql, exec, service) that do the work.
//
// The safety argument, in short: a node acts as a group's primary only
// while it holds a lease for the group's current epoch; leases are granted
// only by the quorum's raft leader and only to the owner raft has
// recorded; a new owner is recorded only after every lease of the old one
// has run out. So two nodes never hold a group at once, whatever the
// network does, as long as clocks run at about the same rate.
package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/vocab"
	"github.com/hashicorp/raft"
)

// Membership is what the failover tier needs from the membership layer.
type Membership interface {
	Members() []heartbeat.Member
	Send(node string, kind vocab.MsgKind, body []byte) error
	// Datagram sends a small message on every heartbeat path at once
	// (members of heartbeat.DatagramProto and later).
	Datagram(node string, kind vocab.MsgKind, body []byte) error
	Handle(kind vocab.MsgKind, f func(body []byte))
	SetExt(key, value string)
}

// Options configure a Manager.
type Options struct {
	Node     string
	Bind     string // heartbeat.bind
	StateDir string
	Keys     [][]byte
	Quorum   *config.QuorumConfig
	Groups   []config.GroupConfig
	Timing   Timing
	Members  Membership
	Event    func(api.Event)
	Logger   *slog.Logger
}

// Manager is this node's part in the failover tier: a voter (if listed
// in quorum.voters), a runner per group it may own, and everyone's view
// of groups and quorum for status, events and SNMP.
type Manager struct {
	o    Options
	name string
	mem  Membership
	log  *slog.Logger
	t    Timing

	q       *Quorum
	arb     *arbiter
	runners map[string]*runner

	mu         sync.Mutex
	seen       map[string]summary
	hadQuorum  bool
	quorumInit bool
	lastLeader time.Time
	moveID     uint64
	moveWait   map[uint64]chan moveReply

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	abandon   atomic.Bool // tests: stop like kill -9 (no step-down, resources left as they are)
}

// New builds the failover tier; nothing runs before Start.
func New(o Options) (*Manager, error) {
	m := &Manager{o: o, name: o.Node, mem: o.Members, log: o.Logger, t: o.Timing,
		runners: map[string]*runner{}, seen: map[string]summary{}, moveWait: map[uint64]chan moveReply{}}
	if len(o.Groups) > 0 && o.Quorum == nil {
		return nil, errors.New("failover groups need a quorum section: without a majority to fence by, two nodes could both run a group")
	}
	for _, g := range o.Groups {
		if !slices.Contains(g.Owners, o.Node) {
			continue
		}
		glog := o.Logger.With(slog.String("group", g.Name))
		res, err := NewResource(g, o.Node, o.StateDir, glog, m.down)
		if err != nil {
			return nil, err
		}
		r, err := newRunner(m, g, res, glog)
		if err != nil {
			return nil, err
		}
		m.runners[g.Name] = r
	}
	return m, nil
}

// Start joins the quorum (voters) and starts the group runners.
func (m *Manager) Start(ctx context.Context) error {
	if m.o.Quorum == nil {
		return nil
	}
	if slices.Contains(m.o.Quorum.Voters, m.name) {
		q, err := NewQuorum(QuorumOptions{
			Name: m.name, Voters: m.o.Quorum.Voters, Bind: m.o.Bind, Port: m.o.Quorum.Port,
			Dir: filepath.Join(m.o.StateDir, "quorum"), Keys: m.o.Keys, Resolve: m.addrOfOK,
			Timing: m.t, Logger: m.log,
		})
		if err != nil {
			return err
		}
		m.q = q
		m.arb = newArbiter(q, m, m.o.Groups, m.t, m.log)
	}
	m.mem.Handle(vocab.MsgReport, m.onReport)
	m.mem.Handle(vocab.MsgVerdict, m.onVerdict)
	m.mem.Handle(vocab.MsgMove, m.onMove)
	m.mem.Handle(vocab.MsgMoveReply, m.onMoveReply)

	for _, r := range m.runners {
		if err := r.clean(); err != nil {
			m.Close()
			return err
		}
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.loop(ctx) }()
	for _, r := range m.runners {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); r.run(ctx) }()
	}
	return nil
}

// Close stops the runners (a primary stops its resource and hands the
// group over), then leaves the quorum. Idempotent.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.q != nil {
			m.q.Close()
		}
	})
	return nil
}

// SetKeys follows a key rotation.
func (m *Manager) SetKeys(keys [][]byte) error {
	if m.q == nil {
		return nil
	}
	return m.q.SetKeys(keys)
}

func (m *Manager) loop(ctx context.Context) {
	tick := m.t.Renew / 4
	t := time.NewTicker(tick)
	defer t.Stop()
	reportedTo := ""
	var leaderDown time.Time // when membership failed the raft leader's node (zero: it did not)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		members := m.members()
		down := func(n string) bool { mm, ok := members[n]; return !ok || mm.State.Down() }
		if m.q != nil {
			l, term := m.q.Leader()
			m.mem.SetExt(extLeader, l+":"+strconv.FormatUint(term, 10))
			switch rank := hurryRank(m.name, l, m.q.voters, down); {
			case rank >= 0:
				if leaderDown.IsZero() {
					leaderDown = time.Now()
				}
				if time.Since(leaderDown) >= time.Duration(rank)*tick {
					m.q.hurry(true)
				}
			case l != "":
				// A live leader (or this node): timeouts back to normal.
				leaderDown = time.Time{}
				m.q.hurry(false)
			}
			m.arb.tick()
		}
		if l := m.leader(members); l != reportedTo {
			// A new leader: report now. An owner whose lease is running
			// out while the quorum elected it gets it back a Renew sooner.
			reportedTo = l
			if l != "" {
				for _, r := range m.runners {
					r.reportNow()
				}
			}
		}
		m.observe()
	}
}

// members is membership's view, by name.
func (m *Manager) members() map[string]heartbeat.Member {
	out := map[string]heartbeat.Member{}
	for _, mm := range m.mem.Members() {
		out[mm.Name] = mm
	}
	return out
}

func (m *Manager) addrOfOK(name string) (string, bool) {
	mm, ok := m.members()[name]
	if !ok || mm.Addr == "" {
		return "", false
	}
	return mm.Addr, true
}

func (m *Manager) addrOf(name string) string {
	a, _ := m.addrOfOK(name)
	return a
}

// down reports whether membership says node failed or left.
func (m *Manager) down(node string) bool {
	mm, ok := m.members()[node]
	return !ok || mm.State.Down()
}

// leader is the quorum leader as this node knows it: its own raft's view
// on a voter; elsewhere the live voter that says it leads, in the highest
// term any voter reports.
//
// A voter that has just restarted may not have heard from the leader yet
// (raft backs off heartbeats to a peer that was down), so it too falls
// back to what the voters announce.
func (m *Manager) leader(members map[string]heartbeat.Member) string {
	if m.q != nil {
		if l, _ := m.q.Leader(); l != "" {
			return l
		}
	}
	best, leader := uint64(0), ""
	for _, mm := range members {
		if mm.State.Down() {
			continue
		}
		l, term, ok := strings.Cut(mm.Ext[extLeader], ":")
		if !ok || l != mm.Name {
			continue
		}
		t, err := strconv.ParseUint(term, 10, 64)
		if err == nil && t >= best {
			best, leader = t, l
		}
	}
	return leader
}

// sendReport delivers a runner's report to the leader: a direct call if
// this node leads.
func (m *Manager) sendReport(rep report) {
	leader := m.leader(m.members())
	if leader == "" {
		return
	}
	if leader == m.name && m.arb != nil {
		m.deliverVerdict(m.arb.onReport(rep))
		return
	}
	if err := m.sendLease(leader, vocab.MsgReport, encode(rep)); err != nil {
		m.log.Debug("report to the quorum leader not sent", slog.String("leader", leader), slog.Any("error", err))
	}
}

// sendLease sends a lease report or verdict: as a datagram on every
// heartbeat path (a lost packet costs nothing; reports repeat every Renew
// and lost ones are made up by the next), or to a member of an older
// protocol over memberlist's reliable channel (a TCP connection, which
// waits; from a worker of its own, see onReport).
func (m *Manager) sendLease(node string, kind vocab.MsgKind, body []byte) error {
	if mm, ok := m.members()[node]; ok && mm.Proto < heartbeat.DatagramProto {
		return m.mem.Send(node, kind, body)
	}
	return m.mem.Datagram(node, kind, body)
}

// askReport tells a node the leader has just appointed to report at
// once: its lease comes with the answer. Lost, it costs what it saves
// (the node reports on its next Renew anyway).
func (m *Manager) askReport(group, node string, epoch uint64) {
	v := verdict{Group: group, Owner: node, Epoch: epoch, Ask: true}
	if node == m.name {
		m.deliverVerdict(v)
		return
	}
	if mm, ok := m.members()[node]; !ok || mm.Proto < heartbeat.DatagramProto {
		return // an agent of an earlier release would drop it anyway
	}
	if err := m.mem.Datagram(node, vocab.MsgVerdict, encode(v)); err != nil {
		m.log.Debug("call to report not sent", slog.String("node", node), slog.Any("error", err))
	}
}

func (m *Manager) onReport(body []byte) {
	var rep report
	if err := json.Unmarshal(body, &rep); err != nil || m.arb == nil {
		return
	}
	v := m.arb.onReport(rep)
	// (A report of this node's own never arrives here: sendReport calls
	// the arbiter directly.)
	if mm, ok := m.members()[rep.Node]; ok && mm.Proto < heartbeat.DatagramProto {
		// Membership calls handlers one at a time: a TCP connection
		// would hold up the next report, so it goes from elsewhere.
		go func() {
			if err := m.mem.Send(rep.Node, vocab.MsgVerdict, encode(v)); err != nil {
				m.log.Debug("verdict not sent", slog.String("node", rep.Node), slog.Any("error", err))
			}
		}()
		return
	}
	if err := m.mem.Datagram(rep.Node, vocab.MsgVerdict, encode(v)); err != nil {
		m.log.Debug("verdict not sent", slog.String("node", rep.Node), slog.Any("error", err))
	}
}

func (m *Manager) onVerdict(body []byte) {
	var v verdict
	if err := json.Unmarshal(body, &v); err != nil {
		return
	}
	m.deliverVerdict(v)
}

func (m *Manager) deliverVerdict(v verdict) {
	if r, ok := m.runners[v.Group]; ok {
		r.onVerdict(v)
	}
}

// observe turns what the leader publishes into status and events.
func (m *Manager) observe() {
	members := m.members()
	leader := m.leader(members)
	now := time.Now()
	var events []api.Event
	m.mu.Lock()
	if leader != "" {
		m.lastLeader = now
		if lm, ok := members[leader]; ok {
			for _, g := range m.o.Groups {
				s, ok := leaderSummary(lm.Ext, g)
				if !ok {
					continue
				}
				old, seen := m.seen[g.Name]
				if seen && s.Epoch > old.Epoch && s.Owner != s.Prev && s.Prev != "" {
					events = append(events, api.Event{Time: now, Type: vocab.GroupFailover, Node: s.Owner, Group: g.Name, From: s.Prev,
						Detail: fmt.Sprintf("group %s: %s -> %s (%s)", g.Name, s.Prev, s.Owner, s.Reason)})
				}
				if !seen || s.Epoch >= old.Epoch {
					m.seen[g.Name] = s
				}
			}
		}
	}
	q := m.quorumLocked(members, leader, now)
	if q != nil {
		switch {
		case !m.quorumInit && q.HasQuorum:
			m.quorumInit, m.hadQuorum = true, true
		case m.quorumInit && m.hadQuorum && !q.HasQuorum:
			m.hadQuorum = false
			events = append(events, api.Event{Time: now, Type: vocab.QuorumLost, Node: m.name,
				Detail: fmt.Sprintf("%d of %d voters alive, no leader: groups stop when their leases run out", q.Alive, q.Voters)})
		case m.quorumInit && !m.hadQuorum && q.HasQuorum:
			m.hadQuorum = true
			events = append(events, api.Event{Time: now, Type: vocab.QuorumRegained, Node: m.name,
				Detail: fmt.Sprintf("%d of %d voters alive, leader %s", q.Alive, q.Voters, q.Leader)})
		}
	}
	m.mu.Unlock()
	for _, e := range events {
		if m.o.Event != nil {
			m.o.Event(e)
		}
	}
}

// quorumLocked computes the quorum's state. Leader elections take a
// moment; the quorum counts as lost only when a majority of voters is
// down or no leader has been seen for three election timeouts.
func (m *Manager) quorumLocked(members map[string]heartbeat.Member, leader string, now time.Time) *api.Quorum {
	if m.o.Quorum == nil {
		return nil
	}
	q := &api.Quorum{Voters: len(m.o.Quorum.Voters), Leader: leader}
	for _, v := range m.o.Quorum.Voters {
		if mm, ok := members[v]; ok && !mm.State.Down() {
			q.Alive++
		}
	}
	q.HasQuorum = 2*q.Alive > q.Voters && (leader != "" || now.Sub(m.lastLeader) < 3*m.t.Election)
	return q
}

// Status is the groups and quorum as this node sees them.
func (m *Manager) Status() ([]api.Group, *api.Quorum) {
	members := m.members()
	leader := m.leader(members)
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.quorumLocked(members, leader, time.Now())
	groups := []api.Group{}
	for _, g := range m.o.Groups {
		s := m.seen[g.Name]
		ag := api.Group{Name: g.Name, Owner: s.Owner, State: s.State, Replication: s.Repl, Epoch: s.Epoch,
			Failovers: s.Failovers, LagBytes: s.LagBytes, Reason: s.Reason, Standby: s.Standby}
		if g.VIP != nil {
			ag.VIP = g.VIP.Address
		}
		if ag.State == "" || (q != nil && !q.HasQuorum) {
			// Without a leader nobody grants leases: whatever ran stops.
			ag.State = vocab.GroupOffline
		}
		if ag.Replication == "" {
			ag.Replication = "none"
		}
		groups = append(groups, ag)
	}
	return groups, q
}

// ErrUnknownGroup is a group name the config does not define.
var ErrUnknownGroup = errors.New("unknown group")

// moveRetryFor bounds how long Move tries again while the quorum cannot
// take the move for a passing reason: a leadership transfer (the leader
// refuses writes for up to two election timeouts), an election, a
// leader that just changed. The chaos hour of stop 23 had 4 of 55 moves
// refused that way ("leadership transfer in progress").
const moveRetryFor = 3 * time.Second

// moveBudget bounds Move as a whole (tries, a remote leader's answer):
// under clusterctl's 10 s wait (api.DefaultAnswerTimeout), so that a slow
// quorum is said as such and not as an agent that does not answer.
const moveBudget = 8 * time.Second

// Move starts a planned switchover of group to node ("" = the next
// preferred owner that is ready) and returns the node taking over once
// the quorum has recorded the move. Callers watch Status for the end.
func (m *Manager) Move(ctx context.Context, group, node string) (string, error) {
	i := slices.IndexFunc(m.o.Groups, func(g config.GroupConfig) bool { return g.Name == group })
	if i < 0 {
		return "", fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	if node != "" && !slices.Contains(m.o.Groups[i].Owners, node) {
		return "", fmt.Errorf("%s is not one of group %s's owners %v", node, group, m.o.Groups[i].Owners)
	}
	// All tries together stay within moveBudget, under clusterctl's 10 s.
	ctx, cancel := context.WithTimeout(ctx, moveBudget)
	defer cancel()
	deadline := time.Now().Add(moveRetryFor)
	for {
		target, retry, err := m.moveOnce(ctx, group, node)
		if err == nil || !retry || time.Now().After(deadline) {
			return target, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// quorumBusy says whether err is the quorum's passing state, refused
// before anything was written: worth trying again in a moment. Not
// raft.ErrLeadershipLost: a write lost with the leadership may still have
// been committed, and a second try would then be refused as "already
// moving"; that one is said as it is.
func quorumBusy(err error) bool {
	return errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, errNotLeader)
}

// moveOnce asks the quorum leader once; retry says the refusal was
// quorumBusy (or nobody leads right now).
func (m *Manager) moveOnce(ctx context.Context, group, node string) (target string, retry bool, err error) {
	leader := m.leader(m.members())
	if leader == "" {
		return "", true, errors.New("the quorum has no leader (no majority of voters): nothing can move now")
	}
	if leader == m.name && m.arb != nil {
		target, err := m.arb.move(group, node)
		return target, quorumBusy(err), err
	}
	m.mu.Lock()
	m.moveID++
	id := m.moveID
	ch := make(chan moveReply, 1)
	m.moveWait[id] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.moveWait, id)
		m.mu.Unlock()
	}()
	if err := m.mem.Send(leader, vocab.MsgMove, encode(moveRequest{ID: id, From: m.name, Group: group, Node: node})); err != nil {
		return "", true, fmt.Errorf("asking the quorum leader %s: %w", leader, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		if r.Err != "" {
			return "", r.Retry, errors.New(r.Err)
		}
		return r.Target, false, nil
	case <-ctx.Done():
		return "", false, fmt.Errorf("the quorum leader %s did not answer", leader)
	}
}

func (m *Manager) onMove(body []byte) {
	var req moveRequest
	if err := json.Unmarshal(body, &req); err != nil || m.arb == nil {
		return
	}
	go func() {
		target, err := m.arb.move(req.Group, req.Node)
		rep := moveReply{ID: req.ID, Target: target}
		if err != nil {
			rep.Err, rep.Retry = err.Error(), quorumBusy(err)
		}
		m.mem.Send(req.From, vocab.MsgMoveReply, encode(rep))
	}()
}

func (m *Manager) onMoveReply(body []byte) {
	var r moveReply
	if err := json.Unmarshal(body, &r); err != nil {
		return
	}
	m.mu.Lock()
	ch := m.moveWait[r.ID]
	m.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default:
		}
	}
}
