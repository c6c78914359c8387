package snmp

import (
	"bytes"
	"encoding/hex"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/clusterd/clusterd/internal/api"
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
	for typ := range notificationOf {
		e := api.Event{Time: start, Type: typ, Node: "web2", Detail: "detail of " + typ}
		if typ == "group_failover" {
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
		golden := filepath.Join("testdata", typ+".trap.hex")
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
	a, _ := NewAgent("127.0.0.1:0", "public", testStatus, start, slog.New(slog.DiscardHandler))
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
