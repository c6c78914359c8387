package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// heartbeat is the fast heartbeat's payload (sealed with the cluster key).
type heartbeat struct {
	Name string `json:"n"`
	// Boot is the sender's incarnation and Seq counts its heartbeats
	// within it: together they make every heartbeat unique and ordered, so
	// a captured one replayed later is told apart from a fresh one.
	Boot     int64  `json:"b"`
	Seq      uint64 `json:"q"`
	Interval int64  `json:"i"` // the sender's interval (ms): receivers time it out by it
	V        uint64 `json:"v"` // meta version: a newer one replaces memberlist's copy
	// Meta rides in every 10th heartbeat, and in every one for a second
	// after it changes or the node starts: decoding it is most of a
	// heartbeat's cost.
	Meta *Meta `json:"m,omitempty"`
	// Failed: the members this sender, one of their watchers, found silent
	// for Timeout on every path (verdicts, repeated for verdictFor).
	Failed []verdict `json:"f,omitempty"`
	// Unheard and Down: the members the sender does not hear (reach.go),
	// those it keeps in the cluster because another member hears them,
	// and those it failed. Every heartbeat carries them (usually empty).
	Unheard []string `json:"u,omitempty"`
	Down    []string `json:"d,omitempty"`
}

// verdict says that a watcher heard nothing from a member for Age on any
// path, the last heartbeat it took being Seq of incarnation Boot. A
// receiver fails the member only if it has heard nothing newer itself: a
// member that only its watcher lost (a one-way fault between the two)
// still reaches the others, whose newer sequence numbers refuse the
// verdict.
type verdict struct {
	Name  string    `json:"n"`
	Boot  int64     `json:"b"`
	Seq   uint64    `json:"q"`
	Age   int64     `json:"a"` // ms
	until time.Time // the watcher repeats it until then
}

// Stats counts this membership's fast heartbeats.
type Stats struct {
	Sent, Received uint64
	// Dropped: malformed, wrong key, unknown sender, wrong source address.
	Dropped uint64
	// Stale: authentic but not fresh (a replay, a duplicate, a packet of
	// an earlier incarnation); dropped too, counted apart because a rising
	// count means someone replays captured traffic.
	Stale uint64
	// Unsent: heartbeats this node could not send (an unreachable peer, a
	// path whose socket stayed full for a whole interval).
	Unsent uint64
}

type counters struct{ sent, received, dropped, stale, unsent atomic.Uint64 }

// Stats returns the heartbeat counters, for status and metrics.
func (m *Membership) Stats() Stats {
	return Stats{Sent: m.ctr.sent.Load(), Received: m.ctr.received.Load(), Dropped: m.ctr.dropped.Load(), Stale: m.ctr.stale.Load(), Unsent: m.ctr.unsent.Load()}
}

// errStale marks an authentic heartbeat that is not fresh.
var errStale = errors.New("stale heartbeat")

func (m *Membership) sendLoop(ctx context.Context) {
	t := time.NewTicker(m.opts.Profile.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.sendHeartbeats(now)
		case <-m.sendNow:
			// This node's reachability lists changed: the others
			// must know now, not an interval later (reach.go).
			m.sendHeartbeats(time.Now())
		}
	}
}

// watchersOf is who watches name (its heartbeats every Interval): the w
// members that follow it in the ring of live members ordered by name.
// Every node computes the same ring from the same view; while views differ
// a receiver still times a sender out by the interval each heartbeat
// announces, so a mismatch costs speed, never a false failure.
func watchersOf(name string, live []string, w int) map[string]bool {
	ring := slices.Clone(live)
	slices.Sort(ring)
	i := slices.Index(ring, name)
	out := map[string]bool{}
	for k := 1; k <= w && k < len(ring) && i >= 0; k++ {
		out[ring[(i+k)%len(ring)]] = true
	}
	return out
}

// verdictFor: how long a watcher repeats a verdict in every round to
// every member (several rounds, so that a lost packet does not matter).
const verdictFor = 250 * time.Millisecond

