// Package snmp is clusterd's SNMP: one notification per cluster event
// (traps and informs, v2c and v3) and the MIB's tables for pollers, served
// by a built-in read-only v2c agent. The MIB is packaging/snmp/CLUSTERD-MIB.txt.
package snmp

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/vocab"
)

// Root is CLUSTERD-MIB's OID. It is provisional: enterprise number 32473
// is reserved for documentation (RFC 5612) and will be replaced by
// clusterd's own Private Enterprise Number once IANA assigns one; this is
// the only place that changes then.
const Root = "1.3.6.1.4.1.32473"

// Standard OIDs every notification starts with.
const (
	oidSysUpTime   = "1.3.6.1.2.1.1.3.0"
	oidSnmpTrapOID = "1.3.6.1.6.3.1.1.4.1.0"
)

// Subtrees of CLUSTERD-MIB.
const (
	oidNotifications = Root + ".0"
	oidCluster       = Root + ".1.1"
	oidMemberEntry   = Root + ".1.2.1"
	oidVipEntry      = Root + ".1.3.1"
	oidGroupEntry    = Root + ".1.4.1"
	oidNotifyObjects = Root + ".1.5"
)

// memberStates and groupStates number the states as the MIB's
// enumerations do (1-based, in vocab's order).
var memberStates = enumOf(vocab.MemberStates)
var groupStates = enumOf(vocab.GroupStates)

func enumOf[S ~string](list []S) map[string]int {
	m := make(map[string]int, len(list))
	for i, s := range list {
		m[string(s)] = i + 1
	}
	return m
}

var vipModes = map[string]int{"multicast": 1, "igmp": 2, "unicast": 3}
var replications = map[string]int{"sync": 1, "async": 2, "none": 3}

// Var is one object instance of the MIB.
type Var struct {
	OID []int
	PDU gosnmp.SnmpPDU
}

// Tree is the MIB's instances in lexicographic OID order, as GETNEXT walks
// them.
type Tree []Var

