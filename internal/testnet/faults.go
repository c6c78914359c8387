//go:build linux

package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Fault tables in the switch namespace, each removed by its own heal.
const (
	oneWayTable = "cdoneway"
	lossTable   = "cdloss"
)

// OneWay drops every frame from the nodes in from to the nodes in to, on
// both networks, while the other direction flows (an asymmetric
// partition: a half-broken switch port, a one-way ACL), until HealOneWay.
func (n *Net) OneWay(from, to []*Node) {
	var rules strings.Builder
	for _, nic := range []string{Public, Private} {
		for _, x := range from {
			for _, y := range to {
				fmt.Fprintf(&rules, "add rule bridge %s cut iifname %s oifname %s drop\n", oneWayTable, x.port(nic), y.port(nic))
			}
		}
	}
	n.nft(fmt.Sprintf("add table bridge %[1]s\nadd chain bridge %[1]s cut { type filter hook forward priority 0; }\n", oneWayTable) + rules.String())
}

// HealOneWay removes every one-way partition.
func (n *Net) HealOneWay() {
	run("ip", "netns", "exec", n.sw, "nft", "delete table bridge "+oneWayTable)
}

// Loss drops pct percent of the frames to and from the nodes' NIC nic
// (Public, Private, or "" for both) at random, in the switch, until
// HealLoss. The kernel here has no netem; nftables' numgen does the same.
func (n *Net) Loss(pct int, nic string, nodes ...*Node) {
	var rules strings.Builder
	nics := []string{Public, Private}
	if nic != "" {
		nics = []string{nic}
	}
	for _, c := range nics {
		for _, x := range nodes {
			for _, dir := range []string{"iifname", "oifname"} {
				fmt.Fprintf(&rules, "add rule bridge %s lossy %s %s numgen random mod 100 < %d drop\n", lossTable, dir, x.port(c), pct)
			}
		}
	}
	n.nft(fmt.Sprintf("add table bridge %[1]s\nadd chain bridge %[1]s lossy { type filter hook forward priority -1; }\n", lossTable) + rules.String())
}

// HealLoss removes every loss rule.
func (n *Net) HealLoss() { run("ip", "netns", "exec", n.sw, "nft", "delete table bridge "+lossTable) }

// HealAll removes every partition, one-way partition and loss rule and
// plugs every cable back in.
func (n *Net) HealAll() {
	n.Heal()
	n.HealOneWay()
	n.HealLoss()
	for _, nd := range n.Nodes {
		for _, nic := range []string{Public, Private} {
			run("ip", "-n", n.sw, "link", "set", nd.port(nic), "up")
		}
	}
}

// KillPID sends sig to the process whose pid is the first line of file
// (a PostgreSQL postmaster.pid, say).
func KillPID(file string, sig syscall.Signal) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return fmt.Errorf("%s: no pid in %q", filepath.Base(file), line)
	}
	return syscall.Kill(pid, sig)
}

// KillServer kills the PostgreSQL server whose postmaster.pid is file,
// children and all, if it runs: stopped first so that it forks nobody,
// its children listed while they are still its own, then SIGKILL to each.
// A test's servers outlive its agents (standbys, and servers whose agent
// was killed); a frozen one's children (a fenced primary) would outlive
// even the postmaster's death.
func KillServer(file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return
	}
	if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(c)) != "postgres" {
		return // gone, or the number is another program's now
	}
	syscall.Kill(pid, syscall.SIGSTOP)
	kids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k))
		if err != nil {
			continue
		}
		if end := strings.LastIndexByte(string(st), ')'); end > 0 {
			if f := strings.Fields(string(st[end+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids = append(kids, k)
			}
		}
	}
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
}

// Stop closes the backend (its server is gone: connections refused, the
// health check fails); Serve again to bring one back.
func (b *Backend) Stop() { b.srv.Close() }
