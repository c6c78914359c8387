package api

import (
	"fmt"
	"sort"
	"strings"

	"github.com/clusterd/clusterd/internal/vocab"
)

// Severity of a finding. The values are the Nagios/Icinga plugin exit
// codes that `clusterctl status --check` returns.
type Severity int

// Severities, in order.
const (
	OK       Severity = 0
	Warning  Severity = 1
	Critical Severity = 2
	Unknown  Severity = 3
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// Finding is one thing wrong with the cluster as this node sees it.
type Finding struct {
	Severity Severity
	Text     string
}

// Thresholds are the limits of the check that are a matter of taste.
type Thresholds struct {
	// Replication lag of a group's standby, in bytes (0: not checked).
	LagWarn, LagCrit uint64
}

// DefaultThresholds: 16 MiB of lag is seconds of writes at a hospital's
// rate and worth a look; 256 MiB means the standby is not keeping up and
// a failover now would wait long for it.
func DefaultThresholds() Thresholds { return Thresholds{LagWarn: 16 << 20, LagCrit: 256 << 20} }

// Assess lists what is wrong in a status, worst first: the same list is
// PROBLEMS in `clusterctl status` and the verdict of `status --check`. It
// is a pure function of the status and the thresholds.
func Assess(s *Status, th Thresholds) []Finding {
	var out []Finding
	add := func(sev Severity, format string, args ...any) {
		out = append(out, Finding{sev, fmt.Sprintf(format, args...)})
	}
	if q := s.Quorum; q != nil {
		switch {
		case !q.HasQuorum:
			add(Critical, "quorum lost: %d of %d voters alive; no group can fail over or move", q.Alive, q.Voters)
		case q.Alive < q.Voters:
			add(Warning, "quorum: %d of %d voters alive; one more loss and groups cannot fail over", q.Alive, q.Voters)
		}
	}
	for _, g := range s.Groups {
		switch g.State {
		case vocab.GroupOffline:
			add(Critical, "group %s is offline: no node serves it", g.Name)
		case vocab.GroupFailingOver:
			add(Warning, "group %s is failing over (owner %s)", g.Name, orDash(g.Owner))
		case vocab.GroupDegraded:
			add(Warning, "group %s is degraded on %s: no standby, a failure of the owner would lose the group", g.Name, orDash(g.Owner))
		}
		if g.State == vocab.GroupOnline && g.Replication == "async" && g.Standby != "" {
			add(Warning, "group %s: standby %s is not synchronous: acknowledged writes may have no second copy", g.Name, g.Standby)
		}
		switch {
		case th.LagCrit > 0 && g.LagBytes >= th.LagCrit:
			add(Critical, "group %s: standby lag %d bytes (critical at %d)", g.Name, g.LagBytes, th.LagCrit)
		case th.LagWarn > 0 && g.LagBytes >= th.LagWarn:
			add(Warning, "group %s: standby lag %d bytes (warning at %d)", g.Name, g.LagBytes, th.LagWarn)
		}
	}
	for _, m := range s.Members {
		switch m.State {
		case vocab.Failed:
			add(Warning, "member %s failed: no heartbeat on any path", m.Name)
		case vocab.Left:
			add(Warning, "member %s left the cluster (forget it with clusterctl forget %s once it is gone for good)", m.Name, m.Name)
		}
		if len(m.ConfigMismatch) > 0 && m.State != vocab.Failed && m.State != vocab.Left {
			add(Warning, "member %s: config differs from this node's in %s", m.Name, strings.Join(m.ConfigMismatch, ", "))
		}
	}
	if !s.Converged {
		add(Warning, "the nodes have not computed the same bucket tables (converged: no)")
	}
	for _, p := range s.Problems {
		add(Warning, "%s", p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity > out[j].Severity })
	return out
}

// Worst is the highest severity of the findings (OK when none).
func Worst(fs []Finding) Severity {
	w := OK
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// CheckLine is the plugin output: one summary line with perfdata
// (members by state, buckets per node, group lag and failovers).
func CheckLine(s *Status, fs []Finding, th Thresholds) string {
	var b strings.Builder
	w := Worst(fs)
	fmt.Fprintf(&b, "CLUSTERD %s - ", w)
	if len(fs) == 0 {
		active := 0
		for _, m := range s.Members {
			if m.State == vocab.Active {
				active++
			}
		}
		fmt.Fprintf(&b, "%d of %d members active", active, len(s.Members))
		if s.Quorum != nil {
			fmt.Fprintf(&b, ", quorum %d/%d", s.Quorum.Alive, s.Quorum.Voters)
		}
		if len(s.Groups) > 0 {
			fmt.Fprintf(&b, ", %d groups online", len(s.Groups))
		}
	} else {
		var texts []string
		for _, f := range fs {
			texts = append(texts, f.Text)
		}
		b.WriteString(strings.Join(texts, "; "))
	}
	b.WriteString(" |")
	states := map[vocab.MemberState]int{}
	for _, m := range s.Members {
		states[m.State]++
	}
	for _, st := range []vocab.MemberState{vocab.Active, vocab.Joining, vocab.Draining, vocab.Drained, vocab.Failed, vocab.Left} {
		fmt.Fprintf(&b, " members_%s=%d;;;0;%d", st, states[st], len(s.Members))
	}
	for _, m := range s.Members {
		if len(s.VIPs) > 0 && (m.Buckets > 0 || m.State == vocab.Active) {
			fmt.Fprintf(&b, " buckets_%s=%d;;;0", perfLabel(m.Name), m.Buckets)
		}
	}
	for _, g := range s.Groups {
		warn, crit := "", ""
		if th.LagWarn > 0 {
			warn = fmt.Sprint(th.LagWarn)
		}
		if th.LagCrit > 0 {
			crit = fmt.Sprint(th.LagCrit)
		}
		fmt.Fprintf(&b, " lag_%s=%dB;%s;%s;0 failovers_%s=%dc", perfLabel(g.Name), g.LagBytes, warn, crit, perfLabel(g.Name), g.Failovers)
	}
	if q := s.Quorum; q != nil {
		// Critical below a majority (the plugin range "N:").
		fmt.Fprintf(&b, " voters_alive=%d;;%d:;0;%d", q.Alive, q.Voters/2+1, q.Voters)
	}
	return b.String()
}

// perfLabel keeps a name usable as a perfdata label (no quotes, no
// spaces, no '=').
func perfLabel(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '=' || r == '\'' {
			return '_'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
