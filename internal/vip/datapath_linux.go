package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Table names: clusterd owns these tables and touches nothing else.
const (
	nftTable = "clusterd"
	// nftTable6 (ip6 family) exists only with IPv6 VIPs: the same rules
	// as nftTable's at IPv6 offsets.
	nftTable6   = "clusterd6"
	nftARPTable = "clusterd_arp"
	// nftUnicastTable (netdev family) exists only with unicast VIPs: its
	// ingress chains mark frames to a cluster MAC as this host's.
	nftUnicastTable = "clusterd_uc"
)

// nfARPIn is NF_ARP_IN from linux/netfilter_arp.h (x/sys/unix lacks it).
const nfARPIn = 0

// Registers: NFT_REG_1 (16 bytes) and NFT_REG32_00, the first of the
// 32-bit registers (which alias NFT_REG_1 and the ones after it).
// Concatenated hash inputs start there and run on in 32-bit steps, as
// nft lays them out: an IPv6 address fills NFT_REG32_00..03, a port the
// next one.
const (
	reg1   = 1
	reg32a = 8
)

type nftDatapath struct {
	log *slog.Logger

	mu  sync.Mutex
	nft *nftables.Conn
	// fams: the VIP tables, IPv4's always, IPv6's with IPv6 VIPs.
	fams   []*famTable
	arpTbl *nftables.Table
	ucTbl  *nftables.Table // nil without unicast VIPs
	def    map[int]*nftables.Set
	own    map[ownKey]*nftables.Chain // dispatch chain: one jump to the active buffer
	buf    map[ownKey][3]*nftables.Chain
	active int           // which buffer the dispatch chains jump to
	queue  []stagedOwner // what Stage prepared in the other buffers, in order
	// accBase: accepted packets counted by buffer rules since replaced
	// (per VIP), so that the accepted counter never goes back.
	accBase map[int]uint64
	vips    []VIPPlan
	liveTTL time.Duration
	arps    []*neighResponder
	sysctls map[string]string // path -> value to restore
	// sysctlRecord: the file in node.state_dir that keeps the values to
	// restore, so that clusterd cleanup can restore them after a kill -9.
	sysctlRecord string
	addrs        []netlinkAddr
}

// stagedOwner is an ownership installed in buffer idx, not yet active; at
// is set for a stage the kernel switches to by itself (StageAt).
type stagedOwner struct {
	o   Ownership
	idx int
	at  time.Time
}

// famTable is one address family's table: its liveness set and the
// prerouting chain every VIP's rules of that family are in.
type famTable struct {
	f     *family
	table *nftables.Table
	live  *nftables.Set
	chain *nftables.Chain
}

// nftFamily is the nftables table family and the set key type of f.
func nftFamily(f *family) (nftables.TableFamily, nftables.SetDatatype, string) {
	if f == familyIPv6 {
		return nftables.TableFamilyIPv6, nftables.TypeIP6Addr, nftTable6
	}
	return nftables.TableFamilyIPv4, nftables.TypeIPAddr, nftTable
}

// famOf is the table of v's family (d.mu held, after buildRuleset).
func (d *nftDatapath) famOf(v VIPPlan) *famTable {
	f := familyOf(v.Addr.Addr())
	for _, ft := range d.fams {
		if ft.f == f {
			return ft
		}
	}
	return nil
}

type netlinkAddr struct {
	link netlink.Link
	addr *netlink.Addr
}

func newDatapath(log *slog.Logger, stateDir string) (datapath, error) {
	// Lasting: google/nftables tests readiness with select(2), which
	// panics on a descriptor number of 1024 or more, so the socket is
	// opened at start, while the process holds few descriptors, and kept.
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	d := &nftDatapath{log: log, nft: c, def: map[int]*nftables.Set{}, own: map[ownKey]*nftables.Chain{}, buf: map[ownKey][3]*nftables.Chain{}, accBase: map[int]uint64{}, sysctls: map[string]string{}}
	if stateDir != "" {
		d.sysctlRecord = filepath.Join(stateDir, sysctlRecordFile)
		// A killed agent's record holds the values from before it: those
		// are the ones to restore, not what it set.
		if old, err := readSysctlRecord(d.sysctlRecord); err == nil {
			d.sysctls = old
		}
	}
	return d, nil
}

func le32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

