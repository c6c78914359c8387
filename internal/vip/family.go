package vip

import "net/netip"

// family is what differs between IPv4 and IPv6 in the load-balancing
// datapath: where the addresses sit in the network header, how long they
// are, what a network affinity keeps of a client's address, and where the
// VIP address goes on the node. Everything else (the bucket table, the
// hand-off, the rules' order) is the same for both.
type family struct {
	// shown is nft's name of the family ("ip", "ip6").
	shown string
	// addrLen is an address's length in bytes; saddrOff and daddrOff are
	// the source and destination addresses' offsets in the network header.
	addrLen            uint32
	saddrOff, daddrOff uint32
	// netBits: network affinity hashes the client's address masked to this
	// prefix (NLB's "class C" for IPv4; a /64, one IPv6 subnet, for IPv6).
	netBits int
}

var (
	familyIPv4 = &family{shown: "ip", addrLen: 4, saddrOff: 12, daddrOff: 16, netBits: 24}
	familyIPv6 = &family{shown: "ip6", addrLen: 16, saddrOff: 8, daddrOff: 24, netBits: 64}
)

// familyOf is a's family (an IPv4-mapped IPv6 address counts as IPv4).
func familyOf(a netip.Addr) *family {
	if a.Unmap().Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// VIPDevice is the interface a load-balanced VIP's address goes on. An
// IPv4 VIP sits on its NIC as a /32 (arp_announce keeps it out of the
// node's own ARP requests). IPv6 has no arp_announce: a VIP on the NIC
// would be the source of the node's neighbour solicitations, teaching the
// LAN the node's own MAC for it, and the kernel would answer solicitations
// for it with that MAC too. On lo (a /128), the node still accepts packets
// to it from any NIC, but never speaks for it in Neighbour Discovery: the
// agent's responder answers with the cluster MAC instead.
func VIPDevice(vip netip.Addr, nic string) string {
	if familyOf(vip) == familyIPv6 {
		return "lo"
	}
	return nic
}