func parseOID(s string) []int {
	parts := strings.Split(strings.TrimPrefix(s, "."), ".")
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

func oidString(o []int) string {
	var b strings.Builder
	for _, n := range o {
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

func compareOID(a, b []int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func (t *Tree) add(oid string, typ gosnmp.Asn1BER, v any) {
	o := parseOID(oid)
	*t = append(*t, Var{OID: o, PDU: gosnmp.SnmpPDU{Name: oidString(o), Type: typ, Value: v}})
}

func truth(b bool) int {
	if b {
		return 1
	}
	return 2
}

func ip4(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "0.0.0.0"
	}
	return a.String()
}

// dateAndTime encodes SNMPv2-TC DateAndTime (11 octets, with the UTC offset).
func dateAndTime(t time.Time) []byte {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	t = t.UTC()
	y := t.Year()
	return []byte{byte(y >> 8), byte(y), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()),
		byte(t.Second()), byte(t.Nanosecond() / 1e8), '+', 0, 0}
}

// ticks is hundredths of a second since start, as TimeTicks.
func ticks(start, t time.Time) uint32 {
	if t.Before(start) {
		return 0
	}
	return uint32(t.Sub(start) / (10 * time.Millisecond))
}

// Build lays a status out as the MIB's instances. start is the agent's
// start (sysUpTime zero).
func Build(s api.Status, start time.Time) Tree {
	var t Tree
	active, changes := 0, uint64(0)
	var last time.Time
	for _, m := range s.Members {
		if m.State != "failed" && m.State != "left" {
			active++
		}
		changes += m.StateChanges
		if m.Since.After(last) {
			last = m.Since
		}
	}
	var gen uint64
	for _, v := range s.VIPs {
		gen = max(gen, v.Generation)
	}
	q := 0
	if s.Quorum != nil {
		q = truth(s.Quorum.HasQuorum)
	}
	c := oidCluster
	t.add(c+".1.0", gosnmp.OctetString, []byte(s.Cluster))
	t.add(c+".2.0", gosnmp.OctetString, []byte(s.Node))
	t.add(c+".3.0", gosnmp.Gauge32, uint(len(s.Members)))
	t.add(c+".4.0", gosnmp.Gauge32, uint(active))
	t.add(c+".5.0", gosnmp.Integer, truth(s.Converged))
	t.add(c+".6.0", gosnmp.Gauge32, uint(gen))
	t.add(c+".7.0", gosnmp.Integer, q)
	t.add(c+".8.0", gosnmp.Counter32, uint(changes))
	t.add(c+".9.0", gosnmp.TimeTicks, ticks(start, last))
	t.add(c+".10.0", gosnmp.OctetString, dateAndTime(last))
	for _, m := range s.Members {
		i := "." + strconv.Itoa(m.Priority)
		e := oidMemberEntry
		t.add(e+".2"+i, gosnmp.OctetString, []byte(m.Name))
		t.add(e+".3"+i, gosnmp.IPAddress, ip4(m.Address))
		t.add(e+".4"+i, gosnmp.Integer, memberStates[string(m.State)])
		t.add(e+".5"+i, gosnmp.Integer, truth(m.Healthy))
		t.add(e+".6"+i, gosnmp.Gauge32, uint(m.Buckets))
		t.add(e+".7"+i, gosnmp.Gauge32, uint(m.Connections))
		t.add(e+".8"+i, gosnmp.Counter32, uint(m.StateChanges))
		t.add(e+".9"+i, gosnmp.TimeTicks, ticks(start, m.Since))
		t.add(e+".10"+i, gosnmp.OctetString, dateAndTime(m.Since))
		t.add(e+".11"+i, gosnmp.Integer, reachability(m))
	}
	for vi, v := range s.VIPs {
		i := "." + strconv.Itoa(vi+1)
		e := oidVipEntry
		pfx, _ := netip.ParsePrefix(v.Address)
		mac := make([]byte, 0, 6)
		for _, h := range strings.Split(v.MAC, ":") {
			b, _ := strconv.ParseUint(h, 16, 8)
			mac = append(mac, byte(b))
		}
		owned := 0
		for _, r := range v.Rules {
			owned += r.Owners[s.Node]
		}
		t.add(e+".2"+i, gosnmp.IPAddress, ip4(pfx.Addr().String()))
		t.add(e+".3"+i, gosnmp.Integer, pfx.Bits())
		t.add(e+".4"+i, gosnmp.Integer, vipModes[v.Mode])
		t.add(e+".5"+i, gosnmp.OctetString, mac)
		t.add(e+".6"+i, gosnmp.Gauge32, uint(owned))
		t.add(e+".7"+i, gosnmp.Gauge32, uint(v.Generation))
		t.add(e+".8"+i, gosnmp.Counter64, v.PacketsAccepted)
		t.add(e+".9"+i, gosnmp.Counter64, v.PacketsDropped)
		t.add(e+".10"+i, gosnmp.OctetString, []byte(pfx.Addr().String()))
	}
	for gi, g := range s.Groups {
		i := "." + strconv.Itoa(gi+1)
		e := oidGroupEntry
		t.add(e+".2"+i, gosnmp.OctetString, []byte(g.Name))
		t.add(e+".3"+i, gosnmp.OctetString, []byte(g.Owner))
		t.add(e+".4"+i, gosnmp.Integer, groupStates[string(g.State)])
		t.add(e+".5"+i, gosnmp.Integer, replications[g.Replication])
		t.add(e+".6"+i, gosnmp.Gauge32, uint(min(g.LagBytes, 1<<32-1)))
		t.add(e+".7"+i, gosnmp.Counter32, uint(uint32(g.Failovers)))
	}
	sort.Slice(t, func(a, b int) bool { return compareOID(t[a].OID, t[b].OID) < 0 })
	return t
}

// Get returns the instance at oid exactly.
func (t Tree) Get(oid []int) (Var, bool) {
	i := sort.Search(len(t), func(i int) bool { return compareOID(t[i].OID, oid) >= 0 })
	if i < len(t) && compareOID(t[i].OID, oid) == 0 {
		return t[i], true
	}
	return Var{}, false
}

// Next returns the first instance after oid (GETNEXT).
func (t Tree) Next(oid []int) (Var, bool) {
	i := sort.Search(len(t), func(i int) bool { return compareOID(t[i].OID, oid) > 0 })
	if i < len(t) {
		return t[i], true
	}
	return Var{}, false
}

// reachability numbers cdMemberReachability: reachable(1), unheard(2),
// cut(3) (cut wins: a cut member may also be unheard).
func reachability(m api.Member) int {
	switch {
	case m.Cut:
		return 3
	case m.Unheard:
		return 2
	}
	return 1
}
