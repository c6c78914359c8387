package vip

import (
	"os"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

// As root the package's tests run in a network namespace of their own: the
// datapath, fence and address tests use the real kernel there.
func TestMain(m *testing.M) { os.Exit(testenv.MainInNetns(m)) }
