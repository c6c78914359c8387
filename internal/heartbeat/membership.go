package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/clusterd/clusterd/internal/vocab"
)

// Options configure a Membership.
type Options struct {
	Cluster    string
	Name       string
	Priority   int
	Keys       [][]byte
	Bind       string // private NIC address
	Port       int    // memberlist port
	ProbePort  int    // fast heartbeat port
	BackupBind string // optional second path
	Join       []string
	Profile    Profile
	ReapAfter  time.Duration
	Config     map[string]string // hashes of shared config sections
	Version    string            // this build's version, announced to the others
	// OptionalConfig names the sections a node may leave out.
	OptionalConfig map[string]bool
	Healthy        bool
	// Boot is this run's incarnation: it must be greater than every
	// earlier run's, or peers take this run's heartbeats for replays
	// (statefile.NextIncarnation keeps it growing). Zero means the current
	// time.
	Boot int64
	// Realtime runs the heartbeat's loops on SCHED_RR threads (Linux).
	Realtime bool
	Logger   *slog.Logger
	// OnEvent is called for every event, in order, from one goroutine.
	OnEvent func(Event)
}

// EventType names an event (vocab's type: one vocabulary).
type EventType = vocab.EventType

// Event types raised by membership.
const (
	EventJoined         = vocab.NodeJoined
	EventFailed         = vocab.NodeFailed
	EventLeft           = vocab.NodeLeft
	EventDraining       = vocab.NodeDraining
	EventDrained        = vocab.NodeDrained
	EventResumed        = vocab.NodeResumed
	EventUnhealthy      = vocab.NodeUnhealthy
	EventHealthy        = vocab.NodeHealthy
	EventConfigMismatch = vocab.ConfigMismatch
	EventRefused        = vocab.NodeRefused
	EventPathDown       = vocab.PathDown
	EventPathUp         = vocab.PathUp
	EventUnreachable    = vocab.NodeUnreachable
	EventReachable      = vocab.NodeReachable
)

// Event is one membership change.
type Event struct {
	Time   time.Time
	Type   EventType
	Node   string
	Detail string
}

// Member is a snapshot of one member, this node included.
type Member struct {
	Name     string
	Addr     string
	Backup   string
	Priority int
	State    State
	Healthy  bool
	// Paths says which heartbeat paths reach the member ("private",
	// "backup"); for this node, which of its own paths hear anyone.
	Paths    map[string]bool
	Mismatch []string // shared config sections that differ from ours
	Version  string   // the member's build ("" from a release before versions were announced)
	Proto    int      // the cluster protocol it speaks
	Since    time.Time
	Changes  uint64
	Ext      map[string]string
	Self     bool
	// MetaAt is when this node last took the member's metadata from a
	// fresh heartbeat: a node back from a pause waits for metadata newer
	// than its pause before it trusts what peers announce.
	MetaAt time.Time
	// Unheard: this node hears nothing from the member on any path, but
	// another member does, so it stays in the cluster (reach.go).
	Unheard bool
	// Cut: left out of the cluster by agreement because it and another
	// live member cannot hear each other (for this node itself: also
	// when a member it hears has failed it). A cut member takes no new
	// flows; its buckets go to the others once it has let go.
	Cut bool
	// Contested: failed by a vote in which another member still heard
	// it. It may be alive (cut off from the majority one way) and stops
	// serving only once it reads that it was failed, a packet later: its
	// buckets are taken a Settle later, not at once.
	Contested bool
}

const (
	pathPrivate = 0
	pathBackup  = 1
)

var pathNames = [2]string{"private", "backup"}