// sendHeartbeats sends one round: a sealed heartbeat to every known member
// on every path, failed members included, so that they are seen again the
// moment a cable is mended — with this node's metadata every time, so that
// the first one after a heal brings this node back on their side (a
// member's state comes with the metadata; without it the two sides of a
// mended split would count each other out for up to ten rounds, each
// answering the flows the other serves). Up to Profile.ScaleAbove live members every
// member gets every round. Above, a member's watchers (watchersOf) get
// every round and the others every ⌈N/ScaleAbove⌉th, each heartbeat
// announcing its interval: a node sends ~(Watchers + ScaleAbove) packets
// per Interval per path whatever N is, and its watchers still notice its
// death within Timeout and tell the others (verdicts).
func (m *Membership) sendHeartbeats(now time.Time) {
	prof := m.opts.Profile
	m.mu.Lock()
	m.seq++
	live := m.liveLocked()
	m.interval = prof.IntervalFor(len(live))
	slowIv := m.interval
	every := uint64(slowIv / prof.Interval)
	var watchers map[string]bool
	if every > 1 {
		watchers = watchersOf(m.opts.Name, live, prof.Watchers)
	}
	m.verdicts = slices.DeleteFunc(m.verdicts, func(v verdict) bool { return now.After(v.until) })
	hb := heartbeat{Name: m.opts.Name, Boot: m.meta.Boot, Seq: m.seq, V: m.metaV, Interval: prof.Interval.Milliseconds()}
	metaFresh := time.Since(m.metaChanged) < time.Second
	var meta *Meta // cloned under the lock, only for a round that sends it
	if m.seq%10 == 0 || metaFresh {
		c := m.meta.clone()
		meta, hb.Meta = &c, &c
	}
	hb.Failed = append(hb.Failed, m.verdicts...)
	hb.Unheard, hb.Down = m.unheardListsLocked()
	// Slow members get this round if it is theirs, or to hear a verdict or
	// metadata that just changed (a leave, a drain, a planned switch), or
	// once when this node's reachability lists changed.
	slowRound := m.seq%every == 0 || len(hb.Failed) > 0 || metaFresh || m.reachAll
	m.reachAll = false
	// to: the destinations by [path][slow][full] (full: the member is
	// failed here, and the metadata goes to it every round).
	var to [2][2][2][]netip.AddrPort
	anySlow, anyFull, anyDst := false, false, false
	for _, p := range m.peers {
		port := uint16(p.meta.ProbePort)
		if port == 0 {
			continue
		}
		slow := every > 1 && !watchers[p.name]
		// A failed member gets every round (announcing the slow interval
		// if it is slow): the first heartbeat after a mended split is the
		// one that ends the double answers (above).
		if slow && !slowRound && !m.tell[p.name] && p.state != StateFailed {
			continue
		}
		full := p.state == StateFailed && hb.Meta == nil
		if full && meta == nil {
			c := m.meta.clone()
			meta = &c
		}
		anySlow, anyFull, anyDst = anySlow || slow, anyFull || full, true
		i, j := b2i(slow), b2i(full)
		to[pathPrivate][i][j] = append(to[pathPrivate][i][j], netip.AddrPortFrom(p.addr, port))
		if m.hasPath(p, pathBackup) {
			to[pathBackup][i][j] = append(to[pathBackup][i][j], netip.AddrPortFrom(p.backup, port))
		}
	}
	clear(m.tell) // under the lock: setPeerStateLocked adds to it
	m.mu.Unlock()
	if !anyDst {
		return
	}
	var pkts [2][2][]byte // [fast, slow][liveness, full]
	for i, slow := range []bool{false, true} {
		if slow && !anySlow {
			continue
		}
		if slow {
			hb.Interval = slowIv.Milliseconds()
		}
		for j, full := range []bool{false, true} {
			if full && !anyFull {
				continue
			}
			h := hb
			if full {
				h.Meta = meta
			}
			b, err := json.Marshal(h)
			if err != nil {
				return
			}
			pkts[i][j] = m.sealer.seal(b)
		}
	}
	// One batch per path and kind: a round is a system call or two. A path
	// whose socket cannot send costs the others at most sendWait
	// (batch.go). Errors (unreachable network during a cable pull) are the
	// normal case for a dead path; silence is what peers judge.
	for path, s := range m.senders {
		if s == nil {
			continue
		}
		for i := range to[path] {
			for j, addrs := range to[path][i] {
				if len(addrs) == 0 {
					continue
				}
				n := s.round(pkts[i][j], addrs, time.Now().Add(sendWait))
				m.ctr.sent.Add(uint64(n))
				m.ctr.unsent.Add(uint64(len(addrs) - n))
			}
		}
	}
}

