package vip

import (
	"net"
	"net/netip"
	"testing"
)

// nsPacket is a neighbour solicitation for target from src (with a
// source link-layer address option when mac is set).
func nsPacket(src, target netip.Addr, mac net.HardwareAddr) []byte {
	ns := make([]byte, 24)
	ns[0] = 135
	t16 := target.As16()
	copy(ns[8:], t16[:])
	if mac != nil {
		ns = append(ns, 1, 1)
		ns = append(ns, mac...)
	}
	return ipv6Packet(src, solicitedNode(target), 58, 255, ns, 2)
}

// TestNAFor: a solicitation for the VIP is answered with the cluster MAC,
// solicited, to the asker's link-layer address (or the frame's source
// without the option); a DAD probe (no source address) is answered to
// all nodes, not solicited; solicitations for other addresses, our own,
// routed ones (hop limit below 255) and corrupt ones get nothing, the
// last two counted as malformed.
func TestNAFor(t *testing.T) {
	vip := netip.MustParseAddr("fd00::100")
	cmac, _ := ClusterMAC("multicast", vip)
	nic := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	asker := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	frameSrc := net.HardwareAddr{2, 0, 0, 0, 0, 8}
	client := netip.MustParseAddr("fd00::5")
	routed := nsPacket(client, vip, asker)
	routed[7] = 64
	corrupt := nsPacket(client, vip, asker)
	corrupt[40+20] ^= 0xff
	for _, tc := range []struct {
		name    string
		pkt     []byte
		dst     net.HardwareAddr
		ipDst   netip.Addr
		flags   byte
		wantBad bool
	}{
		{"with option", nsPacket(client, vip, asker), asker, client, naSolicited | naOverride, false},
		{"without option", nsPacket(client, vip, nil), frameSrc, client, naSolicited | naOverride, false},
		{"DAD probe", nsPacket(netip.IPv6Unspecified(), vip, nil), allNodesMAC, allNodes, naOverride, false},
		{"other target", nsPacket(client, netip.MustParseAddr("fd00::101"), asker), nil, netip.Addr{}, 0, false},
		{"our own", nsPacket(client, vip, nic), nil, netip.Addr{}, 0, false},
		{"routed", routed, nil, netip.Addr{}, 0, true},
		{"corrupt", corrupt, nil, netip.Addr{}, 0, true},
		{"short", routed[:50], nil, netip.Addr{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, reply, ok := naFor(tc.pkt, frameSrc, vip, cmac, nic)
			if ok == tc.wantBad {
				t.Fatalf("well-formed %v, want %v", ok, !tc.wantBad)
			}
			if tc.dst == nil {
				if reply != nil {
					t.Fatalf("answered %x", reply)
				}
				return
			}
			target, mac, flags, isNA := parseNA(reply)
			if !isNA || dst.String() != tc.dst.String() || target != vip || mac.String() != cmac.String() || flags != tc.flags {
				t.Fatalf("to %s: target %s mac %s flags %#x", dst, target, mac, flags)
			}
			if got := netip.AddrFrom16([16]byte(reply[24:40])); got != tc.ipDst {
				t.Errorf("sent to %s, want %s", got, tc.ipDst)
			}
		})
	}
}

// parseNA reads a neighbour advertisement: target, target link-layer
// address, flags.
func parseNA(pkt []byte) (netip.Addr, net.HardwareAddr, byte, bool) {
	if len(pkt) < 40+32 || pkt[6] != 58 || pkt[40] != 136 || pkt[40+24] != 2 {
		return netip.Addr{}, nil, 0, false
	}
	return netip.AddrFrom16([16]byte(pkt[48:64])), net.HardwareAddr(pkt[66:72]), pkt[44], true
}

// TestIPv6Hashing: an IPv6 VIP's MACs come from its last four bytes
// (igmp has none); network affinity keeps a client's /64.
func TestIPv6Hashing(t *testing.T) {
	vip := netip.MustParseAddr("fd00:77:1::a:100")
	for mode, want := range map[string]string{"multicast": "03:bf:00:0a:01:00", "unicast": "02:bf:00:0a:01:00"} {
		if m, err := ClusterMAC(mode, vip); err != nil || m.String() != want {
			t.Errorf("%s: %v %v, want %s", mode, m, err, want)
		}
	}
	if _, err := ClusterMAC("igmp", vip); err == nil {
		t.Error("an igmp MAC for an IPv6 VIP")
	}
	a := netip.MustParseAddrPort("[fd00:1:2:3:4::5]:4000")
	b := netip.MustParseAddrPort("[fd00:1:2:3:ffff::9]:4001")
	c := netip.MustParseAddrPort("[fd00:1:2:4:4::5]:4000")
	if Bucket("network", a, 7, TableSize) != Bucket("network", b, 7, TableSize) {
		t.Error("network affinity: two clients of one /64 in different buckets")
	}
	if Bucket("network", a, 7, TableSize) == Bucket("network", c, 7, TableSize) && Bucket("network", a, 8, TableSize) == Bucket("network", c, 8, TableSize) {
		t.Error("network affinity: the /64 not hashed")
	}
	if k := hashKey("none", a); len(k) != 20 || k[16] != 0x0f || k[17] != 0xa0 || k[18] != 0 || k[19] != 0 {
		t.Errorf("affinity none key %x: want the 16 address bytes, then the port in a zero-padded register", k)
	}
}

func FuzzNAFor(f *testing.F) {
	vip := netip.MustParseAddr("fd00::100")
	cmac, _ := ClusterMAC("unicast", vip)
	f.Add(nsPacket(netip.MustParseAddr("fd00::5"), vip, net.HardwareAddr{2, 0, 0, 0, 0, 9}))
	f.Add(unsolicitedNA(vip, cmac))
	f.Fuzz(func(t *testing.T, b []byte) {
		naFor(b, net.HardwareAddr{2, 0, 0, 0, 0, 8}, vip, cmac, net.HardwareAddr{2, 0, 0, 0, 0, 1})
	})
}
