package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The group fence keeps a group VIP's lease in the kernel: packets to the
// VIP, and ARP requests for it, are dropped unless the VIP's element in
// its lease set is alive. The agent refreshes the element with the lease's
// remaining time whenever the quorum extends the lease; if the agent dies
// (kill -9, a hung process) the element runs out exactly when the lease
// does, and the node stops answering for the VIP although the address is
// still on its NIC. So a dead agent's node can never take writes meant
// for the new owner, with millisecond precision and no process involved.
const (
	fenceTable    = "clusterd_group"
	fenceARPTable = "clusterd_group_arp"
	// fenceTable6 fences IPv6 group VIPs (made on the first one): their
	// packets and the neighbour solicitations for them.
	fenceTable6 = "clusterd_group6"
)

type fence struct {
	mu     sync.Mutex
	conn   *nftables.Conn // lasting, opened by openFence
	nft    *nftables.Conn // conn, once the tables are installed
	table  *nftables.Table
	chain  *nftables.Chain
	arpTbl *nftables.Table
	arpIn  *nftables.Chain
	table6 *nftables.Table // nil until an IPv6 VIP is fenced
	chain6 *nftables.Chain
	// leases: per VIP, the sets whose element is its lease (one per
	// table that tests it).
	leases map[netip.Addr][]*nftables.Set
}

var groupFence fence

// ensure creates the fence tables on first use, replacing any left by an
// earlier run (the agent releases stale addresses before it claims).
func (f *fence) ensure() error {
	if f.nft != nil {
		return nil
	}
	if f.conn == nil {
		if err := f.open(); err != nil {
			return err
		}
	}
	c := f.conn
	if t, err := c.ListTableOfFamily(fenceTable, nftables.TableFamilyIPv4); err == nil && t != nil {
		c.DelTable(t)
	}
	if t, err := c.ListTableOfFamily(fenceARPTable, nftables.TableFamilyARP); err == nil && t != nil {
		c.DelTable(t)
	}
	if t, err := c.ListTableOfFamily(fenceTable6, nftables.TableFamilyIPv6); err == nil && t != nil {
		c.DelTable(t)
	}
	f.table = c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: fenceTable})
	// Raw priority, before conntrack: established connections are cut
	// off too; a fenced node must not finish a client's transaction.
	f.chain = c.AddChain(&nftables.Chain{Name: "prerouting", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	f.arpTbl = c.AddTable(&nftables.Table{Family: nftables.TableFamilyARP, Name: fenceARPTable})
	f.arpIn = c.AddChain(&nftables.Chain{Name: "input", Table: f.arpTbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookRef(nfARPIn), Priority: nftables.ChainPriorityFilter})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the group fence tables: %w", err)
	}
	f.nft, f.leases = c, map[netip.Addr][]*nftables.Set{}
	return nil
}

