package snmp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/posteo/go-agentx"
	"github.com/posteo/go-agentx/pdu"
	"github.com/posteo/go-agentx/value"

	"github.com/clusterd/clusterd/internal/api"
)

// SubagentHandler serves the MIB's tree to net-snmp's snmpd over AgentX
// (github.com/posteo/go-agentx), so that pollers that already poll the
// host's snmpd (Cacti), with its SNMPv3 users, see clusterd's tables.
type SubagentHandler struct {
	status func() (api.Status, error)
	start  time.Time

	mu      sync.Mutex
	tree    Tree
	builtAt time.Time
}

// NewSubagentHandler builds the handler over a status source.
func NewSubagentHandler(status func() (api.Status, error), start time.Time) *SubagentHandler {
	return &SubagentHandler{status: status, start: start}
}

func (h *SubagentHandler) snapshot() Tree {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tree == nil || time.Since(h.builtAt) > 200*time.Millisecond {
		if s, err := h.status(); err == nil {
			h.tree, h.builtAt = Build(s, h.start), time.Now()
		}
	}
	return h.tree
}

func toOID(o value.OID) []int {
	out := make([]int, len(o))
	for i, n := range o {
		out[i] = int(n)
	}
	return out
}

func fromOID(o []int) value.OID {
	out := make(value.OID, len(o))
	for i, n := range o {
		out[i] = uint32(n)
	}
	return out
}

// agentxValue converts a gosnmp-typed value to go-agentx's types.
func agentxValue(v Var) (pdu.VariableType, any) {
	p := v.PDU
	switch p.Type {
	case 0x02: // Integer
		return pdu.VariableTypeInteger, int32(p.Value.(int))
	case 0x04: // OctetString
		return pdu.VariableTypeOctetString, string(p.Value.([]byte))
	case 0x40: // IpAddress
		return pdu.VariableTypeIPAddress, net.ParseIP(p.Value.(string)).To4()
	case 0x41: // Counter32
		return pdu.VariableTypeCounter32, uint32(p.Value.(uint))
	case 0x42: // Gauge32
		return pdu.VariableTypeGauge32, uint32(p.Value.(uint))
	case 0x43: // TimeTicks
		return pdu.VariableTypeTimeTicks, time.Duration(p.Value.(uint32)) * 10 * time.Millisecond
	case 0x46: // Counter64
		return pdu.VariableTypeCounter64, p.Value.(uint64)
	}
	return pdu.VariableTypeNull, nil
}

// Get answers an exact lookup.
func (h *SubagentHandler) Get(ctx context.Context, oid value.OID) (value.OID, pdu.VariableType, any, error) {
	if v, ok := h.snapshot().Get(toOID(oid)); ok {
		t, x := agentxValue(v)
		return oid, t, x, nil
	}
	return nil, pdu.VariableTypeNoSuchObject, nil, nil
}

// GetNext answers the first instance after from (or at it, if
// includeFrom), below to.
func (h *SubagentHandler) GetNext(ctx context.Context, from value.OID, includeFrom bool, to value.OID) (value.OID, pdu.VariableType, any, error) {
	tree := h.snapshot()
	f := toOID(from)
	if includeFrom {
		if v, ok := tree.Get(f); ok {
			t, x := agentxValue(v)
			return fromOID(v.OID), t, x, nil
		}
	}
	v, ok := tree.Next(f)
	if !ok || (len(to) > 0 && compareOID(v.OID, toOID(to)) >= 0) {
		return nil, pdu.VariableTypeEndOfMIBView, nil, nil
	}
	t, x := agentxValue(v)
	return fromOID(v.OID), t, x, nil
}

// RunSubagent connects to snmpd's AgentX master socket, registers the
// CLUSTERD-MIB subtree and serves it until ctx ends. go-agentx reconnects
// when snmpd restarts; it panics on some errors, which is why clusterd runs
// this in a supervised child process (clusterd agentx) and not in itself.
func RunSubagent(ctx context.Context, master string, h *SubagentHandler, log *slog.Logger) error {
	network := "unix"
	if _, _, err := net.SplitHostPort(master); err == nil {
		network = "tcp"
	}
	c, err := agentx.Dial(network, master, agentx.WithTimeout(time.Minute), agentx.WithReconnectInterval(time.Second))
	if err != nil {
		return fmt.Errorf("connecting to the AgentX master %s: %w", master, err)
	}
	defer c.Close()
	s, err := c.Session(value.MustParseOID(Root), "clusterd", h)
	if err != nil {
		return fmt.Errorf("opening an AgentX session: %w", err)
	}
	if err := s.Register(127, value.MustParseOID(Root)); err != nil {
		return fmt.Errorf("registering %s with snmpd: %w", Root, err)
	}
	log.Info("serving CLUSTERD-MIB to snmpd over AgentX", slog.String("master", master))
	<-ctx.Done()
	return nil
}