// b2i is 1 for true: an index into the [false, true] pairs above.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (m *Membership) recvLoop(ctx context.Context, path int) {
	c := m.batch[path]
	r := newReceiver()
	// Coalescing: after a batch, wait a little so that the next read
	// takes what arrived meanwhile in one call; it delays a heartbeat by
	// at most half a check period, which detection does not notice.
	coalesce := m.opts.Profile.Check / 2
	var backoff time.Duration
	handle := func(pkt []byte, from netip.Addr) {
		msg, err := m.handlePacket(path, pkt, from, time.Now())
		if err != nil {
			if errors.Is(err, errStale) {
				m.ctr.stale.Add(1)
			} else {
				m.ctr.dropped.Add(1)
			}
			m.log.Debug("dropping heartbeat", slog.String("from", from.String()), slog.Any("error", err))
			return
		}
		if !msg { // a message (datagram.go) is not a heartbeat
			m.ctr.received.Add(1)
		}
	}
	for {
		err := r.read(c, handle)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A failing socket: back off rather than spin, and say so
			// once per run of failures.
			if backoff == 0 {
				m.log.Warn("reading heartbeats", slog.String("path", pathNames[path]), slog.Any("error", err))
			}
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if coalesce > 0 {
			time.Sleep(coalesce)
		}
	}
}

// handleHeartbeat applies one received heartbeat. It refuses packets that do
// not open with a cluster key, senders it does not know, a known name
// arriving from an address that is not that member's (a duplicate name
// must not keep the real member alive), and packets that are not fresh:
// of an earlier incarnation, or not newer on their path than the last one
// taken (a replay, a duplicate, a reordered packet). A heartbeat older than
// one already taken on the other path still proves the path works but
// changes no state: a heartbeat sent before a leave must not undo it.
func (m *Membership) handleHeartbeat(path int, pkt []byte, from netip.Addr, now time.Time) error {
	_, err := m.handlePacket(path, pkt, from, now)
	return err
}

// handlePacket takes a sealed packet from a heartbeat socket: a heartbeat,
// or a message (msg) riding the same paths (datagram.go).
func (m *Membership) handlePacket(path int, pkt []byte, from netip.Addr, now time.Time) (msg bool, err error) {
	plain, err := m.sealer.open(pkt)
	if err != nil {
		return false, err
	}
	if len(plain) > 0 && plain[0] == msgMagic {
		return true, m.handleMessage(path, plain, from)
	}
	return false, m.takeHeartbeat(path, plain, from, now)
}

