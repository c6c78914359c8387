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
type tlsStream struct {
	net.Listener
	mu     sync.RWMutex
	cert   tls.Certificate
	accept [][]byte // Ed25519 public keys derived from every cluster key
}

// deriveIdentity turns a cluster key into the quorum's Ed25519 key.
func deriveIdentity(key []byte) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, key, nil, "clusterd quorum tls identity v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func newTLSStream(l net.Listener, keys [][]byte) (*tlsStream, error) {
	s := &tlsStream{Listener: l}
	if err := s.setKeys(keys); err != nil {
		return nil, err
	}
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

// Accept waits for a peer and completes the handshake, so raft only ever
// sees authenticated connections. A failed handshake is dropped and the
// next connection awaited, rather than returned as an error: raft's accept
// loop backs off on errors, and a stranger must not slow the quorum down.
func (s *tlsStream) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, s.config())
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			continue
		}
		tc.SetDeadline(time.Time{})
		return tc, nil
	}
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
