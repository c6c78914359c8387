package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
)

// ARP frames are built and parsed by hand: the reply must carry the cluster
// MAC as the ARP sender while the Ethernet source stays the NIC's own MAC
// (bridges drop frames with a multicast source), which ARP libraries that
// derive one from the other cannot express.

const (
	etherTypeARP = 0x0806
	arpRequest   = 1
	arpReply     = 2
	arpLen       = 28
)

// arpPacket is an Ethernet/IPv4 ARP packet (without the Ethernet header).
type arpPacket struct {
	Op       uint16
	SenderHW net.HardwareAddr
	SenderIP netip.Addr
	TargetHW net.HardwareAddr
	TargetIP netip.Addr
}

var errNotIPv4ARP = errors.New("not an Ethernet/IPv4 ARP packet")

// parseARP reads the ARP payload of a frame.
func parseARP(b []byte) (arpPacket, error) {
	var p arpPacket
	if len(b) < arpLen {
		return p, errNotIPv4ARP
	}
	if binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return p, errNotIPv4ARP
	}
	p.Op = binary.BigEndian.Uint16(b[6:])
	p.SenderHW = append(net.HardwareAddr(nil), b[8:14]...)
	p.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	p.TargetHW = append(net.HardwareAddr(nil), b[18:24]...)
	p.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return p, nil
}

func (p arpPacket) marshal() []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], p.Op)
	copy(b[8:], p.SenderHW)
	s := p.SenderIP.As4()
	copy(b[14:], s[:])
	copy(b[18:], p.TargetHW)
	t := p.TargetIP.As4()
	copy(b[24:], t[:])
	return b
}

// arpReplyFor decides what to answer to an ARP packet: a reply that maps
// vip to the cluster MAC, sent to the asker, or nil if the packet is not a
// request for vip (or is our own). Pure, so tests need no raw socket.
func arpReplyFor(payload []byte, vip netip.Addr, clusterMAC, nicMAC net.HardwareAddr) (dst net.HardwareAddr, reply []byte) {
	p, err := parseARP(payload)
	if err != nil || p.Op != arpRequest || p.TargetIP != vip {
		return nil, nil
	}
	if bytes.Equal(p.SenderHW, nicMAC) || bytes.Equal(p.SenderHW, clusterMAC) || p.SenderIP == vip {
		return nil, nil // our own probe or a gratuitous announcement
	}
	r := arpPacket{Op: arpReply, SenderHW: clusterMAC, SenderIP: vip, TargetHW: p.SenderHW, TargetIP: p.SenderIP}
	return p.SenderHW, r.marshal()
}

// gratuitousARP announces vip at the cluster MAC to the whole segment.
func gratuitousARP(vip netip.Addr, clusterMAC net.HardwareAddr) []byte {
	return arpPacket{Op: arpRequest, SenderHW: clusterMAC, SenderIP: vip, TargetHW: make(net.HardwareAddr, 6), TargetIP: vip}.marshal()
}