// takeHeartbeat applies an opened heartbeat.
func (m *Membership) takeHeartbeat(path int, plain []byte, from netip.Addr, now time.Time) error {
	hb, fast := decodeLiveness(plain)
	if !fast {
		if err := json.Unmarshal(plain, &hb); err != nil {
			return fmt.Errorf("malformed heartbeat: %w", err)
		}
	}
	if hb.Seq == 0 {
		return fmt.Errorf("heartbeat from %q without a sequence number", hb.Name)
	}
	if hb.Boot == 0 && hb.Meta != nil {
		// A sender of the previous release (no incarnation field): its
		// metadata names its incarnation, so it can be upgraded in a
		// rolling upgrade without being taken for failed.
		hb.Boot = hb.Meta.Boot
	}
	if hb.Meta != nil && hb.Meta.Boot != hb.Boot {
		return fmt.Errorf("heartbeat from %q: metadata of incarnation %d in a packet of %d", hb.Name, hb.Meta.Boot, hb.Boot)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[hb.Name]
	if !ok {
		m.noteStrangerLocked(path, hb, from, now)
		return fmt.Errorf("heartbeat from %q, not a member (yet)", hb.Name)
	}
	want := p.addr
	if path == pathBackup {
		want = p.backup
	}
	if from != want {
		return fmt.Errorf("heartbeat for %q from %s, but its %s address is %s", hb.Name, from, pathNames[path], want)
	}
	if hb.Boot == 0 {
		// The previous release's liveness-only heartbeat: of the
		// incarnation this node knows (the sequence still orders it).
		if hb.Boot = p.boot; hb.Boot == 0 {
			return fmt.Errorf("heartbeat from %q without an incarnation", hb.Name)
		}
	}
	fresh, err := p.admit(path, hb.Boot, hb.Seq)
	if err != nil {
		return err
	}
	p.seen[path] = now
	m.heardLocked(p)
	if !p.pathUp[path] {
		p.pathUp[path] = true
		if m.hasPath(p, pathBackup) && !p.state.Down() && !p.since.Equal(now) {
			m.emit(EventPathUp, p.name, pathNames[path]+" path is up")
		}
	}
	if !fresh {
		return nil
	}
	if hb.Interval > 0 {
		p.interval = time.Duration(hb.Interval) * time.Millisecond
	}
	if news := m.takeReachLocked(p, hb.Unheard, hb.Down, now); len(news) > 0 {
		m.rejudgeLocked(news, now)
		if slices.Contains(news, m.opts.Name) && m.reports(p) {
			// A member it hears has failed this node (or no longer hears
			// it): leave itself out now, not at the next check, so that
			// it stops taking new flows before the others take its
			// buckets (they wait only a little for that: vip's
			// failedGrace).
			m.agreeLocked(now)
		}
	}
	for _, v := range hb.Failed {
		m.takeVerdictLocked(hb.Name, v, now)
	}
	if hb.Meta == nil {
		return nil // liveness only; state follows with the next full heartbeat
	}
	p.metaAt = now
	if hb.Meta.Boot != p.meta.Boot || hb.V > p.metaV {
		m.applyMetaLocked(p, *hb.Meta, hb.V, now)
	}
	if p.state.Down() && hb.Meta.State != StateLeft {
		m.setPeerStateLocked(p, hb.Meta.State, now, "heard again")
		if _, ok := p.down[m.opts.Name]; ok && m.reports(p) {
			// Back from a split in which it failed this node: until it
			// hears this node it serves this node's buckets too, so this
			// node leaves itself out now (not at its next check) and
			// takes flows again when the member's list no longer names
			// it — a moment later, as this node's heartbeats carry its
			// metadata to a member it failed.
			m.agreeLocked(now)
		}
	} else if p.state == StateFailed && hb.Meta.State == StateLeft {
		m.setPeerStateLocked(p, StateLeft, now, "")
	}
	return nil
}

// maxStrangers bounds the unknown senders a node remembers to join
// (noteStrangerLocked): a key holder inventing names must not grow it
// without end. Twice the 32 servers a cluster is made for.
const maxStrangers = 64

// stranger: an unknown sender's address, to join through memberlist.
type stranger struct {
	first, tried time.Time
}

// strangerFor: how long a stranger is tried (every 2 s) before it is
// dropped; it is noted again by its next heartbeat.
const strangerFor = 30 * time.Second

// noteStrangerLocked remembers the address of a sender this node does not
// know, from a full heartbeat on the private path, and has memberlist join
// it at once (rejoinHeard). memberlist can leave a node that restarts with
// part of the cluster (it joins through a peer whose memberlist marked
// the others dead during a fault, and memberlist never retries the dead),
// and that node then served every bucket while the others, which still
// send to it, were unknown to it (a chaos run: 250 resets over 4.6 s).
// The heartbeat itself is not trusted to make a member: it may be a
// capture of a member since forgotten, replayed; memberlist's join is a
// live exchange under the cluster key, and its NotifyJoin adds the member.
func (m *Membership) noteStrangerLocked(path int, hb heartbeat, from netip.Addr, now time.Time) {
	if path != pathPrivate || hb.Meta == nil || hb.Name == m.opts.Name || hb.Meta.State == StateLeft {
		return
	}
	if _, known := m.strangers[from]; known || len(m.strangers) >= maxStrangers {
		return
	}
	m.strangers[from] = &stranger{first: now}
	select {
	case m.joinNow <- struct{}{}:
	default:
	}
}

// takeVerdictLocked fails a member on a watcher's verdict, unless this
// node has heard it since the watcher last did (or it is already down, or
// restarted since).
func (m *Membership) takeVerdictLocked(from string, v verdict, now time.Time) {
	q, ok := m.peers[v.Name]
	if !ok || q.state.Down() || q.boot != v.Boot || q.maxSeq > v.Seq {
		return
	}
	m.setPeerStateLocked(q, StateFailed, now, fmt.Sprintf("no heartbeat on any path for %s (seen by %s, which watches it)",
		(time.Duration(v.Age)*time.Millisecond).Round(time.Millisecond), from))
}

// admit checks a heartbeat's freshness and records it. fresh is false for a
// heartbeat that is new on its path but older than one taken on the other
// path. A left member is not revived by its own incarnation: a node that
// left has stopped, and only a restart (a new incarnation) brings it back.
func (p *peer) admit(path int, boot int64, seq uint64) (fresh bool, err error) {
	switch {
	case boot < p.boot:
		return false, fmt.Errorf("%w: %s's incarnation %d, but %d is current", errStale, p.name, boot, p.boot)
	case boot > p.boot:
		p.newIncarnation(boot)
	case seq <= p.lastSeq[path]:
		return false, fmt.Errorf("%w: %s's heartbeat %d on the %s path, %d already taken", errStale, p.name, seq, pathNames[path], p.lastSeq[path])
	case p.state == StateLeft && p.leftBoot == boot:
		// The leave's own repeats, or a late packet: authentic, but
		// nothing in it may change state.
		p.lastSeq[path] = seq
		return false, nil
	}
	p.lastSeq[path] = seq
	if seq <= p.maxSeq {
		return false, nil
	}
	p.maxSeq = seq
	return true, nil
}

// applyMetaLocked takes a member's new metadata and raises the events its
// changes mean.
func (m *Membership) applyMetaLocked(p *peer, meta Meta, v uint64, now time.Time) {
	old := p.meta
	p.setMeta(meta)
	p.metaV = v
	if old.Healthy != meta.Healthy && !p.state.Down() {
		if meta.Healthy {
			m.emit(EventHealthy, p.name, "health checks pass")
		} else {
			m.emit(EventUnhealthy, p.name, "a health check fails")
		}
	}
	if !p.state.Down() && meta.State != p.state {
		m.setPeerStateLocked(p, meta.State, now, "")
	}
	m.checkMismatchLocked(p)
}

func (m *Membership) setPeerStateLocked(p *peer, s State, now time.Time, detail string) {
	old := p.state
	if old == s {
		return
	}
	p.state, p.since = s, now
	p.changes++
	p.contested = false // judgeLocked sets it for a failure it outvoted
	switch {
	case s == StateFailed:
		m.emit(EventFailed, p.name, detail)
		// If it is alive and hears this node (a one-way fault), it must
		// stop serving before this node takes its buckets: tell it now
		// (this node's Down list names it), not an interval later.
		m.tell[p.name] = true
		m.sendSoon()
	case s == StateLeft:
		p.leftBoot = p.boot
		m.emit(EventLeft, p.name, "left the cluster")
	case old.Down():
		m.emit(EventJoined, p.name, fmt.Sprintf("state %s, priority %d", s, p.meta.Priority))
		if old == StateFailed {
			// This node's Down list no longer names it: a member that
			// left itself out on reading it there (a mended split) takes
			// flows again as soon as it hears this, not a round later.
			m.reachChangedLocked()
		}
	case s == StateDraining:
		m.emit(EventDraining, p.name, "takes no new flows")
	case s == StateDrained:
		m.emit(EventDrained, p.name, "no connections left")
	case s == StateActive && (old == StateDraining || old == StateDrained):
		m.emit(EventResumed, p.name, "takes new flows again")
	}
}

// checkLoop fails members whose heartbeat has been silent on every path
// for Profile.Timeout, and tracks each path.
func (m *Membership) checkLoop(ctx context.Context) {
	t := time.NewTicker(m.opts.Profile.Check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.check(time.Now())
		}
	}
}

