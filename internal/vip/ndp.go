package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
)

// Neighbour Discovery, by hand for the same reason as ARP (arp.go): the
// frames are few and fixed (an unsolicited advertisement is all a group
// VIP's new owner sends), and a load-balanced VIP's advertisements must
// carry the cluster MAC while the Ethernet source stays the NIC's own.

const etherTypeIPv6 = 0x86dd

// allNodes is ff02::1, where unsolicited advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// unsolicitedNA is an IPv6 packet (header and ICMPv6) advertising that
// addr is at mac now: the override flag set, so that neighbours replace
// the old owner's MAC at once (RFC 4861 7.2.6), hop limit 255 as the RFC
// requires of every ND packet, and the target link-layer address option.
func unsolicitedNA(addr netip.Addr, mac net.HardwareAddr) []byte {
	return neighbourAdvert(addr, mac, allNodes, naOverride)
}

// Neighbour advertisement flags (RFC 4861 4.4).
const (
	naSolicited = 0x40
	naOverride  = 0x20
)

// neighbourAdvert is an advertisement from target to dst that target is
// at mac, with the given flags.
func neighbourAdvert(target netip.Addr, mac net.HardwareAddr, dst netip.Addr, flags byte) []byte {
	icmp := make([]byte, 32)
	icmp[0] = 136 // neighbour advertisement
	icmp[4] = flags
	t := target.As16()
	copy(icmp[8:], t[:])
	icmp[24], icmp[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(icmp[26:], mac)
	return ipv6Packet(target, dst, 58, 255, icmp, 2)
}

// allNodesMAC is ff02::1's Ethernet address.
var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// solicitedNode is addr's solicited-node multicast group,
// ff02::1:ffXX:XXXX (RFC 4291 2.7.1).
func solicitedNode(addr netip.Addr) netip.Addr {
	a := addr.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

// solicitedNodeMAC is the Ethernet address of addr's solicited-node
// multicast group (ff02::1:ffXX:XXXX, RFC 4291 2.7.1), where neighbour
// solicitations for addr are sent.
func solicitedNodeMAC(addr netip.Addr) net.HardwareAddr {
	a := addr.As16()
	return net.HardwareAddr{0x33, 0x33, 0xff, a[13], a[14], a[15]}
}

// naFor decides what to answer to an IPv6 packet that arrived in a frame
// from srcMAC: for a neighbour solicitation of vip, an advertisement that
// vip is at the cluster MAC (solicited, to the asker; to all nodes when
// the asker has no address yet, RFC 4861 7.2.4), with the Ethernet
// destination to send it to; nil for anything else, for our own packets
// and for packets that are not well-formed ND (the hop limit of 255 that
// proves the packet was not routed, the ICMPv6 checksum). Pure, so tests
// need no raw socket.
func naFor(pkt []byte, srcMAC net.HardwareAddr, vip netip.Addr, clusterMAC, nicMAC net.HardwareAddr) (dst net.HardwareAddr, reply []byte, ok bool) {
	if len(pkt) < 40 || pkt[0]>>4 != 6 || pkt[6] != 58 || pkt[7] != 255 {
		return nil, nil, false
	}
	plen := int(binary.BigEndian.Uint16(pkt[4:]))
	if plen < 24 || 40+plen > len(pkt) {
		return nil, nil, false
	}
	icmp := pkt[40 : 40+plen]
	if icmp[0] != 135 || icmp[1] != 0 {
		return nil, nil, false
	}
	var sum uint32
	for i := 8; i < 40; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	sum += uint32(plen) + 58
	if inetChecksum(icmp, sum) != 0 {
		return nil, nil, false
	}
	if netip.AddrFrom16([16]byte(icmp[8:24])) != vip {
		return nil, nil, true // well-formed, for another address
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	lladdr := srcMAC
	for o := icmp[24:]; len(o) >= 8; {
		n := int(o[1]) * 8
		if n == 0 || n > len(o) {
			return nil, nil, false
		}
		if o[0] == 1 && n == 8 { // source link-layer address
			lladdr = net.HardwareAddr(o[2:8])
		}
		o = o[n:]
	}
	if src == vip || bytes.Equal(lladdr, nicMAC) || bytes.Equal(lladdr, clusterMAC) {
		return nil, nil, true // our own
	}
	if src.IsUnspecified() {
		return allNodesMAC, neighbourAdvert(vip, clusterMAC, allNodes, naOverride), true
	}
	return append(net.HardwareAddr(nil), lladdr...), neighbourAdvert(vip, clusterMAC, src, naSolicited|naOverride), true
}

// ipv6Packet wraps an upper-layer payload in an IPv6 header and fills in
// the payload's checksum, which sits at ckOff in it (ICMPv6 2, TCP 16).
func ipv6Packet(src, dst netip.Addr, next byte, hops byte, payload []byte, ckOff int) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = next, hops
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	var sum uint32
	for i := 8; i < 40; i += 2 { // pseudo header: both addresses
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	sum += uint32(len(payload)) + uint32(next)
	binary.BigEndian.PutUint16(p[40+ckOff:], 0)
	binary.BigEndian.PutUint16(p[40+ckOff:], inetChecksum(p[40:], sum))
	return p
}

// inetChecksum is the Internet checksum (RFC 1071) of b, starting from sum
// (a pseudo header's share, or 0).
func inetChecksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
