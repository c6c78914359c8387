//go:build linux

package chaos_test

import (
	"os"
	"testing"

	"github.com/clusterd/clusterd/internal/testnet"
)

// TestMain removes the binaries the tests built, as the tests remove their
// networks.
func TestMain(m *testing.M) {
	code := m.Run()
	testnet.RemoveBinaries()
	os.Exit(code)
}