func (m *Membership) check(now time.Time) {
	prof := m.opts.Profile
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.lastCheck.IsZero() {
		if late := now.Sub(m.lastCheck); late > 2*prof.Check+100*time.Millisecond {
			// We were not running: silence we measured is ours, not theirs.
			m.pauseTill = now.Add(prof.Timeout)
			m.log.Warn("heartbeat checker ran late; not failing anyone for one timeout",
				slog.Duration("late", late), slog.Duration("timeout", prof.Timeout))
		}
	}
	m.lastCheck = now
	type silence struct {
		p    *peer
		last time.Duration
	}
	var silent []silence
	for _, p := range m.peers {
		if p.state.Down() {
			p.pathUp = [2]bool{}
			continue
		}
		anyUp := false
		var last time.Duration = -1
		timeout := prof.TimeoutFor(p.interval)
		for i := range m.conns {
			if !m.hasPath(p, i) {
				continue
			}
			age := now.Sub(p.seen[i])
			up := age < timeout
			if last < 0 || age < last {
				last = age
			}
			if up {
				anyUp = true
			}
			if p.pathUp[i] && !up && now.After(m.pauseTill) {
				p.pathUp[i] = false
				if m.hasPath(p, pathBackup) {
					m.emit(EventPathDown, p.name, fmt.Sprintf("no heartbeat on the %s path for %s", pathNames[i], age.Round(time.Millisecond)))
				}
			}
		}
		if !anyUp && now.After(m.pauseTill) {
			silent = append(silent, silence{p, last})
		}
	}
	// Every silent member is marked first, then each is judged, against
	// the members counted in before any was failed: a node that hears
	// nobody (its own cables pulled) must not take one silent member's
	// word for another's.
	if len(silent) > 0 {
		live := m.liveLocked()
		first := make([]bool, len(silent))
		for i, s := range silent {
			first[i] = !s.p.deaf
			m.deafLocked(s.p, now)
		}
		for i, s := range silent {
			m.judgeLocked(s.p, s.last, live, now, first[i])
		}
	}
	m.agreeLocked(now)
}