func (d *nftDatapath) Setup(vips []VIPPlan, liveTTL time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vips, d.liveTTL = vips, liveTTL
	// The addresses go on after the ruleset: its arp table keeps the
	// kernel from answering ARP for an IPv4 VIP with the NIC's own MAC,
	// and an address put on first would leave a moment in which a
	// client's ARP request got that answer and sent all its flows to
	// this one node.
	var add []netlinkAddr
	for _, v := range vips {
		nic, err := netlink.LinkByName(v.Interface)
		if err != nil {
			return fmt.Errorf("VIP %s: interface %s: %w", v.Addr, v.Interface, err)
		}
		// The address goes on as a host address (/32, /128): the prefix in
		// the config describes the subnet, but a host address leaves this
		// node's routes and source address selection untouched.
		bits := v.Addr.Addr().BitLen()
		a := &netlink.Addr{IPNet: &net.IPNet{IP: v.Addr.Addr().AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		link := nic
		if familyOf(v.Addr.Addr()) == familyIPv6 {
			if err := needLinkLocal(nic); err != nil {
				return fmt.Errorf("VIP %s: %w", v.Addr, err)
			}
			// On lo (VIPDevice). Every node holds the VIP: duplicate
			// address detection would fail it (and delay it by a second
			// when it does not).
			dev := VIPDevice(v.Addr.Addr(), v.Interface)
			if link, err = netlink.LinkByName(dev); err != nil {
				return fmt.Errorf("VIP %s: interface %s: %w", v.Addr, dev, err)
			}
			a.Flags = unix.IFA_F_NODAD
		} else {
			a.Label = labelFor(v.Interface)
			// Our ARP requests must come from the NIC's own address, never
			// the VIP, or clients and switches would learn VIP -> this
			// node's MAC.
			d.setSysctl(fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/arp_announce", v.Interface), "2")
		}
		add = append(add, netlinkAddr{link, a})
	}
	if err := d.buildRuleset(); err != nil {
		return err
	}
	for _, na := range add {
		if err := netlink.AddrReplace(na.link, na.addr); err != nil {
			return fmt.Errorf("adding VIP %s to %s: %w", na.addr.IP, na.link.Attrs().Name, err)
		}
		d.addrs = append(d.addrs, na)
	}
	for _, v := range vips {
		r, err := startNeighResponder(v, d.log)
		if err != nil {
			return err
		}
		d.arps = append(d.arps, r)
	}
	return nil
}

// needLinkLocal checks that nic has an IPv6 link-local address: the
// kernel sends the neighbour solicitations of a reply from a VIP on lo
// from it (and from no other address), so without one no client is ever
// resolved and every flow hangs.
func needLinkLocal(nic netlink.Link) error {
	name := nic.Attrs().Name
	as, err := netlink.AddrList(nic, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("listing the IPv6 addresses of %s: %w", name, err)
	}
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			return nil
		}
	}
	return fmt.Errorf("%s has no IPv6 link-local address (IPv6 off on it, or addr_gen_mode none): the node resolves the VIP's clients from it", name)
}

// labelFor names the VIP address so that `ip addr` shows who added it.
func labelFor(ifname string) string {
	l := ifname + ":cd"
	if len(l) > 15 {
		return ""
	}
	return l
}

func (d *nftDatapath) setSysctl(path, value string) {
	old, err := os.ReadFile(path)
	if err != nil {
		d.log.Warn("cannot read sysctl", slog.String("path", path), slog.Any("error", err))
		return
	}
	if _, saved := d.sysctls[path]; !saved {
		d.sysctls[path] = strings.TrimSpace(string(old))
		if d.sysctlRecord != "" {
			if err := writeSysctlRecord(d.sysctlRecord, d.sysctls); err != nil {
				d.log.Warn("cannot record the sysctl value to restore (clusterd cleanup will not restore it after a crash)", slog.Any("error", err))
			}
		}
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		d.log.Warn("cannot set sysctl", slog.String("path", path), slog.Any("error", err))
	}
}

// buildRuleset replaces our tables in one transaction.
func (d *nftDatapath) buildRuleset() error {
	c := d.nft
	for _, f := range []*family{familyIPv4, familyIPv6} {
		tf, _, name := nftFamily(f)
		if t, err := c.ListTableOfFamily(name, tf); err == nil && t != nil {
			c.DelTable(t)
		}
	}
	if t, err := c.ListTableOfFamily(nftARPTable, nftables.TableFamilyARP); err == nil && t != nil {
		c.DelTable(t)
	}
	if t, err := c.ListTableOfFamily(nftUnicastTable, nftables.TableFamilyNetdev); err == nil && t != nil {
		c.DelTable(t)
	}
	d.fams = nil
	for _, f := range []*family{familyIPv4, familyIPv6} {
		if f == familyIPv6 && !slices.ContainsFunc(d.vips, func(v VIPPlan) bool { return familyOf(v.Addr.Addr()) == f }) {
			continue
		}
		ft, err := addFamTable(c, f)
		if err != nil {
			return err
		}
		d.fams = append(d.fams, ft)
	}
	for _, v := range d.vips {
		ft := d.famOf(v)
		_, keyType, _ := nftFamily(ft.f)
		ds := &nftables.Set{Table: ft.table, Name: fmt.Sprintf("default_%d", v.Index), KeyType: keyType}
		if err := c.AddSet(ds, nil); err != nil {
			return fmt.Errorf("adding the default host set of VIP %s: %w", v.Addr.Addr(), err)
		}
		d.def[v.Index] = ds
		for ri, r := range v.Rules {
			for _, proto := range r.Protos {
				k := ownKey{v.Index, ri, proto}
				d.own[k] = c.AddChain(&nftables.Chain{Name: k.chain(), Table: ft.table})
				d.buf[k] = [3]*nftables.Chain{
					c.AddChain(&nftables.Chain{Name: k.chain() + "_a", Table: ft.table}),
					c.AddChain(&nftables.Chain{Name: k.chain() + "_b", Table: ft.table}),
					c.AddChain(&nftables.Chain{Name: k.chain() + "_c", Table: ft.table}),
				}
				d.active = 0
				c.AddRule(&nftables.Rule{Table: ft.table, Chain: d.own[k], Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: d.buf[k][0].Name}}})
			}
		}
		for _, r := range vipRules(v, ft.live, ds, func(ri int, proto uint8) string { return ownKey{v.Index, ri, proto}.chain() }) {
			r.Table, r.Chain = ft.table, ft.chain
			c.AddRule(r)
		}
	}
	d.arpTbl = c.AddTable(&nftables.Table{Family: nftables.TableFamilyARP, Name: nftARPTable})
	// In the arp family the input hook is NF_ARP_IN (0); google/nftables'
	// ChainHookInput is the inet value, which would be NF_ARP_OUT here.
	arpIn := c.AddChain(&nftables.Chain{Name: "input", Table: d.arpTbl, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookRef(nfARPIn), Priority: nftables.ChainPriorityFilter})
	for _, v := range d.vips {
		if familyOf(v.Addr.Addr()) != familyIPv4 {
			continue // IPv6: the kernel does not speak for a VIP on lo
		}
		// The kernel must not answer ARP for the VIP with the NIC's MAC:
		// the agent answers with the cluster MAC instead.
		c.AddRule(&nftables.Rule{Table: d.arpTbl, Chain: arpIn, Exprs: []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: v.Addr.Addr().AsSlice()},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	d.ucTbl = unicastIngress(c, d.vips)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the nftables ruleset: %w", err)
	}
	return nil
}

