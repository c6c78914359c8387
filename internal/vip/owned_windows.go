package vip

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Windows: netsh adds and removes the address; Windows itself sends a
// gratuitous ARP when an address is added, so there is nothing to announce.
func addOwned(ifname string, p netip.Prefix) error {
	mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
	return netsh("interface", "ipv4", "add", "address", "name="+ifname, "address="+p.Addr().String(), "mask="+mask, "skipassource=true")
}

func delOwned(ifname string, p netip.Prefix) error {
	err := netsh("interface", "ipv4", "delete", "address", "name="+ifname, "address="+p.Addr().String())
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	return err
}

func announceOwned(_ string, _ netip.Addr, _ <-chan struct{}, done chan<- struct{}) error {
	close(done)
	return nil
}

func netsh(args ...string) error {
	out, err := exec.Command("netsh", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// fenceOwned: Windows has no kernel-side lease; a Windows owner is fenced
// by its agent only (see docs/failover.md).
func fenceOwned(netip.Addr, time.Duration) error { return nil }

// openFence: nothing to open (no kernel-side lease on Windows).
func openFence() error { return nil }

// CloseFence: nothing to remove (no kernel-side lease on Windows).
func CloseFence() error { return nil }
