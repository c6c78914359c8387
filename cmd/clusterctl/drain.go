package main

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/vocab"
)

func (e *env) drain(ctx context.Context, args []string) int {
	fs := e.flags("drain")
	rule := fs.String("rule", "", "drain only this rule's `PORTS` (e.g. 80 or 8000-8100)")
	wait := fs.Bool("wait", false, "show the remaining connections until the node is drained")
	timeout := fs.String("timeout", "", "server side: drained after this long (a `DURATION` such as 5m) even with connections left (they are not cut)")
	asJSON := fs.Bool("json", false, "print each step as a JSON object, one per line")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) > 1 {
		fmt.Fprintln(e.stderr, "clusterctl drain: usage: clusterctl drain [NODE] [--rule PORTS] [--wait] [--timeout DUR]")
		return exitUsage
	}
	node := ""
	if len(pos) == 1 {
		node = pos[0]
	}
	if *timeout != "" {
		if _, err := time.ParseDuration(*timeout); err != nil {
			fmt.Fprintf(e.stderr, "clusterctl drain: --timeout %q: want a duration such as 30s or 10m\n", *timeout)
			return exitUsage
		}
	}
	if err := e.client.Drain(ctx, api.DrainRequest{Node: node, Rule: *rule, Timeout: *timeout}); err != nil {
		return e.fail(err)
	}
	name := node
	if name == "" {
		if s, err := e.client.Status(ctx); err == nil {
			name = s.Node
		}
	}
	if *rule != "" {
		e.say(*asJSON, Progress{Time: time.Now(), Node: name, Rule: *rule, State: string(vocab.Draining), Done: true}, "%s: rule %s takes no new flows", name, *rule)
		return exitOK
	}
	e.say(*asJSON, Progress{Time: time.Now(), Node: name, State: string(vocab.Draining), Done: !*wait}, "%s: draining (no new flows; established connections go on)", name)
	if !*wait {
		return exitOK
	}
	last := -1
	for {
		s, err := e.client.Status(ctx)
		if err != nil {
			return e.fail(err)
		}
		var m *api.Member
		for i := range s.Members {
			if s.Members[i].Name == name {
				m = &s.Members[i]
			}
		}
		if m == nil {
			fmt.Fprintf(e.stderr, "clusterctl drain: %s is no longer listed\n", name)
			return exitFailed
		}
		if m.Connections != last {
			c := m.Connections
			e.say(*asJSON, Progress{Time: time.Now(), Node: name, State: string(m.State), Connections: &c}, "%s: %s, %d connections left", name, m.State, m.Connections)
			last = m.Connections
		}
		switch m.State {
		case vocab.Drained:
			if m.Connections > 0 {
				fmt.Fprintf(e.stderr, "clusterctl drain: the timeout passed with %d connections left on %s (they were not cut)\n", m.Connections, name)
				return exitFailed
			}
			zero := 0
			e.say(*asJSON, Progress{Time: time.Now(), Node: name, State: string(vocab.Drained), Connections: &zero, Done: true}, "%s: drained", name)
			return exitOK
		case vocab.Active, vocab.Failed, vocab.Left:
			fmt.Fprintf(e.stderr, "clusterctl drain: %s became %s before it was drained\n", name, m.State)
			return exitFailed
		}
		select {
		case <-ctx.Done():
			return exitFailed
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (e *env) resume(ctx context.Context, args []string) int {
	fs := e.flags("resume")
	asJSON := fs.Bool("json", false, "print the result as a JSON object")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) > 1 {
		fmt.Fprintln(e.stderr, "clusterctl resume: usage: clusterctl resume [NODE]")
		return exitUsage
	}
	node := ""
	if len(pos) == 1 {
		node = pos[0]
	}
	if err := e.client.Resume(ctx, node); err != nil {
		return e.fail(err)
	}
	e.say(*asJSON, Progress{Time: time.Now(), Node: node, State: string(vocab.Active), Done: true}, "resumed: takes new flows again")
	return exitOK
}
