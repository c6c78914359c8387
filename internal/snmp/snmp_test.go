package snmp

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/testenv"
	"github.com/clusterd/clusterd/internal/vocab"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var start = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func testStatus() api.Status {
	return api.Status{
		Cluster: "his", Node: "web1", Converged: true,
		Members: []api.Member{
			{Name: "web1", Priority: 1, Address: "192.168.1.2", State: "active", Healthy: true, Buckets: 8191, StateChanges: 1, Since: start.Add(time.Second)},
			{Name: "web2", Priority: 2, Address: "192.168.1.3", State: "failed", Healthy: true, Buckets: 0, StateChanges: 3, Since: start.Add(time.Minute)},
			{Name: "web3", Priority: 3, Address: "192.168.1.4", State: "draining", Healthy: false, Buckets: 8190, Connections: 12, StateChanges: 2, Since: start.Add(2 * time.Second)},
		},
		VIPs: []api.VIP{{Address: "172.16.1.1/27", Mode: "multicast", MAC: "03:bf:ac:10:01:01", Generation: 7, PacketsAccepted: 1204331, PacketsDropped: 2408662,
			Rules: []api.Rule{{Ports: "80", Protocol: "tcp", BucketsTotal: 16381, Owners: map[string]int{"web1": 8191, "web3": 8190}}}}},
		Groups: []api.Group{},
	}
}

func startAgent(t *testing.T) *Agent {
	t.Helper()
	testenv.SkipUnderWine(t, testenv.WineLacksUDP)
	a, err := NewAgent("127.0.0.1:0", "public", testStatus, start, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() { a.Close() })
	return a
}

func client(t *testing.T, a *Agent, community string, v gosnmp.SnmpVersion) *gosnmp.GoSNMP {
	addr := a.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	p := 0
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	g := &gosnmp.GoSNMP{Target: "127.0.0.1", Port: uint16(p), Community: community, Version: v, Timeout: 300 * time.Millisecond, Retries: 0, MaxRepetitions: 10}
	if err := g.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Conn.Close() })
	return g
}