// addFamTable queues f's table with its liveness set and prerouting chain.
func addFamTable(c *nftables.Conn, f *family) (*famTable, error) {
	tf, keyType, name := nftFamily(f)
	ft := &famTable{f: f, table: c.AddTable(&nftables.Table{Family: tf, Name: name})}
	// Typed keys only (ipv4_addr, ipv6_addr; the buckets in anonymous
	// sets whose type nft infers from the hash), so that `nft list
	// ruleset` loads back with nft -f while clusterd runs.
	ft.live = &nftables.Set{Table: ft.table, Name: "live", KeyType: keyType, HasTimeout: true}
	if err := c.AddSet(ft.live, nil); err != nil {
		return nil, fmt.Errorf("adding the %s liveness set: %w", f.shown, err)
	}
	// Conntrack runs at -200; at mangle priority (-150) its verdict is known.
	ft.chain = c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: ft.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle,
	})
	return ft, nil
}

// unicastIngress adds the netdev table of the unicast VIPs (nil if there
// are none). A frame to a unicast cluster MAC reaches the NIC (the
// responder put the MAC on its unicast filter) but is marked for another
// host, which the IP layer drops before any other hook sees it; at ingress
// it is marked as this host's, and the VIP's ruleset decides from there as
// in the multicast modes.
func unicastIngress(c *nftables.Conn, vips []VIPPlan) *nftables.Table {
	var t *nftables.Table
	chains := map[string]*nftables.Chain{}
	for _, v := range vips {
		if v.Mode != "unicast" {
			continue
		}
		if t == nil {
			t = c.AddTable(&nftables.Table{Family: nftables.TableFamilyNetdev, Name: nftUnicastTable})
		}
		ch := chains[v.Interface]
		if ch == nil {
			ch = c.AddChain(&nftables.Chain{
				Name: "in_" + v.Interface, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter, Device: v.Interface,
			})
			chains[v.Interface] = ch
		}
		r := unicastRule(v)
		r.Table, r.Chain = t, ch
		c.AddRule(r)
	}
	return t
}

// unicastRule marks frames to v's unicast cluster MAC as this host's.
func unicastRule(v VIPPlan) *nftables.Rule {
	return &nftables.Rule{UserData: tag("uc", v.Index), Exprs: []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: v.MAC},
		&expr.Immediate{Register: reg1, Data: []byte{unix.PACKET_HOST}},
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, SourceRegister: true, Register: reg1},
	}}
}

func tag(kind string, vip int) []byte { return []byte(fmt.Sprintf("%s:%d", kind, vip)) }

