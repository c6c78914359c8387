package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/snmp"
)

// cmdAgentX is the AgentX subagent, run by the agent itself as a child
// process (snmp.agent.agentx) and restarted if it exits: the AgentX library
// can panic on connection errors, which must not take the agent down.
func cmdAgentX(args []string, stderr io.Writer) int {
	fs := newFlags("agentx", stderr)
	socket := fs.String("socket", "", "the agent's control socket")
	master := fs.String("master", "/var/agentx/master", "snmpd's AgentX socket (path, or host:port)")
	if fs.Parse(args) != nil || *socket == "" {
		fmt.Fprintln(stderr, "clusterd agentx: usage: clusterd agentx --socket PATH --master PATH (started by clusterd run)")
		return exitUsage
	}
	log, _ := newLogger(stderr, "text", "info")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := api.NewClient(*socket)
	h := snmp.NewSubagentHandler(func() (api.Status, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		s, err := client.Status(c)
		if err != nil {
			return api.Status{}, err
		}
		return *s, nil
	}, time.Now())
	if err := snmp.RunSubagent(ctx, *master, h, log); err != nil {
		fmt.Fprintln(stderr, "clusterd agentx:", err)
		return exitFailed
	}
	return exitOK
}
