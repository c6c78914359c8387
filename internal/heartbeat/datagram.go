package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/clusterd/clusterd/internal/vocab"
)

// Datagram messages ride the heartbeat sockets: sealed with the cluster
// key like heartbeats, sent on every path at once, twice on each. They are
// for small messages that must arrive within milliseconds even on a lossy
// link: the failover tier's lease reports and verdicts. Over memberlist's
// reliable channel each was a new TCP connection on the private address
// only, and one lost SYN (retransmitted after 1 s) used the whole 1 s
// lease; here a message is lost only if every copy on every path is.
//
// Plaintext: msgMagic, kind, the sender's incarnation (8 bytes) and
// message sequence number (8), its name's length (1) and name, then the
// body. A heartbeat's plaintext opens with '{'.
const (
	msgMagic  = 0x01
	msgHeader = 1 + 1 + 8 + 8 + 1
	// MaxDatagram bounds a datagram message's body: one unfragmented
	// packet on any LAN.
	MaxDatagram = 1200
)

// ErrTooLarge is returned for a datagram body over MaxDatagram.
var ErrTooLarge = errors.New("message too large for a datagram")

// Datagram sends a user message (kind >= 16, handled by Handle like Send's)
// to node on every heartbeat path, twice on each. It does not wait for room
// in a full socket longer than a heartbeat does, and fails only if no copy
// could be sent at all. Receivers take each message once, and only from
// the node it names, in its current incarnation, and newer than the last
// one taken: a replay or a copy that arrives second is dropped.
func (m *Membership) Datagram(node string, kind vocab.MsgKind, body []byte) error {
	if len(body) > MaxDatagram {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(body), MaxDatagram)
	}
	m.mu.Lock()
	p, ok := m.peers[node]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownNode, node)
	}
	port := uint16(p.meta.ProbePort)
	var to [2]netip.AddrPort
	for i := range m.conns {
		if m.hasPath(p, i) && port != 0 {
			a := p.addr
			if i == pathBackup {
				a = p.backup
			}
			to[i] = netip.AddrPortFrom(a, port)
		}
	}
	m.msgSeq++
	seq, boot := m.msgSeq, m.meta.Boot
	m.mu.Unlock()

	name := m.opts.Name
	plain := make([]byte, msgHeader, msgHeader+len(name)+len(body))
	plain[0], plain[1] = msgMagic, byte(kind)
	binary.BigEndian.PutUint64(plain[2:], uint64(boot))
	binary.BigEndian.PutUint64(plain[10:], seq)
	plain[18] = byte(len(name))
	plain = append(append(plain, name...), body...)
	pkt := m.sealer.seal(plain)
	sent := 0
	for i, s := range m.senders {
		if s == nil || !to[i].IsValid() {
			continue
		}
		sent += s.round(pkt, []netip.AddrPort{to[i], to[i]}, time.Now().Add(sendWait))
	}
	if sent == 0 {
		return fmt.Errorf("sending to %s: no path could send", node)
	}
	return nil
}

// handleMessage takes a datagram message (plain opens with msgMagic).
func (m *Membership) handleMessage(path int, plain []byte, from netip.Addr) error {
	if len(plain) < msgHeader || len(plain) < msgHeader+int(plain[18]) {
		return errors.New("malformed message: short")
	}
	kind := vocab.MsgKind(plain[1])
	boot := int64(binary.BigEndian.Uint64(plain[2:]))
	seq := binary.BigEndian.Uint64(plain[10:])
	name := string(plain[msgHeader : msgHeader+int(plain[18])])
	m.mu.Lock()
	p, ok := m.peers[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("message from %q, not a member", name)
	}
	want := p.addr
	if path == pathBackup {
		want = p.backup
	}
	switch {
	case from != want:
		m.mu.Unlock()
		return fmt.Errorf("message for %q from %s, but its %s address is %s", name, from, pathNames[path], want)
	case p.state.Down():
		// A replay of a dead member's messages must not act for it (a
		// lease report renewing its lease); a member back for real is
		// heard again within a heartbeat and its sender retries.
		m.mu.Unlock()
		return fmt.Errorf("%w: message from %s, which is %s", errStale, name, p.state)
	case boot != p.boot:
		m.mu.Unlock()
		return fmt.Errorf("%w: message of %s's incarnation %d, %d is current", errStale, name, boot, p.boot)
	case seq <= p.msgSeq:
		m.mu.Unlock()
		return fmt.Errorf("%w: %s's message %d, %d already taken", errStale, name, seq, p.msgSeq)
	}
	p.msgSeq = seq
	h := m.handlers[kind]
	m.mu.Unlock()
	if h == nil {
		return fmt.Errorf("message of kind %d from %s: no handler", kind, name)
	}
	body := append([]byte(nil), plain[msgHeader+int(plain[18]):]...) // the read buffer is reused
	select {
	case h.q <- body:
	default:
		m.log.Warn("message queue full: dropping a message", slog.Int("kind", int(kind)), slog.String("from", name))
	}
	return nil
}