// ensure6 adds the IPv6 fence table on the first IPv6 VIP.
func (f *fence) ensure6() {
	if f.table6 != nil {
		return
	}
	f.table6 = f.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv6, Name: fenceTable6})
	f.chain6 = f.nft.AddChain(&nftables.Chain{Name: "prerouting", Table: f.table6, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
}

// open makes the fence's lasting netlink connection. google/nftables tests
// a socket's readiness with select(2), which panics on a descriptor number
// of 1024 or more: the socket must be opened while the process holds few
// descriptors, at start, and kept (see openFence).
func (f *fence) open() error {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	f.conn = c
	return nil
}

// openFence opens the fence's netlink socket if it is not open yet; the
// agent calls it (through NewOwned) before it accepts any connection.
func openFence() error {
	groupFence.mu.Lock()
	defer groupFence.mu.Unlock()
	if groupFence.conn != nil {
		return nil
	}
	return groupFence.open()
}

// vip adds the drop rules for addr (once per process) and returns the sets
// that hold its lease.
func (f *fence) vip(addr netip.Addr) ([]*nftables.Set, error) {
	if s, ok := f.leases[addr]; ok {
		return s, nil
	}
	c := f.nft
	ip := addr.AsSlice()
	unleased := func(base expr.PayloadBase, offset uint32, set *nftables.Set, pre ...expr.Any) []expr.Any {
		return append(pre,
			&expr.Payload{DestRegister: reg1, Base: base, Offset: offset, Len: uint32(len(ip))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ip},
			&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID, Invert: true},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
	}
	var sets []*nftables.Set
	if addr.Is4() {
		// Keyed by the VIP itself (a typed key nft can print and load back).
		s := &nftables.Set{Table: f.table, Name: "lease_" + addr.String(), KeyType: nftables.TypeIPAddr, HasTimeout: true}
		if err := c.AddSet(s, nil); err != nil {
			return nil, err
		}
		// ARP requests for the VIP go to the same test through a set of the
		// arp table (sets belong to one table).
		as := &nftables.Set{Table: f.arpTbl, Name: "lease_" + addr.String(), KeyType: nftables.TypeIPAddr, HasTimeout: true}
		if err := c.AddSet(as, nil); err != nil {
			return nil, err
		}
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.chain, Exprs: unleased(expr.PayloadBaseNetworkHeader, 16, s)})   // IPv4 daddr
		c.AddRule(&nftables.Rule{Table: f.arpTbl, Chain: f.arpIn, Exprs: unleased(expr.PayloadBaseNetworkHeader, 24, as)}) // ARP target IP
		sets = []*nftables.Set{s, as}
	} else {
		f.ensure6()
		s := &nftables.Set{Table: f.table6, Name: "lease_" + strings.ReplaceAll(addr.String(), ":", "_"), KeyType: nftables.TypeIP6Addr, HasTimeout: true}
		if err := c.AddSet(s, nil); err != nil {
			return nil, err
		}
		c.AddRule(&nftables.Rule{Table: f.table6, Chain: f.chain6, Exprs: unleased(expr.PayloadBaseNetworkHeader, 24, s)}) // IPv6 daddr
		// Neighbour solicitations for the VIP (sent to its solicited-node
		// group, not to the VIP): the target at ICMPv6 offset 8.
		ns := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{135}},
		}
		c.AddRule(&nftables.Rule{Table: f.table6, Chain: f.chain6, Exprs: unleased(expr.PayloadBaseTransportHeader, 8, s, ns...)})
		sets = []*nftables.Set{s}
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("installing the fence for %s: %w", addr, err)
	}
	f.leases[addr] = sets
	return sets, nil
}

// lease sets addr's lease to run out after d (0: now).
func (f *fence) lease(addr netip.Addr, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ensure(); err != nil {
		return err
	}
	sets, err := f.vip(addr)
	if err != nil {
		return err
	}
	for _, set := range sets {
		f.nft.FlushSet(set)
		if d > 0 {
			if err := f.nft.SetAddElements(set, []nftables.SetElement{{Key: addr.AsSlice(), Timeout: d}}); err != nil {
				return err
			}
		}
	}
	return f.nft.Flush()
}

func fenceOwned(addr netip.Addr, d time.Duration) error { return groupFence.lease(addr, d) }

// CloseFence removes the group fence tables at a clean stop, once the
// groups have released their VIPs: a stopped agent leaves no rule that
// drops a group VIP's traffic (the next owner may be this node again,
// under another agent or none).
func CloseFence() error {
	f := &groupFence
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil
	}
	var errs []error
	if f.nft != nil {
		f.nft.DelTable(f.table)
		f.nft.DelTable(f.arpTbl)
		if f.table6 != nil {
			f.nft.DelTable(f.table6)
		}
		if err := f.nft.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("removing the group fence tables: %w", err))
		}
	}
	if err := f.conn.CloseLasting(); err != nil {
		errs = append(errs, fmt.Errorf("closing the fence's nftables socket: %w", err))
	}
	f.conn, f.nft, f.table, f.arpTbl, f.table6, f.chain6, f.leases = nil, nil, nil, nil, nil, nil, nil
	return errors.Join(errs...)
}
