package vip

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
)

// The IPv6 datapath against the kernel, on newLAN's veth pair with IPv6
// addresses: the node fd00:9::1 on vip0, the client fd00:9::5 on cli0's
// side (a raw socket, as for IPv4).

var (
	testVIP6    = netip.MustParsePrefix("fd00:9::100/64")
	testClient6 = netip.MustParseAddr("fd00:9::5")
)

// lan6 is newLAN with IPv6: the node's address, the client's MAC as a
// permanent neighbour (the answers go out without a solicitation), and a
// raw IPv6 socket on the client side.
func newLAN6(t *testing.T) (*lan, *packet.Conn) {
	x := newLAN(t)
	nic, _ := netlink.LinkByName("vip0")
	if err := netlink.AddrAdd(nic, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:9::1"), Mask: net.CIDRMask(64, 128)}, Flags: 0x02 /* IFA_F_NODAD */}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: x.nic.Index, State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V6,
		IP: testClient6.AsSlice(), HardwareAddr: x.srcMAC}); err != nil {
		t.Fatal(err)
	}
	c, err := packet.Listen(x.cli, packet.Raw, etherTypeIPv6, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return x, c
}

func testPlan6(mode, affinity string) VIPPlan {
	mac, _ := ClusterMAC(mode, testVIP6.Addr())
	return VIPPlan{Index: 0, Addr: testVIP6, Interface: "vip0", Mode: mode, MAC: mac, Seed: testSeed,
		Rules: []RulePlan{{Lo: 80, Hi: 80, Protos: []uint8{6}, Affinity: affinity, Filtering: "multiple"}}}
}

func ether(dst, src net.HardwareAddr, pkt []byte) []byte {
	f := make([]byte, 14+len(pkt))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv6)
	copy(f[14:], pkt)
	return f
}

// syn6 is a TCP SYN from the client's port sport to the VIP's port 80.
func syn6(dstMAC, srcMAC net.HardwareAddr, sport uint16) []byte {
	return ether(dstMAC, srcMAC, ipv6Packet(testClient6, testVIP6.Addr(), 6, 64, synSegment(sport), 16))
}

// probe6 sends a SYN from each port and returns which ones the VIP
// answered within 300 ms.
func probe6(t *testing.T, c *packet.Conn, mac, src net.HardwareAddr, ports []uint16) map[uint16]bool {
	t.Helper()
	for _, p := range ports {
		if _, err := c.WriteTo(syn6(mac, src, p), &packet.Addr{HardwareAddr: mac}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint16]bool{}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return got
		}
		f := buf[:n]
		if n < 14+40+20 || f[14+6] != 6 || netip.AddrFrom16([16]byte(f[14+8:14+24])) != testVIP6.Addr() || binary.BigEndian.Uint16(f[54:]) != 80 {
			continue
		}
		got[binary.BigEndian.Uint16(f[56:])] = true
	}
}