// vipRules is the ruleset of one VIP, in order:
//
//  1. frames to the cluster MAC arrive as pkttype multicast, which TCP
//     drops: set pkttype host;
//  2. established TCP flows (and ICMP related to them) stay where they are,
//     but a bare TCP SYN is always new (see the rule);
//  3. per rule and protocol: a new flow whose bucket this node owns is
//     accepted while the agent is alive; for TCP only a bare SYN counts as
//     new, so mid-stream packets of a flow this node does not know are
//     dropped silently instead of being answered with RST;
//  4. anything else on a rule's ports is dropped;
//  5. traffic no rule matches (ICMP echo, other ports) goes to the default
//     host only;
//  6. the rest is dropped.
func vipRules(v VIPPlan, live, def *nftables.Set, own func(ri int, proto uint8) string) []*nftables.Rule {
	f := familyOf(v.Addr.Addr())
	daddr := []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: v.Addr.Addr().AsSlice()},
	}
	with := func(parts ...[]expr.Any) []expr.Any {
		var out []expr.Any
		out = append(out, daddr...)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// The VIP's element in the live set is alive (keyed by the VIP, so
	// nft can print and load it).
	isLive := []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Lookup{SourceRegister: reg1, SetName: live.Name, SetID: live.ID},
	}
	accept := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}
	drop := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	var rules []*nftables.Rule
	if v.Mode != "unicast" {
		rules = append(rules, &nftables.Rule{Exprs: with([]expr.Any{
			&expr.Immediate{Register: reg1, Data: []byte{unix.PACKET_HOST}},
			&expr.Meta{Key: expr.MetaKeyPKTTYPE, SourceRegister: true, Register: reg1},
		})})
	}
	known := []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: le32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: le32(0)},
	}
	// A bare SYN is a new connection whatever conntrack holds: it takes
	// the bucket check below, never this shortcut. conntrack ignores a
	// SYN that matches an entry it still counts established (a flow cut
	// by a fault, whose FIN or RST never arrived, lingers so for days;
	// a SYN resent after its bucket moved) and marks it established, so
	// the node would answer a flow another node owns: two answers, a
	// reset.
	rules = append(rules, &nftables.Rule{UserData: tag("acc", v.Index), Exprs: with([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{0x02}},
	}, known, accept)})
	rules = append(rules, &nftables.Rule{UserData: tag("acc", v.Index), Exprs: with([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
	}, known, accept)})
	for ri, r := range v.Rules {
		for _, proto := range r.Protos {
			match := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: binaryutil.BigEndian.PutUint16(r.Lo), ToData: binaryutil.BigEndian.PutUint16(r.Hi)},
			}
			if r.Filtering != "disabled" {
				var syn []expr.Any
				if proto == unix.IPPROTO_TCP {
					syn = []expr.Any{
						&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
						// FIN|SYN|RST|ACK == SYN
						&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
						&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0x02}},
					}
				}
				// The owned buckets are in the rule of the jumped-to chain
				// (ownRule); a flow not accepted there returns here and is
				// dropped by the next rule.
				jump := []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: own(ri, proto)}}
				rules = append(rules, &nftables.Rule{Exprs: with(match, syn, isLive, jump)})
			}
			rules = append(rules, &nftables.Rule{UserData: tag("drop", v.Index), Exprs: with(match, drop)})
		}
	}
	rules = append(rules, &nftables.Rule{UserData: tag("acc", v.Index), Exprs: with(isLive, []expr.Any{
		&expr.Lookup{SourceRegister: reg1, SetName: def.Name, SetID: def.ID},
	}, accept)})
	rules = append(rules, &nftables.Rule{UserData: tag("drop", v.Index), Exprs: with(drop)})
	return rules
}

// hashExprs put the flow's bucket into reg1, the way Bucket computes it
// (hashKey's layout: the source address from the first 32-bit register
// on, the source port in the one after it).
func hashExprs(f *family, affinity string, seed uint32) []expr.Any {
	saddr := &expr.Payload{DestRegister: reg32a, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen}
	h := &expr.Hash{SourceRegister: reg32a, DestRegister: reg1, Length: f.addrLen, Modulus: TableSize, Seed: seed, Type: expr.HashTypeJenkins}
	switch affinity {
	case "single":
		return []expr.Any{saddr, h}
	case "network":
		mask := make([]byte, f.addrLen)
		for i := 0; i < f.netBits/8; i++ {
			mask[i] = 0xff
		}
		return []expr.Any{saddr,
			&expr.Bitwise{SourceRegister: reg32a, DestRegister: reg32a, Len: f.addrLen, Mask: mask, Xor: make([]byte, f.addrLen)}, h}
	}
	h.Length = f.addrLen + 4
	return []expr.Any{saddr,
		&expr.Payload{DestRegister: reg32a + f.addrLen/4, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2}, h}
}

