package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/postmaster"
	"github.com/clusterd/clusterd/internal/vip"
)

// cmdCleanup removes what a dead agent can leave in the kernel (the
// unit's ExecStopPost, and for uninstalls). Without --config it removes
// the tables, the labelled addresses and the settings recorded in the
// default state_dir; with it, also the config's VIPs on NICs whose names
// are too long for a label, and the config's state_dir record. It refuses
// while an agent answers on the control socket: that agent's state is not
// leftover. A PostgreSQL server the dead agent left frozen (fenced) is
// killed, as the agent itself would on its next start.
func cmdCleanup(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cleanup", stderr)
	path := fs.String("config", "", "the agent's config `FILE` (its VIPs, state_dir and control socket)")
	if fs.Parse(args) != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "clusterd cleanup: usage: clusterd cleanup [--config FILE]")
		return exitUsage
	}
	cfg := config.DefaultConfig()
	if *path != "" {
		c, err := config.Load(*path)
		if err != nil {
			fmt.Fprintf(stderr, "clusterd cleanup: %v\n", err)
			return exitFailed
		}
		cfg = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := api.NewClient(cfg.Control.Socket).Status(ctx); err == nil {
		fmt.Fprintf(stderr, "clusterd cleanup: an agent is running (it answers on %s): stop it first; a clean stop removes what it added\n", cfg.Control.Socket)
		return exitFailed
	}
	var addrs []vip.Leftover
	for _, v := range cfg.LoadBalancing {
		if p, err := netip.ParsePrefix(v.VIP); err == nil {
			addrs = append(addrs, vip.Leftover{Interface: vip.VIPDevice(p.Addr(), v.Interface), Prefix: netip.PrefixFrom(p.Addr(), p.Addr().BitLen())})
		}
	}
	for _, g := range cfg.Failover.Groups {
		if g.VIP == nil {
			continue
		}
		if p, err := netip.ParsePrefix(g.VIP.Address); err == nil {
			addrs = append(addrs, vip.Leftover{Interface: g.VIP.Interface, Prefix: p})
		}
	}
	done, err := vip.Cleanup(addrs, cfg.Node.StateDir)
	// A primary the dead agent fenced (froze) and did not thaw or end
	// holds its clients' connections open, unanswered, for ever; the
	// agent ends such a server when it starts, and so does cleanup.
	for _, g := range cfg.Failover.Groups {
		if g.Resource.Type != config.ResourcePostgreSQL || g.Resource.DataDir == "" {
			continue
		}
		pid, kerr := postmaster.KillFrozen(g.Resource.DataDir)
		if kerr != nil {
			err = errors.Join(err, fmt.Errorf("group %s: %w", g.Name, kerr))
		} else if pid != 0 {
			done = append(done, fmt.Sprintf("killed group %s's frozen PostgreSQL server (pid %d)", g.Name, pid))
		}
	}
	for _, d := range done {
		fmt.Fprintln(stdout, d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "clusterd cleanup: %v\n", err)
		return exitFailed
	}
	if len(done) == 0 {
		fmt.Fprintln(stdout, "nothing of clusterd's left in the kernel")
	}
	return exitOK
}
