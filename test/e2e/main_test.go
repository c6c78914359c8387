//go:build linux

package e2e

import (
	"testing"

	"github.com/clusterd/clusterd/internal/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }
