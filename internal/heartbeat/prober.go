package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
	for {
		m.mu.Lock()
		n := 1
		for _, p := range m.peers {
			if !p.state.Down() {
				n++
			}
		}
		m.interval = m.opts.Profile.IntervalFor(n)
		d := m.interval
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
			m.sendHeartbeats()
		}
	}
}

// sendHeartbeats sends one sealed heartbeat to every known member on every
// path, failed members included, so that they are seen again the moment a
// cable is mended.
func (m *Membership) sendHeartbeats() {
	type dst struct {
		path int
		addr netip.AddrPort
	}
	m.mu.Lock()
	m.seq++
	if m.interval == 0 {
		m.interval = m.opts.Profile.Interval
	}
	hb := heartbeat{Name: m.opts.Name, Boot: m.meta.Boot, Seq: m.seq, V: m.metaV, Interval: m.interval.Milliseconds()}
	if m.seq%10 == 0 || time.Since(m.metaChanged) < time.Second {
		meta := m.meta.clone()
		hb.Meta = &meta
	}
	var dsts []dst
	for _, p := range m.peers {
		port := uint16(p.meta.ProbePort)
		if port == 0 {
			continue
		}
		dsts = append(dsts, dst{pathPrivate, netip.AddrPortFrom(p.addr, port)})
		if m.hasPath(p, pathBackup) {
			dsts = append(dsts, dst{pathBackup, netip.AddrPortFrom(p.backup, port)})
		}
	}
	m.mu.Unlock()
	if len(dsts) == 0 {
		return
	}
	b, err := json.Marshal(hb)
	if err != nil {
		return
	}
	pkt := m.sealer.seal(b)
	// One batch per path: a round is one system call. A path whose socket
	// cannot send costs the others at most sendWait (batch.go). Errors
	// (unreachable network during a cable pull) are the normal case for a
	// dead path; silence is what peers judge.
	for path, s := range m.senders {
		if s == nil {
			continue
		}
		var to []netip.AddrPort
		for _, d := range dsts {
			if d.path == path {
				to = append(to, d.addr)
			}
		}
		if len(to) == 0 {
			continue
		}
		n := s.round(pkt, to, time.Now().Add(sendWait))
		m.ctr.sent.Add(uint64(n))
		m.ctr.unsent.Add(uint64(len(to) - n))
	}
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
		if err := m.handleHeartbeat(path, pkt, from, time.Now()); err != nil {
			if errors.Is(err, errStale) {
				m.ctr.stale.Add(1)
			} else {
				m.ctr.dropped.Add(1)
			}
			m.log.Debug("dropping heartbeat", slog.String("from", from.String()), slog.Any("error", err))
			return
		}
		m.ctr.received.Add(1)
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
	plain, err := m.sealer.open(pkt)
	if err != nil {
		return err
	}
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
	if hb.Meta == nil {
		return nil // liveness only; state follows with the next full heartbeat
	}
	p.metaAt = now
	if hb.Meta.Boot != p.meta.Boot || hb.V > p.metaV {
		m.applyMetaLocked(p, *hb.Meta, hb.V, now)
	}
	if p.state.Down() && hb.Meta.State != StateLeft {
		m.setPeerStateLocked(p, hb.Meta.State, now, "heard again")
	} else if p.state == StateFailed && hb.Meta.State == StateLeft {
		m.setPeerStateLocked(p, StateLeft, now, "")
	}
	return nil
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
	switch {
	case s == StateFailed:
		m.emit(EventFailed, p.name, detail)
	case s == StateLeft:
		p.leftBoot = p.boot
		m.emit(EventLeft, p.name, "left the cluster")
	case old.Down():
		m.emit(EventJoined, p.name, fmt.Sprintf("state %s, priority %d", s, p.meta.Priority))
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
			m.setPeerStateLocked(p, StateFailed, now,
				fmt.Sprintf("no heartbeat on any path for %s", last.Round(time.Millisecond)))
		}
	}
}
