//go:build linux

package testnet

import (
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/clusterd/clusterd/internal/postmaster"
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

// SignalPostmaster sends sig to the postmaster of dataDir (the pid in its
// postmaster.pid, read as the agent reads it): an error wrapping
// fs.ErrNotExist when there is no pid file.
func SignalPostmaster(dataDir string, sig syscall.Signal) error {
	pid, known := postmaster.PID(dataDir)
	switch {
	case !known:
		return fmt.Errorf("%s: postmaster.pid unreadable or without a pid", dataDir)
	case pid == 0:
		return fmt.Errorf("%s: no postmaster.pid: %w", dataDir, fs.ErrNotExist)
	case pid == 1:
		return fmt.Errorf("%s: postmaster.pid names pid 1", dataDir)
	}
	return syscall.Kill(pid, sig)
}

// KillServer kills the PostgreSQL server of dataDir, children and all,
// if it runs (postmaster.Kill). A test's servers outlive its agents
// (standbys, and servers whose agent was killed); a frozen one's children
// (a fenced primary) would outlive even the postmaster's death.
func KillServer(dataDir string) {
	if pid, _ := postmaster.PID(dataDir); pid > 1 {
		postmaster.Kill(pid)
	}
}

// Stop closes the backend (its server is gone: connections refused, the
// health check fails); Serve again to bring one back.
func (b *Backend) Stop() { b.srv.Close() }
