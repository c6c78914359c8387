package vip

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Neighbour Discovery, by hand for the same reason as ARP (arp.go): the
// frames are few and fixed, and an unsolicited advertisement is all a
// group VIP's new owner sends.

const etherTypeIPv6 = 0x86dd

// allNodes is ff02::1, where unsolicited advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// unsolicitedNA is an IPv6 packet (header and ICMPv6) advertising that
// addr is at mac now: the override flag set, so that neighbours replace
// the old owner's MAC at once (RFC 4861 7.2.6), hop limit 255 as the RFC
// requires of every ND packet, and the target link-layer address option.
func unsolicitedNA(addr netip.Addr, mac net.HardwareAddr) []byte {
	icmp := make([]byte, 32)
	icmp[0] = 136  // neighbour advertisement
	icmp[4] = 0x20 // override (not solicited, not router)
	t := addr.As16()
	copy(icmp[8:], t[:])
	icmp[24], icmp[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(icmp[26:], mac)
	return ipv6Packet(addr, allNodes, 58, 255, icmp, 2)
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
