package main

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/version"
)

func (e *env) version(ctx context.Context, args []string) int {
	fmt.Fprintln(e.stdout, "clusterctl", version.String())
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s, err := e.client.Status(ctx); err == nil {
		fmt.Fprintf(e.stdout, "agent on node %s of cluster %s is reachable\n", s.Node, s.Cluster)
	}
	return exitOK
}
