package main

import (
	"context"
	"fmt"
)

func (e *env) forget(ctx context.Context, args []string) int {
	fs := e.flags("forget")
	asJSON := fs.Bool("json", false, "print the result as a JSON object")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprintln(e.stderr, "clusterctl forget: usage: clusterctl forget NODE")
		return exitUsage
	}
	node := pos[0]
	if err := e.client.Forget(ctx, node); err != nil {
		return e.fail(err)
	}
	e.say(*asJSON, struct {
		Forgot string `json:"forgot"`
	}{node}, "forgot %s", node)
	return exitOK
}
