package failover

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/clusterd/clusterd/internal/testenv"
)

// Silent TCP connections to the quorum port (a stranger, a port scanner)
// must not delay a voter's connection: handshakes run beside the accept
// loop, and there are bounds on how many a source can hold.
func TestSilentConnectionsDoNotStallTheQuorumPort(t *testing.T) {
	testenv.SkipUnderWine(t, "a timing bound: under Wine the handshakes behind 50 silent connections take 1 to 3.5 s")
	key := make([]byte, 32)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := newTLSStream(l, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := srv.Accept()
		if err == nil {
			got <- c
		}
	}()
	// 50 silent connections from another address (Linux routes all of
	// 127/8 to lo).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	var silent []net.Conn
	for range 50 {
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	held := func() int {
		srv.pmu.Lock()
		defer srv.pmu.Unlock()
		return srv.total
	}
	// The accept loop takes them until the source's bound; then the rest
	// are closed at once (nothing more may be held, however long we wait).
	for deadline := time.Now().Add(time.Second); held() < maxPendingPerSource; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 50 silent connections reached a handshake", held())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := held(); n != maxPendingPerSource {
		t.Errorf("one source holds %d handshakes, bound is %d", n, maxPendingPerSource)
	}

	cli, err := newTLSStream(mustListen(t), [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start := time.Now()
	c, err := cli.Dial(raft.ServerAddress(l.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("a voter's dial failed behind silent connections: %v", err)
	}
	defer c.Close()
	select {
	case sc := <-got:
		sc.Close()
	case <-time.After(time.Second):
		t.Fatal("the voter's connection was not accepted within 1 s")
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("a voter's connection took %s behind 50 silent ones", took)
	}
}

func mustListen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
