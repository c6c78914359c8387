package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/testenv"
)

func TestValidateFiveMistakes(t *testing.T) {
	dir := testenv.TempDir(t)
	b, err := os.ReadFile("../../internal/config/testdata/five-mistakes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, b, 0o644)
	k, _ := config.NewKey()
	os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(k), 0o600)
	var out, errb bytes.Buffer
	if code := realMain([]string{"validate", "--config", cfg}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 errors, got:\n%s", errb.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, cfg+":") {
			t.Errorf("not FILE:LINE: %q", l)
		}
	}
	if code := realMain([]string{"run", "--config", cfg}, &out, &errb); code != 2 {
		t.Errorf("run on a bad config: exit %d, want 2", code)
	}
}

func TestKeygen(t *testing.T) {
	p := filepath.Join(testenv.TempDir(t), "k")
	var out, errb bytes.Buffer
	if code := realMain([]string{"keygen", "--out", p}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	st, _ := os.Stat(p)
	if testenv.UnixModes() && st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", st.Mode().Perm())
	}
	if code := realMain([]string{"keygen", "--out", p}, &out, &errb); code != 1 {
		t.Errorf("overwrote an existing key")
	}
	keys, probs := config.ReadKeys(p)
	if len(keys) != 1 || len(probs) != 0 {
		t.Errorf("%v %v", keys, probs)
	}
}

// TestCompletionAndMan: clusterd's bash completion completes its commands
// and the service actions, and its man page formats without a warning.
func TestCompletionAndMan(t *testing.T) {
	var out bytes.Buffer
	if code := realMain([]string{"completion", "bash"}, &out, io.Discard); code != 0 {
		t.Fatal("completion bash failed")
	}
	f := filepath.Join(testenv.TempDir(t), "clusterd.bash")
	os.WriteFile(f, out.Bytes(), 0o644)
	if _, err := exec.LookPath("bash"); err == nil {
		for line, want := range map[string]string{"clusterd ser": "service", "clusterd service i": "install", "clusterd run --log-": "--log-format"} {
			words := strings.Fields(line)
			q := ""
			for _, w := range words {
				q += "'" + w + "' "
			}
			cmd := exec.Command("bash", "--norc", "-c", fmt.Sprintf("source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_clusterd\necho \"${COMPREPLY[@]}\"", f, q, len(words)-1))
			b, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(b), want) {
				t.Errorf("%q: %v %q", line, err, b)
			}
		}
	}
	out.Reset()
	if code := realMain([]string{"__man"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), ".TH CLUSTERD 8") {
		t.Fatalf("__man: %d", code)
	}
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(out.String())
		if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
			t.Errorf("groff: %v\n%s", err, msg)
		}
	}
}
