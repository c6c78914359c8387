//go:build !linux

package heartbeat

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

func rtSleep(d time.Duration) { time.Sleep(d) }

type rtReader struct{}

var errRTTimeout = errors.New("receive timeout")

func newRTReader(c *net.UDPConn) (*rtReader, error) {
	return nil, errors.New("real-time receive is Linux-only")
}

func (r *rtReader) read(buf []byte) (int, netip.Addr, error) { return 0, netip.Addr{}, errRTTimeout }
func (r *rtReader) close()                                   {}
