package main

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// manDate is the man pages' date: fixed per release, so package builds
// are reproducible.
const manDate = "2026-12-01"

// completion prints the completion script for a shell.
func (e *env) completion(args []string) int {
	fs := e.flags("completion")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprintln(e.stderr, "clusterctl completion: usage: clusterctl completion bash|zsh|fish|powershell")
		return exitUsage
	}
	if err := program().Completion(e.stdout, pos[0]); err != nil {
		fmt.Fprintln(e.stderr, "clusterctl completion:", err)
		return exitUsage
	}
	return exitOK
}

// complete prints the names the completion scripts offer (hidden command
// "__complete nodes|groups"): nothing, and exit 0, when the agent cannot
// be asked, so a shell never shows an error while completing.
func (e *env) complete(ctx context.Context, args []string) int {
	if len(args) != 1 {
		return exitOK
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := e.client.Status(ctx)
	if err != nil {
		return exitOK
	}
	var names []string
	switch args[0] {
	case "nodes":
		for _, m := range s.Members {
			names = append(names, m.Name)
		}
	case "groups":
		for _, g := range s.Groups {
			names = append(names, g.Name)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintln(e.stdout, n)
	}
	return exitOK
}
