package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/vocab"
)

const testKind = vocab.MsgKind(99)

// message is a sealed datagram message from n2 as Datagram builds it.
func (r *replayRig) message(boot int64, seq uint64, kind vocab.MsgKind, body string) []byte {
	plain := make([]byte, msgHeader)
	plain[0], plain[1] = msgMagic, byte(kind)
	binary.BigEndian.PutUint64(plain[2:], uint64(boot))
	binary.BigEndian.PutUint64(plain[10:], seq)
	plain[18] = 2
	plain = append(append(plain, "n2"...), body...)
	return r.sealer.seal(plain)
}

// A datagram message is taken once, from the member it names, at the
// address of the path it came on, in its current incarnation, and only if
// newer than the last one taken: the second copy, a replay, a message of a
// dead member or of another incarnation are dropped as stale.
func TestDatagramFreshness(t *testing.T) {
	r := newReplayRig(t)
	r.join(5)
	q := make(chan []byte, 8)
	r.m.handlers = map[vocab.MsgKind]*handler{testKind: {q: q}}
	now := time.Now()
	got := func() string {
		select {
		case b := <-q:
			return string(b)
		default:
			return ""
		}
	}
	if msg, err := r.m.handlePacket(pathPrivate, r.message(5, 1, testKind, "lease?"), r.addr[0], now); err != nil || !msg || got() != "lease?" {
		t.Fatalf("first message: %v (taken as a message %v: it must not count as a heartbeat received)", err, msg)
	}
	for _, tc := range []struct {
		name  string
		path  int
		pkt   []byte
		from  netip.Addr
		stale bool
	}{
		{"the same message on the other path", pathBackup, r.message(5, 1, testKind, "lease?"), r.addr[1], true},
		{"an older one", pathPrivate, r.message(5, 0, testKind, "old"), r.addr[0], true},
		{"another incarnation", pathPrivate, r.message(4, 9, testKind, "old boot"), r.addr[0], true},
		{"from another address", pathPrivate, r.message(5, 2, testKind, "forged"), netip.MustParseAddr("127.0.0.9"), false},
		{"no handler", pathPrivate, r.message(5, 3, vocab.MsgKind(98), "x"), r.addr[0], false},
	} {
		err := r.m.handleHeartbeat(tc.path, tc.pkt, tc.from, now)
		if err == nil || errors.Is(err, errStale) != tc.stale {
			t.Errorf("%s: %v (stale %v wanted)", tc.name, err, tc.stale)
		}
		if b := got(); b != "" {
			t.Errorf("%s: handler got %q", tc.name, b)
		}
	}
	if err := r.deliver(pathBackup, r.message(5, 7, testKind, "renew"), now); err != nil || got() != "renew" {
		t.Fatalf("a newer message on the backup path: %v", err)
	}
	// A member declared dead: a replay of its messages must not act for
	// it (renew its lease).
	r.m.peers["n2"].state = StateFailed
	if err := r.deliver(pathPrivate, r.message(5, 8, testKind, "zombie"), now); !errors.Is(err, errStale) || got() != "" {
		t.Errorf("message of a failed member: %v", err)
	}
	// Malformed: short, or a name longer than the packet.
	for _, plain := range [][]byte{{msgMagic, 1}, append(make([]byte, msgHeader-1), 200)} {
		plain[0] = msgMagic
		if err := r.m.handleHeartbeat(pathPrivate, r.sealer.seal(plain), r.addr[0], now); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("malformed %x: %v", plain, err)
		}
	}
}

// Two members on loopback: a datagram reaches the other's handler, once
// although it was sent twice; an oversized body and an unknown node are
// refused at the sender.
func TestDatagramBetweenMembers(t *testing.T) {
	key := make([]byte, 32)
	a, _ := newTestNode(t, 31, 1, key)
	b, _ := newTestNode(t, 32, 2, key, "127.0.0.31:17946")
	got := make(chan string, 8)
	b.Handle(testKind, func(body []byte) { got <- string(body) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := a.peerOK("n32"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n32 never joined")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.Datagram("n32", testKind, []byte("report 1")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "report 1" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no datagram arrived")
	}
	select {
	case s := <-got:
		t.Errorf("the second copy was handled too: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
	if err := a.Datagram("n32", testKind, make([]byte, MaxDatagram+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if err := a.Datagram("nobody", testKind, nil); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("unknown node: %v", err)
	}
}

// peerOK reports whether name is a known member with a heartbeat port (a
// Datagram can be sent to it).
func (m *Membership) peerOK(name string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[name]
	if !ok || p.meta.ProbePort == 0 {
		return false, fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	return true, nil
}

// FuzzHandleMessage: any plaintext a keyholder could seal is refused or
// taken, never a panic (a name longer than the packet, a short header).
func FuzzHandleMessage(f *testing.F) {
	f.Add([]byte{msgMagic, 99, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 'n', '2', 'x'})
	f.Add([]byte{msgMagic})
	f.Add([]byte{msgMagic, 1, 2, 3})
	f.Fuzz(func(t *testing.T, plain []byte) {
		r := newReplayRig(t)
		r.join(5)
		r.m.handlers = map[vocab.MsgKind]*handler{testKind: {q: make(chan []byte, 1)}}
		if len(plain) == 0 {
			return
		}
		plain[0] = msgMagic
		r.m.handleMessage(pathPrivate, plain, r.addr[0])
	})
}
