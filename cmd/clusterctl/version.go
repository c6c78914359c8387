package main

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/version"
)

// VersionInfo is `clusterctl version --json`.
type VersionInfo struct {
	Clusterctl struct {
		Version string `json:"version"`
		Commit  string `json:"commit"`
	} `json:"clusterctl"`
	Agent struct {
		Reachable bool   `json:"reachable"`
		Node      string `json:"node,omitempty"`
		Cluster   string `json:"cluster,omitempty"`
		Version   string `json:"version,omitempty"`
		Protocol  int    `json:"protocol,omitempty"`
	} `json:"agent"`
}

func (e *env) version(ctx context.Context, args []string) int {
	fs := e.flags("version")
	asJSON := fs.Bool("json", false, "print the versions as a JSON object")
	if _, err := parseInterspersed(fs, args); err != nil {
		return exitUsage
	}
	var v VersionInfo
	v.Clusterctl.Version, v.Clusterctl.Commit = version.Short(), version.Commit
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s, err := e.client.Status(ctx); err == nil {
		v.Agent.Reachable, v.Agent.Node, v.Agent.Cluster = true, s.Node, s.Cluster
		for _, m := range s.Members {
			if m.Self {
				v.Agent.Version, v.Agent.Protocol = m.Version, m.Protocol
			}
		}
	}
	if *asJSON {
		e.say(true, v, "")
		return exitOK
	}
	fmt.Fprintln(e.stdout, "clusterctl", version.String())
	if v.Agent.Reachable {
		fmt.Fprintf(e.stdout, "agent on node %s of cluster %s is reachable (version %s)\n", v.Agent.Node, v.Agent.Cluster, v.Agent.Version)
	}
	return exitOK
}