// ownKey names the chain that holds one rule's owned buckets for one
// protocol.
type ownKey struct {
	vip, rule int
	proto     uint8
}

func (k ownKey) chain() string {
	p := "tcp"
	if k.proto == unix.IPPROTO_UDP {
		p = "udp"
	}
	return fmt.Sprintf("own_%d_%d_%s", k.vip, k.rule, p)
}

// ownRule accepts the flows whose bucket is in buckets: the hash, turned
// big-endian so that nft prints the set's elements as the bucket numbers
// (google/nftables marks anonymous sets big-endian), looked up in an
// anonymous set, which nft types from the hash when it loads the ruleset.
func ownRule(c *nftables.Conn, table *nftables.Table, chain *nftables.Chain, plan VIPPlan, rule int, buckets []uint32) error {
	set := &nftables.Set{Table: table, Anonymous: true, Constant: true, KeyType: nftables.TypeInteger}
	els := make([]nftables.SetElement, len(buckets))
	for i, b := range buckets {
		els[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(b)}
	}
	if err := c.AddSet(set, els); err != nil {
		return err
	}
	exprs := hashExprs(familyOf(plan.Addr.Addr()), plan.Rules[rule].Affinity, plan.Seed)
	exprs = append(exprs,
		&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, UserData: tag("acc", plan.Index), Exprs: exprs})
	return nil
}

func (d *nftDatapath) Apply(o Ownership) error {
	if err := d.Stage(o); err != nil {
		return err
	}
	return d.Commit()
}

// Stage fills the inactive buffer chains of every rule with the given
// ownerships, in order (at most two: a planned switch's drops, then its
// takes); what the node accepts does not change until Commit.
func (d *nftDatapath) Stage(os ...Ownership) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(os) == 0 || len(os) > 2 {
		return fmt.Errorf("staging %d ownerships: 1 or 2", len(os))
	}
	d.queue = nil
	var q []stagedOwner
	for i, o := range os {
		idx := (d.active + 1 + i) % 3
		if err := d.fill(idx, o); err != nil {
			return err
		}
		q = append(q, stagedOwner{o: o, idx: idx})
	}
	if err := d.nft.Flush(); err != nil {
		return fmt.Errorf("staging bucket ownership: %w", err)
	}
	d.queue = q
	return nil
}

// fill queues the rules that make buffer idx of every rule accept o's
// buckets (d.mu held; the caller flushes).
func (d *nftDatapath) fill(idx int, o Ownership) error {
	for _, v := range d.vips {
		for ri, r := range v.Rules {
			b := o.Owned[[2]int{v.Index, ri}]
			for _, proto := range r.Protos {
				ch := d.buf[ownKey{v.Index, ri, proto}][idx]
				d.keepCounts(v.Index, ch)
				d.nft.FlushChain(ch)
				if len(b) == 0 {
					continue
				}
				if err := ownRule(d.nft, ch.Table, ch, v, ri, b); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// metaTimeNS is NFT_META_TIME_NS (Linux 5.4): the packet's wall-clock
// time in nanoseconds, in host byte order.
const metaTimeNS = expr.MetaKey(30)

// StageAt fills the next buffer with o and has the kernel switch every
// rule to it at the instant by its own clock (nft `meta time`): packets
// before at go to the active buffer, from at on to the new one, with no
// process and no timer involved. Every node of a planned switch stages
// the same instant, so all change within their clocks' agreement (on one
// host, exactly): no SYN finds a gap, none is answered twice. Commit
// afterwards makes the new buffer the only one; another Stage, StageAt or
// Apply before at calls the switch off.
func (d *nftDatapath) StageAt(at time.Time, o Ownership) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Earlier timed stages: one whose instant has passed is what the
	// kernel uses now (the agent had not committed it yet); one still
	// ahead stays ahead of this one, so that this node switches at both
	// instants as every node that heard of the changes in turn does (a
	// second drain announced before the first one's instant). An
	// untimed Stage is replaced.
	now := time.Now()
	var keep []stagedOwner
	for _, q := range d.queue {
		switch {
		case q.at.IsZero():
		case !q.at.After(now):
			d.active, keep = q.idx, nil
		case q.at.Before(at):
			keep = append(keep, q)
		}
	}
	if len(keep) > 1 {
		keep = keep[len(keep)-1:] // three buffers: the active, one ahead, this one
	}
	used := map[int]bool{d.active: true}
	for _, q := range keep {
		used[q.idx] = true
	}
	idx := 0
	for used[idx] {
		idx++
	}
	d.queue = nil
	if err := d.fill(idx, o); err != nil {
		return err
	}
	stages := append(keep, stagedOwner{o, idx, at})
	d.dispatch(d.active, stages)
	if err := d.nft.Flush(); err != nil {
		return fmt.Errorf("staging the switch at %s: %w", at.Format("15:04:05.000"), err)
	}
	d.queue = stages
	return nil
}

// dispatch queues the rules of every dispatch chain: to buffer from
// until the first timed stage's instant, to each stage's buffer from its
// instant on (d.mu held; the caller flushes). goto, not jump: a flow the
// buffer in force does not accept must not come back here and be tried
// against a later one; it returns to the VIP's chain, whose next rule
// drops it.
func (d *nftDatapath) dispatch(from int, stages []stagedOwner) {
	c := d.nft
	for k, disp := range d.own {
		c.FlushChain(disp)
		cur := from
		for _, st := range stages {
			c.AddRule(&nftables.Rule{Table: disp.Table, Chain: disp, Exprs: []expr.Any{
				&expr.Meta{Key: metaTimeNS, Register: reg1},
				&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 8, Size: 8},
				&expr.Cmp{Op: expr.CmpOpLt, Register: reg1, Data: binaryutil.BigEndian.PutUint64(uint64(st.at.UnixNano()))},
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: d.buf[k][cur].Name},
			}})
			cur = st.idx
		}
		c.AddRule(&nftables.Rule{Table: disp.Table, Chain: disp, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: d.buf[k][cur].Name}}})
	}
}

