//go:build !linux && !windows

package vip

import (
	"errors"
	"net/netip"
	"time"
)

var errOwnedUnsupported = errors.New("group VIPs are supported on Linux and Windows only")

func addOwned(string, netip.Prefix) error { return errOwnedUnsupported }
func delOwned(string, netip.Prefix) error { return errOwnedUnsupported }
func announceOwned(_ string, _ netip.Addr, _ <-chan struct{}, done chan<- struct{}) error {
	close(done)
	return errOwnedUnsupported
}
func fenceOwned(netip.Addr, time.Duration) error { return errOwnedUnsupported }
func openFence() error                           { return nil }
func CloseFence() error                          { return nil }
