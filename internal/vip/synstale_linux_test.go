package vip

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// tcpSegment is a TCP header from the client's port sport to port 80 with
// the given sequence numbers and flags (checksum left to ipFrame).
func tcpSegment(sport uint16, seq, ack uint32, flags byte) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	return tcp
}

// segmentFrom waits up to d for a TCP segment from the VIP's port 80 to
// the client's port sport and returns its sequence number and flags.
func (x *lan) segmentFrom(sport uint16, d time.Duration) (seq uint32, flags byte, ok bool) {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(d)
	for {
		x.conn.SetReadDeadline(deadline)
		n, _, err := x.conn.ReadFrom(buf)
		if err != nil {
			return 0, 0, false
		}
		f := buf[:n]
		if n < 54 || f[14+9] != 6 || netip.AddrFrom4([4]byte(f[14+12:14+16])) != testVIP.Addr() ||
			binary.BigEndian.Uint16(f[34:]) != 80 || binary.BigEndian.Uint16(f[36:]) != sport {
			continue
		}
		return binary.BigEndian.Uint32(f[38:]), f[34+13], true
	}
}

// TestDatapathSYNIgnoresConntrack: a bare SYN is a new connection even when
// conntrack holds an established entry for its addresses and ports (a
// flow cut by a fault whose FIN or RST never arrived lingers so for days;
// a client that reuses the port later, or resends its SYN after the
// bucket moved). conntrack ignores such a SYN and marks it established;
// before, the established rule let it through, and a node that did not own
// the bucket answered it alongside the owner (a reset). The flow's other
// packets still pass without the bucket.
func TestDatapathSYNIgnoresConntrack(t *testing.T) {
	x := newLAN(t)
	plan := testPlan("multicast", "none")
	dp := armedDatapath(t, plan)
	l, err := net.Listen("tcp4", testVIP.Addr().String()+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	const sport = 42424
	b := uint32(Bucket("none", netip.AddrPortFrom(testClient, sport), testSeed, TableSize))
	own := func(bs ...uint32) {
		t.Helper()
		if err := dp.Apply(Ownership{Owned: map[[2]int][]uint32{{0, 0}: bs}}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(seq, ack uint32, flags byte) {
		x.send(ipFrame(plan.MAC, x.srcMAC, testClient, testVIP.Addr(), 6, tcpSegment(sport, seq, ack, flags)))
	}

	// The handshake while this node owns the bucket.
	own(b)
	const iss = 1000
	send(iss, 0, 0x02)
	srvSeq, flags, ok := x.segmentFrom(sport, time.Second)
	if !ok || flags&0x12 != 0x12 {
		t.Fatalf("the owner did not answer the SYN with a SYN-ACK (got flags %#x, %v)", flags, ok)
	}
	send(iss+1, srvSeq+1, 0x10)
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("the handshake did not complete")
	}

	// The bucket moves to another node; the flow's conntrack entry stays.
	own()
	seg := append(tcpSegment(sport, iss+1, srvSeq+1, 0x18), 'x') // PSH|ACK, one byte
	x.send(ipFrame(plan.MAC, x.srcMAC, testClient, testVIP.Addr(), 6, seg))
	if _, _, ok := x.segmentFrom(sport, time.Second); !ok {
		t.Fatal("an established flow's data was not taken once its bucket moved")
	}
	// A new SYN on the same ports: the node no longer owns the bucket
	// and must not answer.
	send(iss+50000, 0, 0x02)
	if _, flags, ok := x.segmentFrom(sport, 500*time.Millisecond); ok {
		t.Fatalf("a SYN whose bucket another node owns was answered (flags %#x): conntrack's established entry let it through", flags)
	}
}