type peer struct {
	name     string
	addr     netip.Addr
	mlPort   int
	meta     Meta
	metaV    uint64
	state    State
	seen     [2]time.Time
	pathUp   [2]bool
	since    time.Time
	changes  uint64
	mismatch []string
	mlAlive  bool
	joinTry  time.Time
	interval time.Duration // the peer's announced heartbeat interval
	backup   netip.Addr    // meta.Backup parsed; invalid if the peer has no backup path
	// Freshness of its heartbeats (see admit): the newest incarnation
	// heard, the last sequence number taken per path and overall, and the
	// incarnation in which it left.
	boot     int64
	lastSeq  [2]uint64
	maxSeq   uint64
	leftBoot int64
	metaAt   time.Time // last fresh heartbeat that carried metadata
	msgSeq   uint64    // the last datagram message taken (datagram.go)
	// Reachability (reach.go). deaf: silent on every path for a timeout
	// (since deafSince); the member stays in the cluster while another
	// member hears it. unheard and down: the lists of its latest fresh
	// heartbeat, unheard with when this node first saw each name in it.
	deaf      bool
	deafSince time.Time
	contested bool // failed by a vote in which a member still heard it
	unheard   map[string]time.Time
	down      map[string]time.Time
}

// setMeta takes new metadata and what derives from it.
func (p *peer) setMeta(meta Meta) {
	if meta.Boot > p.boot {
		p.newIncarnation(meta.Boot)
	}
	p.meta = meta
	p.backup, _ = netip.ParseAddr(meta.Backup)
}

// newIncarnation starts counting a restarted peer's heartbeats afresh.
func (p *peer) newIncarnation(boot int64) {
	p.boot, p.lastSeq, p.maxSeq, p.msgSeq = boot, [2]uint64{}, 0, 0
}

// Membership is this node's view of the cluster.
type Membership struct {
	opts   Options
	log    *slog.Logger
	sealer *sealer
	ml     *memberlist.Memberlist
	ring   *memberlist.Keyring
	conns  [2]*net.UDPConn
	// batch and senders: the same sockets with batched I/O (batch.go).
	batch   [2]batchConn
	senders [2]*sender
	// verdicts this node, a watcher, repeats in its rounds (prober.go).
	verdicts []verdict
	msgSeq   uint64 // datagram messages sent (datagram.go)

	mu           sync.Mutex
	meta         Meta
	metaV        uint64
	since        time.Time
	changes      uint64
	peers        map[string]*peer
	refused      map[string]string // "name@addr" -> reason
	problems     map[string]string // our own problems, by kind
	mergeRefusal string
	handlers     map[vocab.MsgKind]*handler
	ctr          counters
	joining      bool
	pauseTill    time.Time
	lastCheck    time.Time
	seq          uint64
	interval     time.Duration // our current send interval
	metaChanged  time.Time
	started      context.Context // set by Start: handlers added later start at once

	// Reachability (reach.go): the members left out by agreement (this
	// node among them when it is); reachAll: this node's lists changed.
	cut      map[string]bool
	reachAll bool            // the next round goes to every member
	tell     map[string]bool // members the next round goes to whatever their rate
	// strangers: addresses of unknown senders of sealed heartbeats, for
	// memberlist to join (noteStrangerLocked); joinNow kicks joinLoop.
	strangers map[netip.Addr]*stranger
	joinNow   chan struct{}

	events     chan Event
	gossipMeta chan struct{} // kicks metaLoop
	sendNow    chan struct{} // kicks sendLoop: a round out of turn
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
	rtWarn     sync.Once
}

// New checks the options; Start opens the sockets and joins.
func New(o Options) (*Membership, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Profile.Interval == 0 {
		o.Profile = ProfileLAN
	}
	if o.ReapAfter == 0 {
		o.ReapAfter = time.Hour
	}
	if o.Boot == 0 {
		o.Boot = time.Now().UnixNano()
	}
	s, err := newSealer(o.Cluster, o.Keys)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	m := &Membership{
		opts:        o,
		log:         o.Logger,
		sealer:      s,
		peers:       map[string]*peer{},
		refused:     map[string]string{},
		problems:    map[string]string{},
		events:      make(chan Event, 1024),
		gossipMeta:  make(chan struct{}, 1),
		sendNow:     make(chan struct{}, 1),
		tell:        map[string]bool{},
		strangers:   map[netip.Addr]*stranger{},
		joinNow:     make(chan struct{}, 1),
		since:       now,
		metaChanged: now.Add(time.Second), // full heartbeats for the first 2 s
		meta: Meta{
			Priority:  o.Priority,
			State:     StateJoining,
			Healthy:   o.Healthy,
			Backup:    o.BackupBind,
			ProbePort: o.ProbePort,
			Boot:      o.Boot,
			Config:    o.Config,
			Version:   truncate(o.Version, MaxVersionLen),
			Proto:     ProtocolVersion,
		},
	}
	m.Handle(vocab.MsgForget, func(body []byte) {
		if err := m.forgetLocal(string(body)); err == nil {
			m.log.Info("forgot a member at a peer's request", slog.String("node", string(body)))
		}
	})
	return m, nil
}