// TestDatapathIPv6: an IPv6 VIP goes on lo (out of the node's own
// Neighbour Discovery) in a table of its own; the kernel puts each IPv6
// flow in the bucket Bucket predicts for every affinity (of 40 SYNs,
// exactly those in owned buckets are answered); a neighbour solicitation
// for the VIP gets one solicited advertisement of the cluster MAC from
// the NIC's own MAC, in both modes; Close removes it all.
func TestDatapathIPv6(t *testing.T) {
	for _, tc := range []struct{ mode, affinity string }{{"multicast", "none"}, {"multicast", "single"}, {"unicast", "network"}} {
		t.Run(tc.mode+"-"+tc.affinity, func(t *testing.T) {
			x, c := newLAN6(t)
			dp, err := newDatapath(quietLog(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			plan := testPlan6(tc.mode, tc.affinity)
			if err := dp.Setup([]VIPPlan{plan}, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					dp.Close()
				}
			}()
			if !hasAddr(t, "lo", testVIP6.Addr()) || hasAddr(t, "vip0", testVIP6.Addr()) {
				t.Fatalf("the VIP on lo %v, on vip0 %v; want lo only", hasAddr(t, "lo", testVIP6.Addr()), hasAddr(t, "vip0", testVIP6.Addr()))
			}
			if !tableExists(t, nftTable6, nftables.TableFamilyIPv6) {
				t.Fatal("no ip6 table")
			}
			if err := dp.Refresh(); err != nil {
				t.Fatal(err)
			}
			// The solicited-node group is joined on the NIC (MLD reports
			// for snooping switches).
			joined := false
			if ma, err := x.nic.MulticastAddrs(); err == nil {
				for _, a := range ma {
					joined = joined || a.String() == solicitedNode(testVIP6.Addr()).String()
				}
			}
			if !joined {
				t.Errorf("%s not joined on vip0", solicitedNode(testVIP6.Addr()))
			}

			// Neighbour solicitation for the VIP, to its solicited-node
			// group, after the unsolicited advertisements of the start.
			announced := 0
			eachNA(c, 200*time.Millisecond, func(_ []byte, mac net.HardwareAddr, flags byte) {
				if mac.String() == plan.MAC.String() && flags == naOverride {
					announced++
				}
			})
			if announced == 0 {
				t.Error("no unsolicited advertisement of the VIP at start")
			}
			snm := solicitedNodeMAC(testVIP6.Addr())
			if _, err := c.WriteTo(ether(snm, x.srcMAC, nsPacket(testClient6, testVIP6.Addr(), x.srcMAC)), &packet.Addr{HardwareAddr: snm}); err != nil {
				t.Fatal(err)
			}
			replies := 0
			eachNA(c, 300*time.Millisecond, func(frame []byte, mac net.HardwareAddr, flags byte) {
				replies++
				if mac.String() != plan.MAC.String() || flags != naSolicited|naOverride {
					t.Errorf("advertisement of the VIP: %s flags %#x, want %s solicited+override", mac, flags, plan.MAC)
				}
				if src := net.HardwareAddr(frame[6:12]); src.String() != x.nic.HardwareAddr.String() {
					t.Errorf("advertisement's Ethernet source %s, want the NIC's %s", src, x.nic.HardwareAddr)
				}
				if dst := net.HardwareAddr(frame[0:6]); dst.String() != x.srcMAC.String() {
					t.Errorf("advertisement sent to %s, want the asker %s", dst, x.srcMAC)
				}
			})
			if replies != 1 {
				t.Errorf("%d advertisements answered the solicitation, want 1 (the agent's; the kernel's must stay silent)", replies)
			}

			// The kernel's hash and Bucket agree on IPv6 flows.
			var ports []uint16
			for p := uint16(40000); p < 40040; p++ {
				ports = append(ports, p)
			}
			mine := map[uint32]bool{}
			for i, p := range ports {
				if tc.affinity != "none" || i%2 == 0 {
					mine[uint32(Bucket(tc.affinity, netip.AddrPortFrom(testClient6, p), testSeed, TableSize))] = true
				}
			}
			want := map[uint16]bool{}
			for _, p := range ports {
				if mine[uint32(Bucket(tc.affinity, netip.AddrPortFrom(testClient6, p), testSeed, TableSize))] {
					want[p] = true
				}
			}
			var owned []uint32
			for b := range mine {
				owned = append(owned, b)
			}
			if err := dp.Apply(Ownership{Owned: map[[2]int][]uint32{{0, 0}: owned}}); err != nil {
				t.Fatal(err)
			}
			if got := probe6(t, c, plan.MAC, x.srcMAC, ports); !sameSet(got, want) {
				t.Fatalf("answered %d ports, want %d: got %v want %v", len(got), len(want), keys(got), keys(want))
			}
			if err := dp.StopNew(); err != nil {
				t.Fatal(err)
			}
			if got := probe6(t, c, plan.MAC, x.srcMAC, []uint16{41000, 41001, 41002, 41003}); len(got) != 0 {
				t.Errorf("after StopNew, answered %v", keys(got))
			}
			closed = true
			if err := dp.Close(); err != nil {
				t.Fatal(err)
			}
			if hasAddr(t, "lo", testVIP6.Addr()) || tableExists(t, nftTable6, nftables.TableFamilyIPv6) {
				t.Error("the VIP or the ip6 table is left after Close")
			}
		})
	}
}

// eachNA calls f with every advertisement of testVIP6 that arrives on c
// within d: the frame, the MAC it advertises and its flags.
func eachNA(c *packet.Conn, d time.Duration, f func(frame []byte, mac net.HardwareAddr, flags byte)) {
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if target, mac, flags, ok := parseNA(buf[14:n]); ok && target == testVIP6.Addr() {
			f(buf[:n], mac, flags)
		}
	}
}

// TestCleanupIPv6: what a dead agent left of an IPv6 VIP (the address
// on lo, the ip6 table) goes with clusterd cleanup.
func TestCleanupIPv6(t *testing.T) {
	newLAN6(t)
	dp, err := newDatapath(quietLog(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Setup([]VIPPlan{testPlan6("multicast", "none")}, time.Second); err != nil {
		t.Fatal(err)
	}
	// Dead: no Close (its raw sockets go with the test's end).
	done, err := Cleanup([]Leftover{{Interface: VIPDevice(testVIP6.Addr(), "vip0"), Prefix: netip.PrefixFrom(testVIP6.Addr(), 128)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanup: %v", done)
	if hasAddr(t, "lo", testVIP6.Addr()) || tableExists(t, nftTable6, nftables.TableFamilyIPv6) {
		t.Errorf("left after cleanup: VIP on lo %v, ip6 table %v", hasAddr(t, "lo", testVIP6.Addr()), tableExists(t, nftTable6, nftables.TableFamilyIPv6))
	}
	dp.Close()
}
