package statefile

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	dir := testenv.TempDir(t)
	p := filepath.Join(dir, "drain.json")
	for _, s := range []string{"one", "two"} {
		if err := Write(p, []byte(s)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != s {
			t.Fatalf("got %q, want %q", b, s)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(ents))
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

func TestWriteFailsLoudly(t *testing.T) {
	if runtime.GOOS == "windows" || os.Getuid() == 0 {
		t.Skip("needs a non-root Unix user: root writes into read-only directories")
	}
	dir := testenv.TempDir(t)
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if err := Write(filepath.Join(dir, "x"), []byte("y")); err == nil {
		t.Fatal("writing into a read-only directory did not fail")
	}
}

func TestIncarnationGrows(t *testing.T) {
	dir := testenv.TempDir(t)
	a, err := NextIncarnation(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A clock that stepped back: the recorded value is far in the future.
	future := a + 1e18
	if err := Write(filepath.Join(dir, "incarnation"), []byte(strconv.FormatInt(future, 10))); err != nil {
		t.Fatal(err)
	}
	b, err := NextIncarnation(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b != future+1 {
		t.Fatalf("after a clock step back got %d, want %d", b, future+1)
	}
	if err := Write(filepath.Join(dir, "incarnation"), []byte("junk")); err != nil {
		t.Fatal(err)
	}
	if _, err := NextIncarnation(dir); err == nil {
		t.Fatal("a corrupt incarnation file was accepted")
	}
}