// Start opens the heartbeat sockets, starts memberlist and joins in the
// background (retrying until it succeeds, so nodes may start in any order).
func (m *Membership) Start(ctx context.Context) error {
	ctx, m.cancel = context.WithCancel(ctx)
	var err error
	m.conns[pathPrivate], err = listenUDP(m.opts.Bind, m.opts.ProbePort)
	if err != nil {
		return fmt.Errorf("opening heartbeat socket on the private NIC: %w", err)
	}
	if m.opts.BackupBind != "" {
		m.conns[pathBackup], err = listenUDP(m.opts.BackupBind, m.opts.ProbePort)
		if err != nil {
			m.conns[pathPrivate].Close()
			return fmt.Errorf("opening heartbeat socket on the backup path: %w", err)
		}
	}
	for i, c := range m.conns {
		if c != nil {
			m.batch[i] = newBatchConn(c)
			m.senders[i] = newSender(m.batch[i])
		}
	}
	ring, err := memberlist.NewKeyring(m.opts.Keys, m.opts.Keys[0])
	if err != nil {
		m.closeConns()
		return fmt.Errorf("loading cluster keys: %w", err)
	}
	c := memberlist.DefaultLANConfig()
	c.Name = m.opts.Name
	c.BindAddr = m.opts.Bind
	c.BindPort = m.opts.Port
	c.AdvertiseAddr = m.opts.Bind
	c.AdvertisePort = m.opts.Port
	// The label is authenticated with every packet: a node of another
	// cluster is dropped, and both sides log why.
	c.Label = "clusterd/" + m.opts.Cluster
	c.Keyring = ring
	m.ring = ring
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true
	// memberlist's own failure detector only drives its gossip here; the
	// fast heartbeat decides "failed". Quicker than the LAN defaults so its
	// view (and so metadata gossip) follows ours closely.
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 300 * time.Millisecond
	c.GossipInterval = 100 * time.Millisecond
	c.PushPullInterval = 10 * time.Second
	c.DeadNodeReclaimTime = 10 * time.Second
	c.TCPTimeout = 2 * time.Second
	c.Logger = newMemberlistLogger(m.log)
	d := &delegate{m: m}
	c.Delegate = d
	c.Events = d
	c.Conflict = d
	c.Alive = d
	c.Merge = d
	m.ml, err = memberlist.Create(c)
	if err != nil {
		m.closeConns()
		return fmt.Errorf("starting memberlist on %s:%d: %w", m.opts.Bind, m.opts.Port, err)
	}
	for i, c := range m.conns {
		if c != nil {
			m.goRun(func() { m.realtime(); m.recvLoop(ctx, i) })
		}
	}
	m.goRun(func() { m.realtime(); m.sendLoop(ctx) })

	m.goRun(func() { m.realtime(); m.checkLoop(ctx) })
	m.goRun(func() { m.joinLoop(ctx) })
	m.goRun(func() { m.dispatch(ctx) })
	m.goRun(func() { m.metaLoop(ctx) })
	m.mu.Lock()
	for _, h := range m.handlers {
		m.goRun(func() { h.run(ctx) })
	}
	m.started = ctx
	m.mu.Unlock()
	return nil
}

// realtime puts the calling heartbeat loop on a real-time thread if
// configured; failing that it runs at normal priority and says so once.
func (m *Membership) realtime() {
	if !m.opts.Realtime {
		return
	}
	if err := lockRealtime(); err != nil {
		m.rtWarn.Do(func() {
			m.log.Warn("heartbeat runs without real-time scheduling: a saturated CPU may delay it", slog.Any("error", err))
		})
	}
}

func (m *Membership) goRun(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

func listenUDP(addr string, port int) (*net.UDPConn, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port))))
}

