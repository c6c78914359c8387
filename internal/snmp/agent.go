package snmp

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/version"
)

// Agent is the built-in read-only SNMP agent (v1/v2c GET, GETNEXT, and
// v2c GETBULK) for hosts without net-snmp's snmpd, and for Windows. gosnmp
// has no agent side; its BER codec decodes requests and encodes answers.
// SNMPv3 polling is left to snmpd + AgentX rather than hand-rolling USM.
type Agent struct {
	community []byte
	status    func() api.Status
	start     time.Time
	log       *slog.Logger
	conn      *net.UDPConn

	mu      sync.Mutex
	tree    Tree
	builtAt time.Time

	Requests     atomic.Uint64
	BadCommunity atomic.Uint64
	Malformed    atomic.Uint64

	wg   sync.WaitGroup
	once sync.Once
}

// NewAgent listens on addr (host:port, UDP).
func NewAgent(addr, community string, status func() api.Status, start time.Time, log *slog.Logger) (*Agent, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return &Agent{community: []byte(community), status: status, start: start, log: log, conn: c}, nil
}

// Addr is the address the agent listens on.
func (a *Agent) Addr() net.Addr { return a.conn.LocalAddr() }

// Start serves requests until Close.
func (a *Agent) Start() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := a.conn.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if out := a.Handle(buf[:n]); out != nil {
				a.conn.WriteToUDP(out, from)
			}
		}
	}()
}

// Close stops the agent (idempotent).
func (a *Agent) Close() error {
	a.once.Do(func() {
		a.conn.Close()
		a.wg.Wait()
	})
	return nil
}

// snapshot rebuilds the tree at most every 200 ms, so a walk sees one
// consistent picture and a flood of requests costs one status each.
func (a *Agent) snapshot() Tree {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tree == nil || time.Since(a.builtAt) > 200*time.Millisecond {
		st := a.status()
		// The system group sorts before the enterprise subtree.
		a.tree = append(systemGroup(st, a.start), Build(st, a.start)...)
		a.builtAt = time.Now()
	}
	return a.tree
}

// systemGroup is SNMPv2-MIB's system group for the built-in agent (snmpd
// serves its own when clusterd is an AgentX subagent): pollers such as
// Cacti test a device's availability with sysUpTime and sysDescr, and
// reindex tables when sysUpTime goes backwards.
func systemGroup(s api.Status, start time.Time) Tree {
	var t Tree
	sys := "1.3.6.1.2.1.1."
	t.add(sys+"1.0", gosnmp.OctetString, displayString(fmt.Sprintf("clusterd %s, node %s of cluster %s", version.Version, s.Node, s.Cluster)))
	t.add(sys+"2.0", gosnmp.ObjectIdentifier, "."+Root)
	t.add(sys+"3.0", gosnmp.TimeTicks, uint32(time.Since(start)/(10*time.Millisecond)))
	t.add(sys+"4.0", gosnmp.OctetString, []byte(""))
	t.add(sys+"5.0", gosnmp.OctetString, displayString(s.Node))
	t.add(sys+"6.0", gosnmp.OctetString, []byte(""))
	t.add(sys+"7.0", gosnmp.Integer, 72) // applications + end-to-end
	return t
}

// maxRepetitions bounds a GETBULK answer (and so the reply's size).
const maxRepetitions = 64

// Handle answers one request datagram, or returns nil: malformed packets,
// SNMPv3, and a wrong community get no answer (counted), as snmpd does.
func (a *Agent) Handle(pkt []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil { // the decoder must never take the agent down
			a.Malformed.Add(1)
			out = nil
		}
	}()
	dec := &gosnmp.GoSNMP{Logger: gosnmp.NewLogger(nil)}
	req, err := dec.SnmpDecodePacket(pkt)
	if err != nil {
		a.Malformed.Add(1)
		return nil
	}
	if req.Version == gosnmp.Version3 {
		a.Malformed.Add(1)
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(req.Community), a.community) != 1 {
		a.BadCommunity.Add(1)
		return nil
	}
	a.Requests.Add(1)
	tree := a.snapshot()
	resp := &gosnmp.SnmpPacket{
		Version: req.Version, Community: req.Community, PDUType: gosnmp.GetResponse,
		RequestID: req.RequestID, Variables: []gosnmp.SnmpPDU{},
	}
	v1 := req.Version == gosnmp.Version1
	noSuch := func(name string, idx int, typ gosnmp.Asn1BER) {
		if v1 {
			resp.Error, resp.ErrorIndex = gosnmp.NoSuchName, uint8(idx+1)
			resp.Variables = req.Variables
			return
		}
		resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: name, Type: typ})
	}
	switch req.PDUType {
	case gosnmp.GetRequest, gosnmp.GetNextRequest:
		lookup, missing := tree.Get, gosnmp.NoSuchObject
		if req.PDUType == gosnmp.GetNextRequest {
			lookup, missing = tree.Next, gosnmp.EndOfMibView
		}
		for i, v := range req.Variables {
			if x, ok := lookup(parseOID(v.Name)); ok {
				resp.Variables = append(resp.Variables, x.PDU)
			} else {
				noSuch(v.Name, i, missing)
			}
		}
	case gosnmp.GetBulkRequest:
		if v1 {
			a.Malformed.Add(1)
			return nil
		}
		nonRep := min(int(req.NonRepeaters), len(req.Variables))
		for _, v := range req.Variables[:nonRep] {
			if x, ok := tree.Next(parseOID(v.Name)); ok {
				resp.Variables = append(resp.Variables, x.PDU)
			} else {
				resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.EndOfMibView})
			}
		}
		reps := min(int(req.MaxRepetitions), maxRepetitions)
		cursors := make([][]int, 0, len(req.Variables)-nonRep)
		for _, v := range req.Variables[nonRep:] {
			cursors = append(cursors, parseOID(v.Name))
		}
		for r := 0; r < reps && len(cursors) > 0; r++ {
			done := true
			for i, c := range cursors {
				if x, ok := tree.Next(c); ok {
					resp.Variables = append(resp.Variables, x.PDU)
					cursors[i] = x.OID
					done = false
				} else {
					resp.Variables = append(resp.Variables, gosnmp.SnmpPDU{Name: oidString(c), Type: gosnmp.EndOfMibView})
				}
			}
			if done {
				break
			}
		}
	default:
		// Read-only: SET and anything else is refused.
		resp.Error, resp.ErrorIndex = gosnmp.NoAccess, 1
		if v1 {
			resp.Error = gosnmp.ReadOnly
		}
		resp.Variables = req.Variables
	}
	b, err := resp.MarshalMsg()
	if err != nil {
		a.log.Warn("encoding an SNMP answer", slog.Any("error", err))
		return nil
	}
	return b
}
