//go:build linux

package chaos_test

import (
	"testing"

	"github.com/clusterd/clusterd/internal/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }
