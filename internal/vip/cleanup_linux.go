package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Leftover is an address an agent may have put on a NIC: a load-balanced
// VIP (as /32) or a group VIP (with its prefix).
type Leftover struct {
	Interface string
	Prefix    netip.Prefix
}

// Cleanup removes what an agent that did not stop cleanly (kill -9, a
// crash, power cut of the process) can leave in the kernel: clusterd's
// nftables tables (the VIP datapath and the group fence), every address
// labelled as clusterd's (IFNAME:cd) and the given addresses from the
// config, and the kernel settings it changed, restored from the record in
// stateDir. It is idempotent, touches nothing that is not clusterd's, and
// must not run while an agent runs (the caller checks). It returns what it
// removed, one line each.
func Cleanup(addrs []Leftover, stateDir string) ([]string, error) {
	var done []string
	var errs []error
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	for _, t := range []struct {
		name   string
		family nftables.TableFamily
		shown  string
	}{
		{nftTable, nftables.TableFamilyIPv4, "ip"},
		{nftTable6, nftables.TableFamilyIPv6, "ip6"},
		{nftARPTable, nftables.TableFamilyARP, "arp"},
		{nftUnicastTable, nftables.TableFamilyNetdev, "netdev"},
		{fenceTable, nftables.TableFamilyIPv4, "ip"},
		{fenceARPTable, nftables.TableFamilyARP, "arp"},
		{fenceTable6, nftables.TableFamilyIPv6, "ip6"},
	} {
		tb, err := c.ListTableOfFamily(t.name, t.family)
		if err != nil || tb == nil {
			continue // not there
		}
		c.DelTable(tb)
		if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("removing nftables table %s %s: %w", t.shown, t.name, err))
			continue
		}
		done = append(done, fmt.Sprintf("removed nftables table %s %s", t.shown, t.name))
	}

	want := map[string][]netip.Prefix{}
	for _, a := range addrs {
		want[a.Interface] = append(want[a.Interface], a.Prefix)
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("listing interfaces: %w", err))
	}
	for _, l := range links {
		name := l.Attrs().Name
		list, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the addresses of %s: %w", name, err))
			continue
		}
		for _, a := range list {
			if !isOurs(a, name, want[name]) {
				continue
			}
			if err := netlink.AddrDel(l, &a); err != nil {
				errs = append(errs, fmt.Errorf("removing %s from %s: %w", a.IPNet, name, err))
				continue
			}
			done = append(done, fmt.Sprintf("removed address %s from %s", a.IPNet, name))
		}
	}

	if stateDir != "" {
		rec := filepath.Join(stateDir, sysctlRecordFile)
		m, err := readSysctlRecord(rec)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("reading the kernel settings to restore: %w", err))
		default:
			if err := restoreSysctls(m); err != nil {
				errs = append(errs, err)
			} else {
				for p, v := range m {
					done = append(done, fmt.Sprintf("restored %s to %s", strings.TrimPrefix(p, "/proc/sys/"), v))
				}
				if err := statefile.Remove(rec); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return done, errors.Join(errs...)
}

// isOurs: an address with clusterd's label, or one of the config's VIPs
// on its interface (a long interface name gets no label).
func isOurs(a netlink.Addr, ifname string, want []netip.Prefix) bool {
	if a.Label != "" && a.Label == labelFor(ifname) {
		return true
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	ones, _ := a.Mask.Size()
	for _, p := range want {
		if p.Addr() == ip && (ones == p.Bits() || ones == net.IPv4len*8) {
			return true
		}
	}
	return false
}
