package heartbeat

import (
	"net"
	"net/netip"
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

// round is one heartbeat to the peers of one path.
type round struct {
	pkt []byte
	to  []netip.AddrPort
	// by: the round's sends give up then (the next round is due).
	by time.Time
}

// sender sends one path's rounds from a goroutine of its own, so that a
// path whose socket cannot send (a cut NIC: datagrams queue for
// neighbours that never resolve until the socket's buffer is full) never
// holds up another path. A round waits at most until the next one is due;
// a round that finds the sender still busy is not queued.
type sender struct {
	c      batchConn
	rounds chan round
	ms     []ipv4.Message
}

func newSender(c batchConn) *sender {
	return &sender{c: c, rounds: make(chan round, 1)}
}

// offer hands a round to the sender; false if the sender is still busy
// with an earlier one (the round is dropped).
func (s *sender) offer(r round) bool {
	select {
	case s.rounds <- r:
		return true
	default:
		return false
	}
}

// run sends rounds until done closes; sent and unsent count the packets.
func (s *sender) run(done <-chan struct{}, sent, unsent func(int)) {
	for {
		select {
		case <-done:
			return
		case r := <-s.rounds:
			s.c.SetWriteDeadline(r.by)
			n := s.send(r.pkt, r.to)
			sent(n)
			if n < len(r.to) {
				unsent(len(r.to) - n)
			}
		}
	}
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
