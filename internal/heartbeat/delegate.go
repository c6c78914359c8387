package heartbeat

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/clusterd/clusterd/internal/vocab"
)

// delegate receives memberlist's callbacks. memberlist holds its own locks
// while calling some of them, so they only touch Membership's state.
type delegate struct{ m *Membership }

// NodeMeta is this node's metadata for memberlist's gossip.
func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	b, err := d.m.meta.encode()
	d.m.mu.Unlock()
	if err != nil || len(b) > limit {
		d.m.log.Error("node metadata does not fit memberlist's limit", slog.Int("size", len(b)), slog.Int("limit", limit))
		return nil
	}
	return b
}

// NotifyMsg handles user messages sent with SendReliable.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 1 {
		return
	}
	d.m.mu.Lock()
	h := d.m.handlers[vocab.MsgKind(b[0])]
	d.m.mu.Unlock()
	if h == nil {
		return
	}
	// Handlers may block (they act on the node): not on memberlist's
	// goroutine, but through a bounded queue per kind with one worker each
	// (a slow kind does not hold up lease reports); beyond its bound a
	// message is dropped, and logged.
	select {
	case h.q <- append([]byte(nil), b[1:]...):
	default:
		d.m.log.Warn("message queue full: a cluster message was dropped", slog.Int("kind", int(b[0])))
	}
}

// handler is one message kind's function and queue.
type handler struct {
	f func([]byte)
	q chan []byte
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// NotifyJoin: memberlist met a node. A member we did not know is alive
// from now on (with one heartbeat timeout of grace for its first
// heartbeat); a known one is judged by the heartbeat alone.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	m := d.m
	if n.Name == m.opts.Name {
		return
	}
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("ignoring a node without clusterd metadata", slog.String("node", n.Name), slog.Any("error", err))
		return
	}
	addr, _ := netip.AddrFromSlice(n.Addr)
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[n.Name]
	if !ok {
		p = &peer{name: n.Name, addr: addr.Unmap(), mlPort: int(n.Port), state: meta.State, since: now}
		p.setMeta(meta)
		p.seen = [2]time.Time{now, now}
		p.pathUp = [2]bool{true, true}
		m.peers[n.Name] = p
		p.mlAlive = true
		m.emit(EventJoined, n.Name, fmt.Sprintf("state %s, priority %d, address %s", meta.State, meta.Priority, p.addr))
		m.checkMismatchLocked(p)
		return
	}
	p.mlAlive = true
	p.addr, p.mlPort = addr.Unmap(), int(n.Port)
	if meta.Boot > p.meta.Boot {
		m.applyMetaLocked(p, meta, 0, now)
	}
}

// NotifyLeave: memberlist lost a node. A graceful leave is final; a death
// is only memberlist's opinion, the heartbeat decides.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	m := d.m
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[n.Name]
	if !ok {
		return
	}
	p.mlAlive = false
	if n.State == memberlist.StateLeft && !p.state.Down() {
		m.setPeerStateLocked(p, StateLeft, time.Now(), "")
	}
}

// NotifyUpdate: a node's metadata changed.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return
	}
	m := d.m
	m.mu.Lock()
	defer m.mu.Unlock()
	// A member this node does not hear (a one-way fault) sends no
	// heartbeats here; memberlist's copy, relayed by the others, is the
	// newest there is (a cut member's new tables, so it can be let go).
	if p, ok := m.peers[n.Name]; ok && (meta.Boot > p.meta.Boot || meta.Boot == p.meta.Boot && p.deaf && !p.state.Down()) {
		m.applyMetaLocked(p, meta, 0, time.Now())
	}
}

// NotifyConflict: two nodes claim one name. memberlist keeps the first.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.refuse(other.Name, other.Addr.String(),
		fmt.Sprintf("node name %q is already used by %s", other.Name, existing.Address()))
}

// NotifyAlive refuses a node whose priority another member already has:
// priorities pick the default host and must be unique.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	m := d.m
	if n.Name == m.opts.Name {
		return nil
	}
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("node %s has no clusterd metadata: %w", n.Name, err)
	}
	if reason := protocolClash(n.Name, meta.proto()); reason != "" {
		m.refuse(n.Name, n.Addr.String(), reason)
		return fmt.Errorf("%s", reason)
	}
	if reason := m.priorityClash(n.Name, meta.Priority); reason != "" {
		m.refuse(n.Name, n.Addr.String(), reason)
		return fmt.Errorf("%s", reason)
	}
	return nil
}

// NotifyMerge runs on both sides of a join: a joiner whose name or priority
// is taken is refused, and the reason is logged on both.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	m := d.m
	for _, n := range peers {
		meta, err := decodeMeta(n.Meta)
		if err != nil {
			continue
		}
		if n.Name == m.opts.Name && n.Addr.String() != m.opts.Bind {
			reason := fmt.Sprintf("node name %q is already used by %s: give each node a unique node.name", n.Name, n.Addr)
			m.noteMergeRefusal(reason)
			return fmt.Errorf("%s", reason)
		}
		if n.Name != m.opts.Name {
			if reason := protocolClash(n.Name, meta.proto()); reason != "" {
				m.refuse(n.Name, n.Addr.String(), reason)
				m.noteMergeRefusal(reason)
				return fmt.Errorf("%s", reason)
			}
			if reason := m.priorityClash(n.Name, meta.Priority); reason != "" {
				m.refuse(n.Name, n.Addr.String(), reason)
				m.noteMergeRefusal(reason)
				return fmt.Errorf("%s", reason)
			}
		}
	}
	return nil
}

func (m *Membership) priorityClash(name string, prio int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if prio == m.meta.Priority {
		return fmt.Sprintf("priority %d of %s is already used by %s: give each node a unique node.priority", prio, name, m.opts.Name)
	}
	for _, p := range m.peers {
		if p.name != name && !p.state.Down() && p.meta.Priority == prio {
			return fmt.Sprintf("priority %d of %s is already used by %s: give each node a unique node.priority", prio, name, p.name)
		}
	}
	return ""
}

func (m *Membership) refuse(name, addr, reason string) {
	key := name + "@" + addr
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refused[key] == reason {
		return
	}
	m.refused[key] = reason
	m.emit(EventRefused, name, reason+" (at "+addr+")")
}

// noteMergeRefusal remembers why a merge during our own join was refused:
// then it is we who were refused (NotifyMerge also runs on the
// side that refuses, which must not think itself refused).
func (m *Membership) noteMergeRefusal(reason string) {
	m.mu.Lock()
	if m.joining {
		m.mergeRefusal = reason
	}
	m.mu.Unlock()
}

func (m *Membership) selfRefused() {
	m.mu.Lock()
	defer m.mu.Unlock()
	reason := m.mergeRefusal
	if reason == "" {
		return
	}
	msg := "this node was refused by the cluster: " + reason
	if m.problems["refused"] != msg {
		m.problems["refused"] = msg
		delete(m.problems, "join")
		m.log.Error("refused by the cluster", slog.String("reason", reason))
	}
}