// keepCounts adds the packets a buffer's rule accepted to the VIP's base
// before the rule is replaced.
func (d *nftDatapath) keepCounts(vi int, ch *nftables.Chain) {
	rs, err := d.nft.GetRules(ch.Table, ch)
	if err != nil {
		return
	}
	for _, r := range rs {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				d.accBase[vi] += ctr.Packets
			}
		}
	}
}

// Commit points every rule at the next staged buffer and sets the default
// host, in one small transaction. Of timed stages (StageAt), the kernel
// has switched through those whose instants have passed: the last of them
// becomes the one in force, and those still ahead stay timed (a second
// planned switch announced before the first one's instant).
func (d *nftDatapath) Commit() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return errors.New("nothing staged")
	}
	next, rest := d.queue[0], d.queue[1:]
	if !next.at.IsZero() {
		now := time.Now()
		for i, q := range d.queue {
			if i > 0 && q.at.After(now) {
				break
			}
			next, rest = q, d.queue[i+1:]
		}
	}
	c := d.nft
	if next.at.IsZero() || len(rest) == 0 {
		for k, disp := range d.own {
			c.FlushChain(disp)
			c.AddRule(&nftables.Rule{Table: disp.Table, Chain: disp, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: d.buf[k][next.idx].Name}}})
		}
	} else {
		d.dispatch(next.idx, rest)
	}
	for vi, s := range d.def {
		c.FlushSet(s)
		if next.o.Default[vi] {
			if err := c.SetAddElements(s, []nftables.SetElement{{Key: d.vipKey(vi)}}); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("updating bucket ownership: %w", err)
	}
	d.active, d.queue = next.idx, rest
	return nil
}

// vipKey is VIP vi's address as a set key.
func (d *nftDatapath) vipKey(vi int) []byte {
	for _, v := range d.vips {
		if v.Index == vi {
			return v.Addr.Addr().AsSlice()
		}
	}
	return nil
}

// liveElements: every VIP of family f's element, alive for liveTTL.
func (d *nftDatapath) liveElements(f *family) []nftables.SetElement {
	var els []nftables.SetElement
	for _, v := range d.vips {
		if familyOf(v.Addr.Addr()) == f {
			els = append(els, nftables.SetElement{Key: v.Addr.Addr().AsSlice(), Timeout: d.liveTTL})
		}
	}
	return els
}

// Refresh renews every family's liveness in one transaction.
func (d *nftDatapath) Refresh() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.fams) == 0 {
		return errors.New("datapath not set up")
	}
	for _, ft := range d.fams {
		d.nft.FlushSet(ft.live)
		if els := d.liveElements(ft.f); len(els) > 0 {
			if err := d.nft.SetAddElements(ft.live, els); err != nil {
				return fmt.Errorf("renewing the %s liveness: %w", ft.f.shown, err)
			}
		}
	}
	return d.nft.Flush()
}

func (d *nftDatapath) StopNew() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.fams) == 0 {
		return nil
	}
	for _, ft := range d.fams {
		d.nft.FlushSet(ft.live)
	}
	return d.nft.Flush()
}

func (d *nftDatapath) Counters() (map[int]Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var rules []*nftables.Rule
	for _, ft := range d.fams {
		rs, err := d.nft.GetRules(ft.table, ft.chain)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rs...)
	}
	for _, pair := range d.buf {
		for _, ch := range pair {
			rs, err := d.nft.GetRules(ch.Table, ch)
			if err != nil {
				return nil, err
			}
			rules = append(rules, rs...)
		}
	}
	out := map[int]Counters{}
	for vi, n := range d.accBase {
		c := out[vi]
		c.Accepted += n
		out[vi] = c
	}
	for _, r := range rules {
		kind, num, ok := strings.Cut(string(r.UserData), ":")
		vi, err := strconv.Atoi(num)
		if !ok || err != nil {
			continue
		}
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				c := out[vi]
				if kind == "acc" {
					c.Accepted += ctr.Packets
				} else if kind == "drop" {
					c.Dropped += ctr.Packets
				}
				out[vi] = c
			}
		}
	}
	return out, nil
}

