//go:build !windows

package config

import (
	"os"
	"testing"
)

// makeReadable opens a file to other users, as a careless copy would.
func makeReadable(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
