package vip

import (
	"fmt"
	"net"
	"net/netip"
)

// ClusterMAC is the MAC address a VIP resolves to.
//
// multicast: 03:bf + the VIP's four bytes, NLB's multicast MAC. It is a
// multicast address (low bit of the first byte) outside 01:00:5e, so
// switches flood it to every port instead of pruning it by IGMP snooping.
// igmp: 01:00:5e:7f + the VIP's last two bytes, the MAC of IP multicast
// group 239.255.x.y; every node joins that group so snooping switches
// deliver the VIP's frames only to members.
// unicast: 02:bf + the VIP's four bytes (locally administered), shared by
// every node.
//
// An IPv6 VIP's MAC is made the same way from its last four bytes (igmp,
// IPv4 multicast, has no IPv6 form: validate refuses it).
func ClusterMAC(mode string, vip netip.Addr) (net.HardwareAddr, error) {
	b := vip.Unmap().AsSlice()
	if len(b) != 4 && len(b) != 16 {
		return nil, fmt.Errorf("no address: %v", vip)
	}
	a := b[len(b)-4:]
	switch mode {
	case "multicast", "":
		return net.HardwareAddr{0x03, 0xbf, a[0], a[1], a[2], a[3]}, nil
	case "igmp":
		if len(b) != 4 {
			return nil, fmt.Errorf("igmp mode is IPv4 only (%s)", vip)
		}
		return net.HardwareAddr{0x01, 0x00, 0x5e, 0x7f, a[2], a[3]}, nil
	case "unicast":
		return net.HardwareAddr{0x02, 0xbf, a[0], a[1], a[2], a[3]}, nil
	}
	return nil, fmt.Errorf("unknown VIP mode %q", mode)
}

// IGMPGroup is the IP multicast group whose MAC is the igmp cluster MAC.
func IGMPGroup(vip netip.Addr) netip.Addr {
	a := vip.As4()
	return netip.AddrFrom4([4]byte{239, 255, a[2], a[3]})
}