func (d *nftDatapath) Connections() (int, error) {
	vips := map[netip.Addr]bool{}
	families := map[netlink.InetFamily]bool{}
	for _, v := range d.vips {
		vips[v.Addr.Addr()] = true
		if familyOf(v.Addr.Addr()) == familyIPv6 {
			families[netlink.FAMILY_V6] = true
		} else {
			families[netlink.FAMILY_V4] = true
		}
	}
	var flows []*netlink.ConntrackFlow
	for f := range families { // only the families of the VIPs: a dump each
		fs, err := netlink.ConntrackTableList(netlink.ConntrackTable, f)
		if err != nil {
			return 0, fmt.Errorf("reading conntrack: %w", err)
		}
		flows = append(flows, fs...)
	}
	n := 0
	for _, f := range flows {
		dst, _ := netip.AddrFromSlice(f.Forward.DstIP)
		if dst = dst.Unmap(); !vips[dst] || f.Forward.Protocol != unix.IPPROTO_TCP {
			continue
		}
		if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok {
			// Count connections that can still carry data: SYN_RECV (2)
			// through CLOSE_WAIT (5) and LAST_ACK (6); not TIME_WAIT/CLOSE.
			if tcp.State >= 2 && tcp.State <= 6 {
				n++
			}
		}
	}
	return n, nil
}

func (d *nftDatapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	// The addresses go first: a VIP still on the NIC without the ruleset
	// would accept every flow (its kernel answering SYNs of buckets other
	// nodes own, which resets those connections).
	for _, a := range d.addrs {
		if err := netlink.AddrDel(a.link, a.addr); err != nil {
			errs = append(errs, fmt.Errorf("removing VIP %s: %w", a.addr.IP, err))
		}
	}
	d.addrs = nil
	for _, r := range d.arps {
		r.Close()
	}
	d.arps = nil
	if len(d.fams) > 0 {
		for _, ft := range d.fams {
			d.nft.DelTable(ft.table)
		}
		d.nft.DelTable(d.arpTbl)
		if d.ucTbl != nil {
			d.nft.DelTable(d.ucTbl)
			d.ucTbl = nil
		}
		if err := d.nft.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("removing the nftables ruleset: %w", err))
		}
		d.fams = nil
	}
	if err := restoreSysctls(d.sysctls); err != nil {
		errs = append(errs, err)
	} else if d.sysctlRecord != "" {
		if err := statefile.Remove(d.sysctlRecord); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.nft.CloseLasting(); err != nil {
		errs = append(errs, fmt.Errorf("closing the nftables socket: %w", err))
	}
	return errors.Join(errs...)
}

// neighResponder answers address resolution for one VIP with the cluster
// MAC from a raw socket (ARP for IPv4, neighbour solicitations for IPv6),
// and keeps the NIC listening to the cluster MAC.
type neighResponder struct {
	conn *packet.Conn
	// mcast holds an IP multicast membership on the NIC: the igmp mode's
	// group, or an IPv6 VIP's solicited-node group.
	mcast *net.UDPConn
	done  chan struct{}
	wg    sync.WaitGroup
	vip   netip.Addr
	six   bool
	cmac  net.HardwareAddr
	nic   *net.Interface
	log   *slog.Logger
	stats struct{ replies, malformed uint64 }
}