// judgeLocked fails a member silent on every path for last, unless the
// vote keeps it (voucherLocked). first: it has just gone silent.
func (m *Membership) judgeLocked(p *peer, last time.Duration, live []string, now time.Time, first bool) {
	prof := m.opts.Profile
	by, outvoted := m.voucherLocked(p, live)
	if by != "" {
		// Silent here only: another member hears it (a one-way fault,
		// or one between these two). It stays; agreement settles the
		// pair (reach.go). When it died, the others time it out too
		// within moments, and it is failed then.
		if first {
			m.log.Warn("no heartbeat from a member on any path, but another member hears it: kept in the cluster",
				slog.String("member", p.name), slog.String("heard_by", by), slog.Duration("silent", last.Round(time.Millisecond)))
		}
		return
	}
	detail := fmt.Sprintf("no heartbeat on any path for %s", last.Round(time.Millisecond))
	if outvoted {
		detail += " (another member still hears it: outvoted)"
	}
	m.setPeerStateLocked(p, StateFailed, now, detail)
	p.contested = outvoted
	if p.interval <= prof.Interval && m.interval > prof.Interval {
		// It sent to this node every Interval, to most others less
		// often: tell them.
		m.verdicts = append(m.verdicts, verdict{Name: p.name, Boot: p.boot, Seq: p.maxSeq, Age: last.Milliseconds(), until: now.Add(verdictFor)})
	}
}
