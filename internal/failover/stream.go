package failover

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is raft's stream layer: TCP wrapped in TLS 1.3 whose only
// credential is the cluster key. Both ends present a certificate for an
// Ed25519 key derived from the cluster key and accept a peer only if its
// public key derives from one of the keys in the key file, so a node
// without the key can neither read the quorum's traffic nor vote.
// Deriving the identity from the existing key keeps "one key file
// authenticates all cluster traffic" true without a PKI to run.
//
// Handshakes run beside the accept loop, never in it: one silent TCP
// connection must not hold up the voters' own connections (raft's accept
// loop is serial). What a stranger can make it hold is bounded: handshakes
// in progress per source address and in all, each for handshakeTimeout.
type tlsStream struct {
	net.Listener
	mu     sync.RWMutex
	cert   tls.Certificate
	accept [][]byte // Ed25519 public keys derived from every cluster key

	ready   chan net.Conn // authenticated connections for raft
	done    chan struct{}
	wg      sync.WaitGroup
	closing sync.Once
	pmu     sync.Mutex
	pending map[string]int // handshakes in progress, by source address
	total   int
}

// Bounds on unauthenticated connections. A voter's handshake takes a few
// milliseconds; a peer slower than handshakeTimeout is not a voter worth
// waiting for.
const (
	handshakeTimeout     = 2 * time.Second
	maxPendingPerSource  = 8
	maxPendingHandshakes = 128
)

// deriveIdentity turns a cluster key into the quorum's Ed25519 key.
func deriveIdentity(key []byte) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, key, nil, "clusterd quorum tls identity v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func newTLSStream(l net.Listener, keys [][]byte) (*tlsStream, error) {
	s := &tlsStream{Listener: l, ready: make(chan net.Conn), done: make(chan struct{}), pending: map[string]int{}}
	if err := s.setKeys(keys); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// setKeys installs a new key set (SIGHUP key rotation): new connections
// present the first key's identity and accept any key's.
func (s *tlsStream) setKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("no cluster key")
	}
	var accept [][]byte
	var cert tls.Certificate
	for i, k := range keys {
		priv, err := deriveIdentity(k)
		if err != nil {
			return err
		}
		accept = append(accept, priv.Public().(ed25519.PublicKey))
		if i == 0 {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1),
				NotBefore:    time.Unix(0, 0),
				NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
			if err != nil {
				return fmt.Errorf("making the quorum certificate: %w", err)
			}
			cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
		}
	}
	s.mu.Lock()
	s.cert, s.accept = cert, accept
	s.mu.Unlock()
	return nil
}

// errNotCluster is a peer whose certificate is not derived from our key.
var errNotCluster = errors.New("peer does not hold the cluster key")

func (s *tlsStream) config() *tls.Config {
	s.mu.RLock()
	cert, accept := s.cert, s.accept
	s.mu.RUnlock()
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 {
			return errNotCluster
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return errNotCluster
		}
		pub, ok := c.PublicKey.(ed25519.PublicKey)
		if !ok {
			return errNotCluster
		}
		for _, a := range accept {
			if bytes.Equal(a, pub) {
				return nil
			}
		}
		return errNotCluster
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Identity is the derived public key, checked in
		// VerifyPeerCertificate; there is no CA and no host name.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
		ServerName:            "clusterd-quorum",
	}
}

// acceptLoop takes TCP connections and hands each to its own handshake,
// within the bounds above; beyond them a connection is closed at once.
func (s *tlsStream) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Out of descriptors and the like: back off, do not spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		src := sourceOf(c)
		if !s.reserve(src) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.release(src)
			s.handshake(c)
		}()
	}
}

func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

func (s *tlsStream) reserve(src string) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.total >= maxPendingHandshakes || s.pending[src] >= maxPendingPerSource {
		return false
	}
	s.pending[src]++
	s.total++
	return true
}

func (s *tlsStream) release(src string) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.total--
	if s.pending[src]--; s.pending[src] <= 0 {
		delete(s.pending, src)
	}
}

// handshake authenticates c and passes it to raft; a failed or slow
// handshake is dropped.
func (s *tlsStream) handshake(c net.Conn) {
	tc := tls.Server(c, s.config())
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	select {
	case s.ready <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next authenticated connection, so raft only ever sees
// peers that hold the cluster key.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and joins the accept loop and every handshake.
func (s *tlsStream) Close() error {
	var err error
	s.closing.Do(func() {
		close(s.done)
		err = s.Listener.Close()
		s.wg.Wait()
	})
	return err
}

// Dial connects to a voter and completes the handshake.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	tc, err := tls.DialWithDialer(d, "tcp", string(addr), s.config())
	if err != nil {
		return nil, fmt.Errorf("connecting to quorum peer %s: %w", addr, err)
	}
	return tc, nil
}