func startNeighResponder(v VIPPlan, log *slog.Logger) (*neighResponder, error) {
	ifi, err := net.InterfaceByName(v.Interface)
	if err != nil {
		return nil, err
	}
	r := &neighResponder{done: make(chan struct{}), vip: v.Addr.Addr(), six: familyOf(v.Addr.Addr()) == familyIPv6, cmac: v.MAC, nic: ifi, log: log}
	if r.six {
		// Only the solicitations for the VIP come up: an IPv6 raw socket
		// without a filter would copy every packet of every flow.
		f, err := ndFilter(r.vip)
		if err != nil {
			return nil, err
		}
		r.conn, err = packet.Listen(ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: f})
		if err != nil {
			return nil, fmt.Errorf("opening a raw IPv6 socket on %s: %w", v.Interface, err)
		}
	} else if r.conn, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil); err != nil {
		return nil, fmt.Errorf("opening a raw ARP socket on %s: %w", v.Interface, err)
	}
	// Tell the NIC to pass frames for the cluster MAC up: a multicast
	// membership, or for unicast an entry in the NIC's unicast filter
	// (promiscuous mode on NICs without one). The kernel drops either when
	// the socket closes, also on kill -9.
	if err := r.joinMAC(r.cmac, v.Mode == "unicast"); err != nil {
		r.conn.Close()
		return nil, err
	}
	if r.six {
		// Solicitations go to the VIP's solicited-node group, which the
		// kernel does not join on the NIC for it (the VIP is on lo, see
		// VIPDevice). Joined as an IPv6 group, not just as a MAC, so that
		// the kernel sends MLD reports and switches that snoop MLD
		// deliver the solicitations here.
		g := solicitedNode(r.vip)
		r.mcast, err = net.ListenMulticastUDP("udp6", ifi, &net.UDPAddr{IP: g.AsSlice(), Port: 9})
		if err != nil {
			r.conn.Close()
			return nil, fmt.Errorf("joining %s (the VIP's solicited-node group) on %s: %w", g, v.Interface, err)
		}
	}
	if v.Mode == "igmp" {
		// Joining the IP group sends IGMP reports, so snooping switches
		// deliver the VIP's frames here.
		g := IGMPGroup(v.Addr.Addr())
		r.mcast, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: g.AsSlice(), Port: 9})
		if err != nil {
			r.conn.Close()
			return nil, fmt.Errorf("joining IGMP group %s on %s: %w", g, v.Interface, err)
		}
	}
	r.wg.Add(1)
	go r.serve()
	for i := 0; i < 3; i++ {
		if r.six {
			r.send(allNodesMAC, unsolicitedNA(r.vip, r.cmac))
		} else {
			r.send(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, gratuitousARP(r.vip, r.cmac))
		}
	}
	return r, nil
}

// ndFilter passes the frames of neighbour solicitations for vip (ICMPv6
// type 135 right after the IPv6 header, target vip) and nothing else.
func ndFilter(vip netip.Addr) ([]bpf.RawInstruction, error) {
	const drop = 13 // the index of the final "ret 0"
	t := vip.As16()
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 14 + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 58, SkipTrue: drop - 2},
		bpf.LoadAbsolute{Off: 14 + 40, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 135, SkipTrue: drop - 4},
	}
	for i := 0; i < 4; i++ { // the target address, a word at a time
		prog = append(prog,
			bpf.LoadAbsolute{Off: uint32(14 + 40 + 8 + 4*i), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(t[4*i:]), SkipTrue: uint8(drop - len(prog) - 2)})
	}
	prog = append(prog, bpf.RetConstant{Val: 1600}, bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assembling the neighbour solicitation filter: %w", err)
	}
	return raw, nil
}

func (r *neighResponder) joinMAC(mac net.HardwareAddr, unicast bool) error {
	raw, err := r.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		typ := uint16(unix.PACKET_MR_MULTICAST)
		if unicast {
			typ = unix.PACKET_MR_UNICAST
		}
		mreq := &unix.PacketMreq{Ifindex: int32(r.nic.Index), Type: typ, Alen: 6}
		copy(mreq.Address[:], mac)
		serr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("joining MAC %s on %s: %w", mac, r.nic.Name, err)
	}
	return nil
}

// send frames payload (ARP or IPv6) from the NIC's own MAC: never from
// the cluster MAC, which a switch would then learn (unicast mode) or drop
// as a multicast source.
func (r *neighResponder) send(dst net.HardwareAddr, payload []byte) {
	f := make([]byte, 14+len(payload))
	copy(f[0:], dst)
	copy(f[6:], r.nic.HardwareAddr)
	et := uint16(etherTypeARP)
	if r.six {
		et = etherTypeIPv6
	}
	binary.BigEndian.PutUint16(f[12:], et)
	copy(f[14:], payload)
	if _, err := r.conn.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
		r.log.Debug("answering address resolution", slog.Any("error", err))
	}
}

func (r *neighResponder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 1600)
	var backoff time.Duration
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A failing socket: back off rather than spin, and say so
			// once per run of failures.
			if backoff == 0 {
				r.log.Warn("reading address resolution requests", slog.String("interface", r.nic.Name), slog.Any("error", err))
			}
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			select {
			case <-r.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if n < 14 {
			r.stats.malformed++
			continue
		}
		var dst net.HardwareAddr
		var reply []byte
		if r.six {
			var ok bool
			if dst, reply, ok = naFor(buf[14:n], net.HardwareAddr(buf[6:12]), r.vip, r.cmac, r.nic.HardwareAddr); !ok {
				r.stats.malformed++
			}
		} else {
			dst, reply = arpReplyFor(buf[14:n], r.vip, r.cmac, r.nic.HardwareAddr)
		}
		if reply != nil {
			r.stats.replies++
			r.send(dst, reply)
		}
	}
}

func (r *neighResponder) Close() {
	close(r.done)
	r.conn.Close()
	if r.mcast != nil {
		r.mcast.Close()
	}
	r.wg.Wait()
}
