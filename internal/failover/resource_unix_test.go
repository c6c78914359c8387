//go:build !windows

package failover

import (
	"context"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
)

// A start command that leaves a daemon behind with the command's output
// still open returns when the command does (and its exit code counts),
// not when the daemon exits: before, the agent's actor waited for the
// daemon, for ever.
func TestExecStartLeavingADaemon(t *testing.T) {
	r := &execResource{group: "g", node: "n", cfg: config.ResourceConfig{Type: "exec",
		Start: []string{"/bin/sh", "-c", "sleep 30 & echo started"},
		Stop:  []string{"/bin/sh", "-c", "sleep 30 & exit 1"}}}
	start := time.Now()
	if err := r.Start(context.Background(), Params{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if d := time.Since(start); d > pipeWait+time.Second {
		t.Fatalf("start took %v: it waited for the daemon", d)
	}
	if err := r.Stop(context.Background()); err == nil {
		t.Fatal("a stop command that exited 1 succeeded")
	}
}
