package heartbeat

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/clusterd/clusterd/internal/testenv"
)

// A round to many peers goes out in batches and arrives whole, each packet
// with its sender; an unreachable address among them costs only its own
// packet.
func TestBatchSendReceive(t *testing.T) {
	testenv.SkipUnderWine(t, testenv.WineLacksUDP)
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var dsts []netip.AddrPort
	for i := 0; i < 2*maxBatch+5; i++ {
		dsts = append(dsts, to)
	}
	// An address nothing can be sent to, in the middle.
	dsts[10] = netip.MustParseAddrPort("[::1]:9")
	s := newSender(newBatchConn(tx))
	sent := s.send([]byte("hello"), dsts)
	if sent != len(dsts)-1 {
		t.Fatalf("sent %d of %d, want all but the unreachable one", sent, len(dsts))
	}
	r := newReceiver()
	got := 0
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	bc := newBatchConn(rx)
	for got < sent {
		err := r.read(bc, func(pkt []byte, from netip.Addr) {
			if string(pkt) != "hello" || from != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("got %q from %s", pkt, from)
			}
			got++
		})
		if err != nil {
			t.Fatalf("after %d packets: %v", got, err)
		}
	}
}

// stuckConn is a socket whose send buffer is full: each write waits for
// the write deadline, as a Go socket does, then fails.
type stuckConn struct {
	mu       sync.Mutex
	deadline time.Time
}

func (c *stuckConn) ReadBatch([]ipv4.Message, int) (int, error) { select {} }
func (c *stuckConn) WriteBatch([]ipv4.Message, int) (int, error) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	time.Sleep(time.Until(d))
	return 0, errDeadline
}
func (c *stuckConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

var errDeadline = &net.OpError{Op: "write", Err: errTimeout{}}

type errTimeout struct{}

func (errTimeout) Error() string { return "i/o timeout" }

// countConn counts what it sends.
type countConn struct{ n atomic.Int64 }

func (c *countConn) ReadBatch([]ipv4.Message, int) (int, error) { select {} }
func (c *countConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	c.n.Add(int64(len(ms)))
	return len(ms), nil
}
func (c *countConn) SetWriteDeadline(time.Time) error { return nil }

// A path whose socket cannot send (the private NIC cut: datagrams queue
// for neighbours that never resolve until the buffer is full) costs the
// other path at most sendWait per round (before, one blocking send held up
// both paths and the backup path went quiet ~2.7 s into a private cut,
// failing a node that was reachable).
func TestStuckPathStallsNoOtherPath(t *testing.T) {
	stuck, ok := newSender(&stuckConn{}), &countConn{}
	healthy := newSender(ok)
	peers := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:7947"), netip.MustParseAddrPort("10.0.0.3:7947")}
	start := time.Now()
	rounds := 20
	for i := 0; i < rounds; i++ {
		if n := stuck.round([]byte("hb"), peers, time.Now().Add(sendWait)); n != 0 {
			t.Fatalf("the stuck path sent %d", n)
		}
		if n := healthy.round([]byte("hb"), peers, time.Now().Add(sendWait)); n != len(peers) {
			t.Fatalf("the healthy path sent %d of %d", n, len(peers))
		}
	}
	// Each round waits sendWait per stuck packet at most (the deadline
	// passes on the first; the rest fail at once).
	if d := time.Since(start); d > time.Duration(rounds)*(sendWait+5*time.Millisecond) {
		t.Errorf("%d rounds took %s: the stuck path held the other up", rounds, d)
	}
	if got := ok.n.Load(); got != int64(rounds*len(peers)) {
		t.Errorf("the healthy path sent %d packets, want %d", got, rounds*len(peers))
	}
}
