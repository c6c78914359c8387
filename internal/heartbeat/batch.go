package heartbeat

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batched heartbeat I/O: at 32 members a node sends and receives ~1,240
// heartbeats a second per path. One system call (and one goroutine
// wake-up) per packet was most of the agents' CPU and saturated a 2-core
// machine running 32 of them; sendmmsg/recvmmsg (golang.org/x/net's batch
// API; one packet per call where the OS has none) carry a whole round in
// one call.

// maxBatch bounds the packets moved by one call.
const maxBatch = 64

// maxHeartbeat is the largest heartbeat a receive buffer holds: the
// metadata is bounded by memberlist's 512 bytes, far below it.
const maxHeartbeat = 8192

// batchConn is a UDP socket with batch reads and writes.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
	SetWriteDeadline(t time.Time) error
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(c)
	}
	return ipv4.NewPacketConn(c)
}

// sendWait bounds how long one path's send of a round may wait for room
// in its socket: a path that cannot send (a cut NIC: datagrams queue for
// neighbours that never resolve until the socket's buffer is full) then
// costs the other path at most this per round. Sending inline with a bound
// rather than from a goroutine per path: handing each round to a goroutine
// locked to its own real-time thread cost more CPU than the sends (at 32
// members on this 2-core machine, 100 times the false failures).
const sendWait = 2 * time.Millisecond

// sender sends one path's rounds in batches. Rounds come from the send
// loop and from metadata changes (updateMeta, Close): one at a time, as
// they share the message buffers.
type sender struct {
	mu sync.Mutex
	c  batchConn
	ms []ipv4.Message
}

func newSender(c batchConn) *sender { return &sender{c: c} }

// round sends pkt to every address, waiting for room in the socket until
// by at most; it returns how many went out.
func (s *sender) round(pkt []byte, to []netip.AddrPort, by time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.SetWriteDeadline(by)
	return s.send(pkt, to)
}

// send writes pkt to every address, maxBatch at a time, and returns how
// many went out.
func (s *sender) send(pkt []byte, to []netip.AddrPort) int {
	sent := 0
	for len(to) > 0 {
		k := min(len(to), maxBatch)
		if cap(s.ms) < k {
			s.ms = make([]ipv4.Message, maxBatch)
		}
		ms := s.ms[:k]
		for i := range ms {
			ms[i].Buffers = [][]byte{pkt}
			ms[i].Addr = net.UDPAddrFromAddrPort(to[i])
		}
		for off := 0; off < k; {
			n, err := s.c.WriteBatch(ms[off:], 0)
			if err != nil || n == 0 {
				// An unreachable peer (a pulled cable) fails its
				// packet, and a full socket past the round's deadline
				// fails each: skip it and try the rest.
				off++
				continue
			}
			sent += n
			off += n
		}
		to = to[k:]
	}
	return sent
}

// receiver reads heartbeats in batches into reused buffers.
type receiver struct {
	ms []ipv4.Message
}

func newReceiver() *receiver {
	r := &receiver{ms: make([]ipv4.Message, maxBatch)}
	for i := range r.ms {
		r.ms[i].Buffers = [][]byte{make([]byte, maxHeartbeat)}
	}
	return r
}

// read blocks until at least one heartbeat is there and returns them all
// (at most maxBatch): each packet and its sender.
func (r *receiver) read(c batchConn, each func(pkt []byte, from netip.Addr)) error {
	n, err := c.ReadBatch(r.ms, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		m := &r.ms[i]
		ua, ok := m.Addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		each(m.Buffers[0][:m.N], ap.Addr().Unmap())
	}
	return nil
}
