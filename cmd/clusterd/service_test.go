package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/testenv"
	"github.com/clusterd/clusterd/packaging/systemd"
)

// Under a service manager, an agent that cannot start ends the process
// with a non-zero code (so systemd's Restart= and the SCM's recovery act);
// before, Start returned nil and the process lived on as "running".
func TestServiceStartThatFailsExitsNonZero(t *testing.T) {
	dir := testenv.TempDir(t)
	k, _ := config.NewKey()
	os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(k), 0o600)
	// state_dir is a file: the agent cannot start (root or not).
	notDir := filepath.Join(dir, "state")
	os.WriteFile(notDir, []byte("x"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`cluster:
  name: t
  key_file: `+filepath.Join(dir, "cluster.key")+`
node:
  name: n1
  priority: 1
  state_dir: `+notDir+`
heartbeat:
  bind: 127.0.0.1
control:
  socket: `+filepath.Join(dir, "s.sock")+`
`), 0o644)
	exited := make(chan int, 1)
	var logb bytes.Buffer
	p := &program{cfgPath: cfg, log: slog.New(slog.NewTextHandler(&logb, nil)), exit: func(c int) { exited <- c }}
	if err := p.Start(nil); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case c := <-exited:
		if c == 0 {
			t.Fatalf("exit 0 for an agent that could not start\n%s", logb.String())
		}
		if !strings.Contains(logb.String(), "cannot start") {
			t.Errorf("the log does not say why:\n%s", logb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a service whose agent cannot start did not exit")
	}
}

// The unit `service install` writes is the shipped one, with this
// binary's and this config's paths.
func TestServiceInstallWritesTheShippedUnit(t *testing.T) {
	u, ok := serviceConfig("/srv/c.yaml").Option["SystemdScript"].(string)
	if !ok {
		t.Fatal("no SystemdScript option: kardianos would write its generic unit")
	}
	exe, _ := os.Executable()
	for _, want := range []string{"ExecStart=" + exe + " run --config /srv/c.yaml", "ExecStopPost=" + exe + " cleanup --config /srv/c.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID", "Restart=always", "RestartPreventExitStatus=2", "After=network-online.target", "CapabilityBoundingSet="} {
		if !strings.Contains(u, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	if strings.Contains(u, systemd.PackagedConfig) || strings.Contains(u, "{{") {
		t.Errorf("the unit still names the packaged config or holds template actions:\n%s", u)
	}
}

// Under journald each line carries its priority.
func TestJournalPriorities(t *testing.T) {
	var b bytes.Buffer
	l := newJournalLogger(&b, "text", &slog.HandlerOptions{Level: slog.LevelDebug})
	l.Error("e")
	l.Warn("w")
	l.Info("i")
	l.With("k", "v").Debug("d")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"<3>", "<4>", "<6>", "<7>"}
	if len(lines) != len(want) {
		t.Fatalf("%q", lines)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w+"time=") {
			t.Errorf("line %d: %q, want prefix %s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[3], "k=v") {
		t.Errorf("attrs lost: %q", lines[3])
	}
}
