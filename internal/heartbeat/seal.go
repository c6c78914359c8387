package heartbeat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
)

// sealer encrypts and authenticates heartbeats with the cluster keys, the
// same keys and rotation rule as memberlist's keyring: the first key
// seals, every key opens.
type sealer struct {
	mu    sync.RWMutex
	aeads []cipher.AEAD
	aad   []byte // the cluster name: a heartbeat of another cluster never opens
}

const sealVersion = 1

var errNoKey = errors.New("no cluster key opens the packet")

func newSealer(cluster string, keys [][]byte) (*sealer, error) {
	s := &sealer{aad: []byte("clusterd/" + cluster)}
	return s, s.setKeys(keys)
}

func (s *sealer) setKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("no cluster key")
	}
	aeads := make([]cipher.AEAD, 0, len(keys))
	for i, k := range keys {
		b, err := aes.NewCipher(k)
		if err != nil {
			return fmt.Errorf("cluster key %d: %w", i+1, err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			return err
		}
		aeads = append(aeads, g)
	}
	s.mu.Lock()
	s.aeads = aeads
	s.mu.Unlock()
	return nil
}

// seal returns version | nonce | ciphertext.
func (s *sealer) seal(plain []byte) []byte {
	s.mu.RLock()
	g := s.aeads[0]
	s.mu.RUnlock()
	out := make([]byte, 1+g.NonceSize(), 1+g.NonceSize()+len(plain)+g.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return g.Seal(out, out[1:1+g.NonceSize()], plain, s.aad)
}

func (s *sealer) open(pkt []byte) ([]byte, error) {
	s.mu.RLock()
	aeads := s.aeads
	s.mu.RUnlock()
	if len(pkt) < 1 || pkt[0] != sealVersion {
		return nil, errors.New("unknown packet version")
	}
	for _, g := range aeads {
		ns := g.NonceSize()
		if len(pkt) < 1+ns+g.Overhead() {
			return nil, errors.New("short packet")
		}
		if p, err := g.Open(nil, pkt[1:1+ns], pkt[1+ns:], s.aad); err == nil {
			return p, nil
		}
	}
	return nil, errNoKey
}
