package agent

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// superviseAgentX runs the AgentX subagent (clusterd agentx) as a child
// process and restarts it whenever it exits (snmpd not there yet, snmpd
// restarted, or the AgentX library panicking), with a backoff of up to
// 10 s. Isolated in a process because the library panics on some
// connection errors, and nothing must take the cluster agent down.
func (a *Agent) superviseAgentX(ctx context.Context, master string) {
	exe, err := os.Executable()
	if err != nil {
		a.log.Error("AgentX subagent: cannot find the clusterd binary", slog.Any("error", err))
		return
	}
	backoff := time.Second
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, exe, "agentx", "--socket", a.config().Control.Socket, "--master", master)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		started := time.Now()
		err := cmd.Run()
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = time.Second
		}
		a.log.Warn("AgentX subagent stopped; restarting", slog.Any("error", err), slog.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
