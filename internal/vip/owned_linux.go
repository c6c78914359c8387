package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func ownedAddr(ifname string, p netip.Prefix) (netlink.Link, *netlink.Addr, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, nil, err
	}
	// The configured prefix length goes on as given: unlike a shared VIP,
	// a group VIP is a normal address of its one owner.
	return link, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}, Label: labelFor(ifname)}, nil
}

func addOwned(ifname string, p netip.Prefix) error {
	link, a, err := ownedAddr(ifname, p)
	if err != nil {
		return err
	}
	return netlink.AddrReplace(link, a)
}

func delOwned(ifname string, p netip.Prefix) error {
	link, a, err := ownedAddr(ifname, p)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(link, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// announceOwned sends gratuitous ARP for addr from the NIC's MAC: at once
// and twice more, as a switch or client may miss one; the repeats stop
// when stop closes (the address was released: a node that lost its lease
// must not announce it), and done closes when they have.
func announceOwned(ifname string, addr netip.Addr, stop <-chan struct{}, done chan<- struct{}) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	conn, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return fmt.Errorf("opening a raw ARP socket: %w", err)
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	arp := gratuitousARP(addr, ifi.HardwareAddr)
	f := make([]byte, 14+len(arp))
	copy(f[0:], bcast)
	copy(f[6:], ifi.HardwareAddr)
	binary.BigEndian.PutUint16(f[12:], etherTypeARP)
	copy(f[14:], arp)
	if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: bcast}); err != nil {
		conn.Close()
		close(done)
		return err
	}
	go func() {
		defer close(done)
		defer conn.Close()
		for _, d := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond} {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
			conn.WriteTo(f, &packet.Addr{HardwareAddr: bcast})
		}
	}()
	return nil
}