func (m *Membership) closeConns() {
	for _, c := range m.conns {
		if c != nil {
			c.Close()
		}
	}
}

// Close leaves the cluster gracefully: peers see this node as left, not
// failed. It is bounded in time and idempotent.
func (m *Membership) Close() error {
	var errs []error
	m.closeOnce.Do(func() {
		if m.ml != nil {
			m.SetState(StateLeft)
			// Heartbeats are what peers judge by; three of them cover a
			// lost packet. memberlist's leave follows for its own view.
			for i := 0; i < 3; i++ {
				m.sendHeartbeats(time.Now())
				time.Sleep(5 * time.Millisecond)
			}
			if err := m.ml.Leave(time.Second); err != nil {
				// The heartbeats above already told the peers; memberlist's
				// own broadcast timing out (peers unreachable) is no failure.
				m.log.Warn("leaving the cluster", slog.Any("error", err))
			}
			if err := m.ml.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("stopping memberlist: %w", err))
			}
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.closeConns()
		m.wg.Wait()
	})
	return errors.Join(errs...)
}

// SetState changes this node's announced state (active, draining...).
func (m *Membership) SetState(s State) { m.setState(s, nil) }

// setState changes the announced state to s, if only (when given) accepts
// the current one.
func (m *Membership) setState(s State, only func(State) bool) {
	m.updateMeta(func(meta *Meta) bool {
		if meta.State == s || only != nil && !only(meta.State) {
			return false
		}
		meta.State = s
		m.since = time.Now()
		m.changes++
		return true
	})
}

// State is this node's own state.
func (m *Membership) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta.State
}

// SetHealthy announces this node's health-check verdict.
func (m *Membership) SetHealthy(h bool) {
	m.updateMeta(func(meta *Meta) bool {
		if meta.Healthy == h {
			return false
		}
		meta.Healthy = h
		return true
	})
}

// SetExt announces a small piece of another component's state.
func (m *Membership) SetExt(key, value string) {
	m.updateMeta(func(meta *Meta) bool {
		if value == "" {
			// Empty: the key goes (it would still cost its bytes).
			if _, ok := meta.Ext[key]; !ok {
				return false
			}
			delete(meta.Ext, key)
			return true
		}
		if meta.Ext[key] == value {
			return false
		}
		if meta.Ext == nil {
			meta.Ext = map[string]string{}
		}
		meta.Ext[key] = value
		return true
	})
}

// SetConfig announces new shared-config hashes (after a reload).
func (m *Membership) SetConfig(h map[string]string) {
	m.updateMeta(func(meta *Meta) bool {
		meta.Config = h
		return true
	})
	m.mu.Lock()
	for _, p := range m.peers {
		m.checkMismatchLocked(p)
	}
	m.mu.Unlock()
}

// SetKeys installs new cluster keys (key rotation): keys[0] encrypts from
// now on, all of them decrypt.
func (m *Membership) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("no cluster key")
	}
	if err := m.sealer.setKeys(keys); err != nil {
		return err
	}
	ring := m.ring
	for _, k := range keys {
		if err := ring.AddKey(k); err != nil {
			return fmt.Errorf("installing cluster key: %w", err)
		}
	}
	if err := ring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("switching to the first cluster key: %w", err)
	}
	keep := map[string]bool{}
	for _, k := range keys {
		keep[string(k)] = true
	}
	for _, k := range ring.GetKeys() {
		if !keep[string(k)] {
			if err := ring.RemoveKey(k); err != nil {
				return fmt.Errorf("removing an old cluster key: %w", err)
			}
		}
	}
	return nil
}

