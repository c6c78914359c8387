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
)

func (e *env) status(ctx context.Context, args []string) int {
	fs := e.flags("status")
	asJSON := fs.Bool("json", false, "print SPEC.md's JSON")
	watch := fs.Bool("watch", false, "refresh every second until Ctrl-C")
	if fs.Parse(args) != nil || fs.NArg() > 0 {
		return exitUsage
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
	fmt.Fprintln(tw, "MEMBER\tPRIO\tADDRESS\tSTATE\tHEALTHY\tBUCKETS\tPATHS\tSINCE")
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
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", name, m.Priority, m.Address, m.State, yesNo(m.Healthy),
			m.Buckets, strings.Join(paths, " "), ago(m.Since))
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
		}
	}
	if len(s.Groups) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tOWNER\tSTATE\tVIP\tREPLICATION")
		for _, g := range s.Groups {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Name, g.Owner, g.State, g.VIP, g.Replication)
		}
		tw.Flush()
	}
	if len(s.Problems) > 0 {
		fmt.Fprintln(w, "\nPROBLEMS:")
		for _, p := range s.Problems {
			fmt.Fprintln(w, "  -", p)
		}
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
