package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/config"
)

func TestValidateFiveMistakes(t *testing.T) {
	dir := t.TempDir()
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
	p := filepath.Join(t.TempDir(), "k")
	var out, errb bytes.Buffer
	if code := realMain([]string{"keygen", "--out", p}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
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