func (m *Membership) updateMeta(f func(*Meta) bool) {
	m.mu.Lock()
	old := m.meta.clone()
	changed := f(&m.meta)
	if b, err := m.meta.encode(); changed && (err != nil || len(b) > MetaLimit) {
		// Peers would refuse the whole node: keep announcing the last
		// metadata that fits. validate's budget check makes this a bug.
		m.meta = old
		changed = false
		why := fmt.Sprintf("node metadata would be %d bytes, over memberlist's %d: a change was not announced (a bug: clusterd validate checks the budget)", len(b), MetaLimit)
		if m.problems["meta"] != why {
			m.problems["meta"] = why
			m.log.Error("node metadata over budget", slog.Int("size", len(b)), slog.Int("limit", MetaLimit))
		}
	}
	if changed {
		m.metaV++
		m.metaChanged = time.Now()
	}
	ml := m.ml
	m.mu.Unlock()
	if changed && ml != nil {
		m.sendHeartbeats(time.Now()) // tell peers now rather than at the next tick
		// memberlist's own copy follows through one owned worker; changes
		// that come while it is busy fold into its next round.
		select {
		case m.gossipMeta <- struct{}{}:
		default:
		}
	}
}

// Members returns every known member, this node first, then by priority.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	self := Member{
		Name: m.opts.Name, Addr: m.opts.Bind, Backup: m.opts.BackupBind,
		Priority: m.meta.Priority, State: m.meta.State, Healthy: m.meta.Healthy,
		Version: m.meta.Version, Proto: m.meta.proto(),
		Since: m.since, Changes: m.changes, Ext: maps.Clone(m.meta.Ext), Self: true,
		Paths: map[string]bool{}, Cut: m.cut[m.opts.Name],
	}
	// Our own path is up if it hears any peer (or there is no peer yet).
	for i, c := range m.conns {
		if c == nil {
			continue
		}
		up := len(m.peers) == 0
		for _, p := range m.peers {
			if !p.state.Down() && now.Sub(p.seen[i]) < m.opts.Profile.TimeoutFor(p.interval) {
				up = true
			}
		}
		self.Paths[pathNames[i]] = up
	}
	out := []Member{self}
	var rest []Member
	for _, p := range m.peers {
		mem := Member{
			Name: p.name, Addr: p.addr.String(), Backup: p.meta.Backup,
			Priority: p.meta.Priority, State: p.state, Healthy: p.meta.Healthy,
			Version: p.meta.Version, Proto: p.meta.proto(),
			Since: p.since, Changes: p.changes, Ext: maps.Clone(p.meta.Ext),
			Mismatch: append([]string(nil), p.mismatch...), Paths: map[string]bool{}, MetaAt: p.metaAt,
			Unheard: p.deaf && !p.state.Down(), Cut: m.cut[p.name], Contested: p.state == StateFailed && p.contested,
		}
		for i := range m.conns {
			if m.hasPath(p, i) {
				mem.Paths[pathNames[i]] = p.pathUp[i] && !p.state.Down()
			}
		}
		rest = append(rest, mem)
	}
	sort.Slice(rest, func(i, j int) bool {
		if rest[i].Priority != rest[j].Priority {
			return rest[i].Priority < rest[j].Priority
		}
		return rest[i].Name < rest[j].Name
	})
	return append(out, rest...)
}

// Problems lists what stops this node from being a full member (refused
// for a duplicate name or priority, nobody reachable) and which other
// nodes this node refused.
func (m *Membership) Problems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.problems {
		out = append(out, p)
	}
	for who, why := range m.refused {
		out = append(out, fmt.Sprintf("refused %s: %s", who, why))
	}
	out = append(out, m.reachProblemsLocked()...)
	sort.Strings(out)
	return out
}

// Forget removes a failed or left member from the list at once, on this
// node and on every other member it can reach.
func (m *Membership) Forget(name string) error {
	if err := m.forgetLocal(name); err != nil {
		return err
	}
	msg := append([]byte{byte(vocab.MsgForget)}, name...)
	for _, n := range m.ml.Members() {
		if n.Name != m.opts.Name {
			if err := m.ml.SendReliable(n, msg); err != nil {
				m.log.Warn("telling a member to forget", slog.String("node", n.Name), slog.Any("error", err))
			}
		}
	}
	return nil
}

