package main

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/vocab"
)

func (e *env) move(ctx context.Context, args []string) int {
	fs := e.flags("move")
	timeout := fs.Duration("timeout", time.Minute, "give up waiting for the group to come online on the target after this long")
	asJSON := fs.Bool("json", false, "print each step as a JSON object, one per line")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintln(e.stderr, "clusterctl move: usage: clusterctl move GROUP [NODE] [--timeout DUR]")
		return exitUsage
	}
	group, node := pos[0], ""
	if len(pos) == 2 {
		node = pos[1]
	}
	from := ""
	if s, err := e.client.Status(ctx); err == nil {
		if g := findGroup(s, group); g != nil {
			from = g.Owner
		}
	}
	start := time.Now()
	resp, err := e.client.Move(ctx, api.MoveRequest{Group: group, Node: node})
	if err != nil {
		return e.fail(err)
	}
	e.say(*asJSON, Progress{Time: time.Now(), Group: group, State: "moving", Owner: from, Target: resp.Target},
		"%s: moving from %s to %s (the owner steps down, then %s takes over)", group, from, resp.Target, resp.Target)
	deadline := time.Now().Add(*timeout)
	last, moving := "", false
	for {
		s, err := e.client.Status(ctx)
		if err != nil {
			return e.fail(err)
		}
		g := findGroup(s, group)
		if g == nil {
			fmt.Fprintf(e.stderr, "clusterctl move: group %s is no longer listed\n", group)
			return exitFailed
		}
		line := fmt.Sprintf("%s: %s on %s", group, g.State, g.Owner)
		if line != last {
			e.say(*asJSON, Progress{Time: time.Now(), Group: group, State: string(g.State), Owner: g.Owner, Target: resp.Target}, "%s", line)
			last = line
		}
		if g.Owner == resp.Target && (g.State == vocab.GroupOnline || g.State == vocab.GroupDegraded) {
			took := time.Since(start).Seconds()
			e.say(*asJSON, Progress{Time: time.Now(), Group: group, State: string(g.State), Owner: g.Owner, Target: resp.Target, Seconds: took, Done: true},
				"%s: moved to %s in %.1f s", group, g.Owner, took)
			return exitOK
		}
		if g.Owner != resp.Target && g.Owner != from {
			fmt.Fprintf(e.stderr, "clusterctl move: %s went to %s instead (%s)\n", group, g.Owner, g.Reason)
			return exitFailed
		}
		if g.State == vocab.GroupFailingOver {
			moving = true
		}
		if moving && g.Owner == from && (g.State == vocab.GroupOnline || g.State == vocab.GroupDegraded) {
			fmt.Fprintf(e.stderr, "clusterctl move: the move was called off; %s stays on %s\n", group, from)
			return exitFailed
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(e.stderr, "clusterctl move: %s not online on %s after %s (now %s on %s)\n", group, resp.Target, *timeout, g.State, g.Owner)
			return exitFailed
		}
		select {
		case <-ctx.Done():
			return exitFailed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func findGroup(s *api.Status, name string) *api.Group {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}
