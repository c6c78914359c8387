package main

import (
	"context"
	"fmt"
)

func (e *env) forget(ctx context.Context, args []string) int {
	fs := e.flags("forget")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "clusterctl forget: usage: clusterctl forget NODE")
		return exitUsage
	}
	node := fs.Arg(0)
	if err := e.client.Forget(ctx, node); err != nil {
		return e.fail(err)
	}
	fmt.Fprintf(e.stdout, "forgot %s\n", node)
	return exitOK
}