// Handle registers f for user messages of kind (>= 16; lower kinds are
// membership's own). Messages are encrypted and authenticated with the
// cluster key like all gossip.
func (m *Membership) Handle(kind vocab.MsgKind, f func(body []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handlers == nil {
		m.handlers = map[vocab.MsgKind]*handler{}
	}
	if _, ok := m.handlers[kind]; ok {
		m.log.Error("a second handler for a message kind is ignored (a bug)", slog.Int("kind", int(kind)))
		return
	}
	h := &handler{f: f, q: make(chan []byte, 64)}
	m.handlers[kind] = h
	if m.started != nil {
		m.goRun(func() { h.run(m.started) })
	}
}

// Send delivers a user message to a member over memberlist's reliable
// (TCP) channel.
func (m *Membership) Send(node string, kind vocab.MsgKind, body []byte) error {
	for _, n := range m.ml.Members() {
		if n.Name == node {
			return m.ml.SendReliable(n, append([]byte{byte(kind)}, body...))
		}
	}
	return fmt.Errorf("%w %q (or it is not reachable now)", ErrUnknownNode, node)
}

// ErrUnknownNode is returned for a node name nobody knows.
var ErrUnknownNode = errors.New("unknown node")

func (m *Membership) forgetLocal(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[name]
	if !ok {
		if name == m.opts.Name {
			return fmt.Errorf("node %s is this node: stop it (SIGTERM) instead", name)
		}
		return fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	if !p.state.Down() {
		return fmt.Errorf("node %s is %s: only failed or left members can be forgotten", name, p.state)
	}
	delete(m.peers, name)
	return nil
}

func (m *Membership) emit(t EventType, node, detail string) {
	e := Event{Time: time.Now(), Type: t, Node: node, Detail: detail}
	lvl := slog.LevelInfo
	if t == EventFailed || t == EventRefused || t == EventConfigMismatch || t == EventPathDown || t == EventUnhealthy {
		lvl = slog.LevelWarn
	}
	m.log.Log(context.Background(), lvl, string(t), slog.String("node", node), slog.String("detail", detail))
	select {
	case m.events <- e:
	default:
		// The event log and traps are behind; the line above is still in
		// the journal.
		m.log.Warn("event queue full: this event is not in clusterctl events or SNMP", slog.String("type", string(t)), slog.String("node", node))
	}
}

// metaLoop gossips this node's changed metadata through memberlist, one
// update at a time.
func (m *Membership) metaLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.gossipMeta:
			// A short wait for the broadcast: Close joins this loop, and
			// the heartbeats carry the metadata anyway.
			if err := m.ml.UpdateNode(100 * time.Millisecond); err != nil {
				m.log.Debug("gossiping node metadata", slog.Any("error", err))
			}
		}
	}
}

// run delivers one kind's messages in arrival order until ctx ends.
func (h *handler) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-h.q:
			h.f(body)
		}
	}
}

func (m *Membership) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.events:
			if m.opts.OnEvent != nil {
				m.opts.OnEvent(e)
			}
		}
	}
}

// joinLoop joins the configured peers, retrying until one answers; after
// Profile.JoinTimeout without an answer this node forms the cluster alone.
// It also re-joins members that the fast heartbeat hears but memberlist
// has dropped (a mended cable), since memberlist does not retry the dead.
func (m *Membership) joinLoop(ctx context.Context) {
	start := time.Now()
	var targets []string
	for _, j := range m.opts.Join {
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			host, port = j, strconv.Itoa(m.opts.Port)
		}
		if host == m.opts.Bind && port == strconv.Itoa(m.opts.Port) {
			continue
		}
		targets = append(targets, net.JoinHostPort(host, port))
	}
	joined := false
	markJoined := func(how string) {
		if !joined {
			joined = true
			m.log.Info(how, slog.Int("members", m.ml.NumMembers()))
			// A drain restored from state_dir stays; only joining turns active.
			m.setState(StateActive, func(cur State) bool { return cur == StateJoining })
		}
	}
	if len(targets) == 0 {
		markJoined("no peers to join: this node forms the cluster")
	}
	var lastLog time.Time
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if len(targets) > 0 && m.ml.NumMembers() <= 1 {
			n, err := m.join(targets)
			if n > 0 {
				m.mu.Lock()
				delete(m.problems, "join")
				m.mu.Unlock()
				markJoined("joined the cluster")
			} else {
				if time.Since(lastLog) > 30*time.Second {
					m.log.Warn("no peer answered the join; retrying", slog.Any("peers", targets), slog.Any("error", err))
					lastLog = time.Now()
				}
				m.mu.Lock()
				if _, refused := m.problems["refused"]; !refused {
					m.problems["join"] = fmt.Sprintf("no peer answered the join (%v): check the network and the cluster key", targets)
				}
				m.mu.Unlock()
				if !joined && time.Since(start) > m.opts.Profile.JoinTimeout {
					markJoined("no peer answered within the join timeout: this node forms the cluster alone and keeps trying")
				}
			}
		} else if len(targets) > 0 {
			m.mu.Lock()
			delete(m.problems, "join")
			m.mu.Unlock()
			markJoined("joined the cluster")
		}
		m.rejoinHeard()
		select {
		case <-ctx.Done():
			return
		case <-m.joinNow:
		case <-t.C:
		}
	}
}