func TestAgentGetWalkBulk(t *testing.T) {
	a := startAgent(t)
	g := client(t, a, "public", gosnmp.Version2c)
	r, err := g.Get([]string{oidCluster + ".1.0", oidMemberEntry + ".4.2", oidCluster + ".99.0"})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Variables[0].Value.([]byte)) != "his" || r.Variables[1].Value.(int) != 5 || r.Variables[2].Type != gosnmp.NoSuchObject {
		t.Fatalf("GET: %+v", r.Variables)
	}
	var walk, bulk []string
	if err := g.Walk(Root, func(p gosnmp.SnmpPDU) error { walk = append(walk, p.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := g.BulkWalk(Root, func(p gosnmp.SnmpPDU) error { bulk = append(bulk, p.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walk) != len(Build(testStatus(), start)) || strings.Join(walk, ",") != strings.Join(bulk, ",") {
		t.Fatalf("walk %d vars, bulk %d, tree %d", len(walk), len(bulk), len(Build(testStatus(), start)))
	}
	// The member table is indexed by priority; its state column walks in
	// priority order.
	var states []int
	g.Walk(oidMemberEntry+".4", func(p gosnmp.SnmpPDU) error { states = append(states, p.Value.(int)); return nil })
	if len(states) != 3 || states[0] != 2 || states[1] != 5 || states[2] != 3 {
		t.Fatalf("states %v", states)
	}
	// The system group, for pollers' availability checks.
	if r, err := g.Get([]string{"1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.2.0"}); err != nil || r.Variables[0].Type != gosnmp.TimeTicks ||
		string(r.Variables[1].Value.([]byte)) != "web1" || r.Variables[2].Value.(string) != "."+Root {
		t.Fatalf("system group: %+v %v", r, err)
	}
	// v1 works for GET too.
	g1 := client(t, a, "public", gosnmp.Version1)
	if r, err := g1.Get([]string{oidCluster + ".2.0"}); err != nil || string(r.Variables[0].Value.([]byte)) != "web1" {
		t.Fatalf("v1 GET: %v %v", r, err)
	}
}

func TestAgentWrongCommunityGetsNoAnswer(t *testing.T) {
	a := startAgent(t)
	g := client(t, a, "private", gosnmp.Version2c)
	if _, err := g.Get([]string{oidCluster + ".1.0"}); err == nil {
		t.Fatal("answered a wrong community")
	}
	if a.BadCommunity.Load() == 0 {
		t.Fatal("wrong community not counted")
	}
}

// TestTrapGolden pins the encoding of one notification per event type.
func TestTrapGolden(t *testing.T) {
	for typ := range vocab.Notification {
		e := api.Event{Time: start, Type: typ, Node: "web2", Detail: "detail of " + string(typ)}
		if typ == vocab.GroupFailover {
			e = api.Event{Time: start, Type: typ, Node: "db2", Group: "db", From: "db1", Detail: "db: db1 -> db2 (owner_failed)"}
		}
		vars, err := TrapVars(e, 12345, 7)
		if err != nil {
			t.Fatal(err)
		}
		pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.SNMPv2Trap, RequestID: 1, Variables: vars}
		b, err := pkt.MarshalMsg()
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", string(typ)+".trap.hex")
		if *update {
			os.WriteFile(golden, []byte(hex.Dump(b)), 0o644)
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(want, []byte(hex.Dump(b))) {
			t.Errorf("%s: encoding changed:\n%s", typ, hex.Dump(b))
		}
		if vars[0].Name != oidSysUpTime || vars[1].Name != oidSnmpTrapOID {
			t.Errorf("%s: sysUpTime.0 and snmpTrapOID.0 must come first", typ)
		}
	}
}

func FuzzAgentHandle(f *testing.F) {
	testenv.SkipUnderWine(f, testenv.WineLacksUDP)
	a, err := NewAgent("127.0.0.1:0", "public", testStatus, start, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	defer a.Close()
	req := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public", PDUType: gosnmp.GetBulkRequest, RequestID: 9, MaxRepetitions: 5,
		Variables: []gosnmp.SnmpPDU{{Name: Root, Type: gosnmp.Null}}}
	b, _ := req.MarshalMsg()
	f.Add(b)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		a.Handle(pkt)
	})
}

// TestMIBMatchesVocabulary: every trapped event type has its notification
// in CLUSTERD-MIB under the number vocab gives (cdNodeJoined for
// node_joined, ...), the MIB has no other notification, and its member
// and group state enumerations are vocab's, in order.
func TestMIBMatchesVocabulary(t *testing.T) {
	b, err := os.ReadFile("../../packaging/snmp/CLUSTERD-MIB.txt")
	if err != nil {
		t.Fatal(err)
	}
	mib := string(b)
	camel := func(e vocab.EventType) string {
		out := "cd"
		for _, w := range strings.Split(string(e), "_") {
			out += strings.ToUpper(w[:1]) + w[1:]
		}
		return out
	}
	for e, n := range vocab.Notification {
		name := camel(e)
		i := strings.Index(mib, name+" NOTIFICATION-TYPE")
		if i < 0 {
			t.Errorf("%s: no %s NOTIFICATION-TYPE in the MIB", e, name)
			continue
		}
		end := strings.Index(mib[i:], "::=")
		if end < 0 || !strings.HasPrefix(mib[i+end:], fmt.Sprintf("::= { cdNotifications %d }", n)) {
			t.Errorf("%s: %s is not cdNotifications %d", e, name, n)
		}
	}
	if got := strings.Count(mib, "NOTIFICATION-TYPE\n"); got != len(vocab.Notification) {
		t.Errorf("the MIB defines %d notifications, vocab %d", got, len(vocab.Notification))
	}
	enum := func(list []string) string {
		parts := make([]string, len(list))
		for i, s := range list {
			c := camel(vocab.EventType(s)) // cdFailingOver
			parts[i] = fmt.Sprintf("%s%s(%d)", strings.ToLower(c[2:3]), c[3:], i+1)
		}
		return strings.Join(parts, ", ")
	}
	var ms, gs []string
	for _, s := range vocab.MemberStates {
		ms = append(ms, string(s))
	}
	for _, s := range vocab.GroupStates {
		gs = append(gs, string(s))
	}
	for _, want := range []string{enum(ms), enum(gs)} {
		if !strings.Contains(strings.Join(strings.Fields(mib), " "), want) {
			t.Errorf("the MIB lacks the enumeration %q", want)
		}
	}
}

// TestUntrappedEventsTakeNoSlot: an event type that is not a notification
// never enters the bounded trap queue (a flood of path_down or
// node_refused must not push real notifications out).
func TestUntrappedEventsTakeNoSlot(t *testing.T) {
	tr, err := NewTrapper("web1", []config.TrapTarget{{Target: "127.0.0.1:9", Version: "v2c", Community: "public"}}, start, func() uint { return 0 },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for e := range vocab.NotTrapped {
		for i := 0; i < QueueSize; i++ {
			tr.Notify(api.Event{Time: start, Type: e, Node: "web2"})
		}
	}
	tr.Notify(api.Event{Time: start, Type: vocab.NodeFailed, Node: "web2"})
	if len(tr.q) != 1 || tr.Dropped.Load() != 0 {
		t.Fatalf("queue holds %d, dropped %d; want only the node_failed", len(tr.q), tr.Dropped.Load())
	}
}

// TestMemberReachability: cdMemberReachability shows a member this node
// does not hear (unheard) and one left out by agreement (cut).
func TestMemberReachability(t *testing.T) {
	s := testStatus()
	s.Members[1].Unheard = true
	s.Members[2].Unheard, s.Members[2].Cut = true, true
	tree := Build(s, start)
	for prio, want := range map[int]int{1: 1, 2: 2, 3: 3} {
		v, ok := tree.Get(parseOID(fmt.Sprintf("%s.11.%d", oidMemberEntry, prio)))
		if !ok || v.PDU.Value != want {
			t.Errorf("member %d: cdMemberReachability %v (found %v), want %d", prio, v.PDU.Value, ok, want)
		}
	}
}

// TestVIPAddressColumns: an IPv6 VIP shows in cdVipAddressText and its
// prefix length, and as 0.0.0.0 in the IPv4-only cdVipAddress; an IPv4
// one in both.
func TestVIPAddressColumns(t *testing.T) {
	s := testStatus()
	s.VIPs = append(s.VIPs, api.VIP{Address: "fd00:77:1::100/64", Mode: "unicast", MAC: "02:bf:00:00:01:00"})
	tree := Build(s, start)
	for i, want := range []struct {
		ip, text string
		bits     int
	}{{"172.16.1.1", "172.16.1.1", 27}, {"0.0.0.0", "fd00:77:1::100", 64}} {
		ip, _ := tree.Get(parseOID(fmt.Sprintf("%s.2.%d", oidVipEntry, i+1)))
		bits, _ := tree.Get(parseOID(fmt.Sprintf("%s.3.%d", oidVipEntry, i+1)))
		text, _ := tree.Get(parseOID(fmt.Sprintf("%s.10.%d", oidVipEntry, i+1)))
		if ip.PDU.Value != want.ip || bits.PDU.Value != want.bits || string(text.PDU.Value.([]byte)) != want.text {
			t.Errorf("VIP %d: cdVipAddress %v, cdVipPrefixLength %v, cdVipAddressText %q; want %s, %d, %s", i+1, ip.PDU.Value, bits.PDU.Value, text.PDU.Value, want.ip, want.bits, want.text)
		}
	}
}
