package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/vocab"
)

func (e *env) status(ctx context.Context, args []string) int {
	fs := e.flags("status")
	asJSON := fs.Bool("json", false, "print JSON (its fields: docs/SPEC.md)")
	watch := fs.Bool("watch", false, "refresh every second until Ctrl-C")
	check := fs.Bool("check", false, "monitoring plugin (Nagios/Icinga): one line with perfdata; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
	th := api.DefaultThresholds()
	fs.Uint64Var(&th.LagWarn, "lag-warn", th.LagWarn, "with --check: a standby's replication lag in `BYTES` that is a WARNING (0: off)")
	fs.Uint64Var(&th.LagCrit, "lag-crit", th.LagCrit, "with --check: a standby's replication lag in `BYTES` that is CRITICAL (0: off)")
	if fs.Parse(args) != nil || fs.NArg() > 0 || (*check && (*watch || *asJSON)) {
		if *check && (*watch || *asJSON) {
			fmt.Fprintln(e.stderr, "clusterctl status: --check goes alone (not with --watch or --json)")
		}
		return exitUsage
	}
	if *check {
		s, err := e.client.Status(ctx)
		if err != nil {
			fmt.Fprintf(e.stdout, "CLUSTERD UNKNOWN - %v\n", err)
			return int(api.Unknown)
		}
		fs := api.Assess(s, th)
		fmt.Fprintln(e.stdout, api.CheckLine(s, fs, th))
		return int(api.Worst(fs))
	}
	for {
		s, err := e.client.Status(ctx)
		if err != nil {
			return e.fail(err)
		}
		if *watch && !*asJSON {
			fmt.Fprint(e.stdout, "\033[H\033[2J")
			fmt.Fprintf(e.stdout, "%s   (every 1s, Ctrl-C to stop)\n\n", time.Now().Format("15:04:05"))
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			if !*watch {
				enc.SetIndent("", "  ")
			}
			enc.Encode(s)
		} else {
			printStatus(e.stdout, s)
		}
		if !*watch {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(time.Second):
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func printStatus(w io.Writer, s *api.Status) {
	fmt.Fprintf(w, "cluster %s   node %s   converged %s", s.Cluster, s.Node, yesNo(s.Converged))
	if q := s.Quorum; q != nil {
		fmt.Fprintf(w, "   quorum %d/%d %s leader %s", q.Alive, q.Voters, map[bool]string{true: "ok", false: "LOST"}[q.HasQuorum], q.Leader)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tPRIO\tADDRESS\tSTATE\tHEALTHY\tBUCKETS\tVERSION\tPATHS\tSINCE")
	for _, m := range s.Members {
		name := m.Name
		if m.Self {
			name += " *"
		}
		var paths []string
		for p, up := range m.Paths {
			if up {
				paths = append(paths, p)
			} else {
				paths = append(paths, p+"(DOWN)")
			}
		}
		sort.Strings(paths)
		if len(m.ConfigMismatch) > 0 {
			paths = append(paths, "CONFIG MISMATCH: "+strings.Join(m.ConfigMismatch, ","))
		}
		state := string(m.State)
		switch {
		case m.Cut:
			state += " (CUT)" // left out: it and a live member cannot hear each other
		case m.Unheard:
			state += " (UNHEARD)" // not heard here, heard by others
		}
		healthy := yesNo(m.Healthy)
		if m.State == vocab.Failed || m.State == vocab.Left {
			healthy = "unknown" // not heard: its last word says nothing now
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", name, m.Priority, m.Address, state, healthy,
			m.Buckets, dash(m.Version), strings.Join(paths, " "), ago(m.Since))
	}
	tw.Flush()
	for _, v := range s.VIPs {
		fmt.Fprintf(w, "\nVIP %s  mode %s  mac %s  generation %d  accepted %d  dropped %d\n", v.Address, v.Mode, v.MAC, v.Generation, v.PacketsAccepted, v.PacketsDropped)
		for _, r := range v.Rules {
			var owners []string
			for n, c := range r.Owners {
				owners = append(owners, fmt.Sprintf("%s=%d", n, c))
			}
			sort.Strings(owners)
			fmt.Fprintf(w, "  rule %s/%s  %d buckets: %s\n", r.Ports, r.Protocol, r.BucketsTotal, strings.Join(owners, " "))
			if len(r.LastMoves) > 0 && r.MovedAt != nil {
				var mv []string
				for i, m := range r.LastMoves {
					if i == 4 {
						mv = append(mv, fmt.Sprintf("(+%d more)", len(r.LastMoves)-4))
						break
					}
					mv = append(mv, fmt.Sprintf("%s->%s %d", dash(m.From), dash(m.To), m.Buckets))
				}
				fmt.Fprintf(w, "    last change %s: %s\n", ago(*r.MovedAt), strings.Join(mv, ", "))
			}
		}
	}
	if len(s.Groups) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tOWNER\tSTATE\tVIP\tREPLICATION\tSTANDBY\tLAG\tFAILOVERS\tREASON")
		for _, g := range s.Groups {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", g.Name, dash(g.Owner), g.State, g.VIP, g.Replication,
				dash(g.Standby), g.LagBytes, g.Failovers, dash(g.Reason))
		}
		tw.Flush()
	}
	if fs := api.Assess(s, api.DefaultThresholds()); len(fs) > 0 {
		fmt.Fprintln(w, "\nPROBLEMS:")
		for _, f := range fs {
			fmt.Fprintf(w, "  - %s: %s\n", f.Severity, f.Text)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
