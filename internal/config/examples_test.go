package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

// TestDocExamples: the example configs in docs/examples are valid (with a
// real key file in place of the documented path).
func TestDocExamples(t *testing.T) {
	files, _ := filepath.Glob("../../docs/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	dir := testenv.TempDir(t)
	k, _ := NewKey()
	key := filepath.Join(dir, "cluster.key")
	os.WriteFile(key, []byte(k), 0o600)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(b), "/etc/clusterd/cluster.key", key, 1)
		if _, err := Parse(f, []byte(text)); err != nil {
			t.Errorf("%s does not validate:\n%v", f, err)
		}
	}
}
