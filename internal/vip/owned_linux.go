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
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is4() {
		a.Label = labelFor(ifname) // IPv6 addresses have no label
	} else {
		// No duplicate address detection: the address moves here from a
		// node that no longer answers for it (its lease ran out), and
		// DAD would keep it tentative, unusable, for a second or more.
		a.Flags = unix.IFA_F_NODAD
	}
	return link, a, nil
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

// announceOwned sends gratuitous ARP for an IPv4 addr, an unsolicited
// neighbour advertisement for an IPv6 one, from the NIC's MAC: at once and
// twice more, as a switch or client may miss one; the repeats stop when
// stop closes (the address was released: a node that lost its lease must
// not announce it), and done closes when they have.
func announceOwned(ifname string, addr netip.Addr, stop <-chan struct{}, done chan<- struct{}) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	etherType, what := uint16(etherTypeARP), "ARP"
	var dst net.HardwareAddr
	var payload []byte
	if addr.Is4() {
		dst = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		payload = gratuitousARP(addr, ifi.HardwareAddr)
	} else {
		etherType, what = etherTypeIPv6, "neighbour advertisement"
		dst = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} // all nodes
		payload = unsolicitedNA(addr, ifi.HardwareAddr)
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(etherType), nil)
	if err != nil {
		return fmt.Errorf("opening a raw socket for %s: %w", what, err)
	}
	f := make([]byte, 14+len(payload))
	copy(f[0:], dst)
	copy(f[6:], ifi.HardwareAddr)
	binary.BigEndian.PutUint16(f[12:], etherType)
	copy(f[14:], payload)
	if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
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
			conn.WriteTo(f, &packet.Addr{HardwareAddr: dst})
		}
	}()
	return nil
}