// join is memberlist's Join that also learns whether one of the members
// it met refused us (a duplicate name or priority), even if another one
// accepted us.
func (m *Membership) join(addrs []string) (int, error) {
	m.mu.Lock()
	m.joining, m.mergeRefusal = true, ""
	m.mu.Unlock()
	n, err := m.ml.Join(addrs)
	m.mu.Lock()
	m.joining = false
	m.mu.Unlock()
	m.selfRefused()
	return n, err
}

// strangerTargetsLocked: the strangers' memberlist addresses to join now
// (each every 2 s, for strangerFor); a stranger that became a member, or
// was tried long enough, is dropped.
func (m *Membership) strangerTargetsLocked(now time.Time) []string {
	var out []string
	for a, st := range m.strangers {
		known := false
		for _, p := range m.peers {
			if p.addr == a {
				known = true
			}
		}
		if known || now.Sub(st.first) > strangerFor {
			delete(m.strangers, a)
			continue
		}
		if now.Sub(st.tried) > 2*time.Second {
			st.tried = now
			out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(m.opts.Port)))
		}
	}
	return out
}

// rejoinHeard re-joins, through memberlist, members that the heartbeat
// hears but memberlist has dropped, and the senders of sealed heartbeats
// it does not know; and reaps long-gone members.
func (m *Membership) rejoinHeard() {
	alive := map[string]bool{}
	for _, n := range m.ml.Members() {
		alive[n.Name] = true
	}
	now := time.Now()
	var addrs []string
	m.mu.Lock()
	for name, p := range m.peers {
		p.mlAlive = alive[name]
		if p.state.Down() && now.Sub(p.since) > m.opts.ReapAfter {
			m.log.Info("reaping a member gone for longer than heartbeat.reap_after", slog.String("node", name))
			delete(m.peers, name)
			continue
		}
		if !p.state.Down() && !p.mlAlive && now.Sub(p.joinTry) > 2*time.Second {
			p.joinTry = now
			addrs = append(addrs, net.JoinHostPort(p.addr.String(), strconv.Itoa(p.mlPort)))
		}
	}
	addrs = append(addrs, m.strangerTargetsLocked(now)...)
	m.mu.Unlock()
	for _, a := range addrs {
		if _, err := m.join([]string{a}); err != nil {
			m.log.Debug("re-joining a member heard on the heartbeat", slog.String("addr", a), slog.Any("error", err))
		}
	}
}

// hasPath says whether a peer can be reached on path i (both ends must
// have it).
func (m *Membership) hasPath(p *peer, i int) bool {
	if m.conns[i] == nil {
		return false
	}
	return i == pathPrivate || p.backup.IsValid()
}

func (m *Membership) checkMismatchLocked(p *peer) {
	mm := mismatch(m.meta.Config, p.meta.Config, m.opts.OptionalConfig)
	if len(p.meta.Config) == 0 {
		mm = nil
	}
	if !slices.Equal(mm, p.mismatch) {
		p.mismatch = mm
		if len(mm) > 0 {
			m.emit(EventConfigMismatch, p.name, fmt.Sprintf("shared settings differ from this node's: %v", mm))
		}
	}
}

// halt stops without leaving, as kill -9 would (tests only).
func (m *Membership) halt() {
	m.closeOnce.Do(func() {
		m.ml.Shutdown()
		m.cancel()
		m.closeConns()
		m.wg.Wait()
	})
}
