//go:build !linux

package testenv

import "testing"

// MainInNetns runs the tests: network namespaces are Linux's.
func MainInNetns(m *testing.M) int { return m.Run() }

// NeedNetns skips: network namespaces are Linux's.
func NeedNetns(t testing.TB) {
	t.Helper()
	t.Skip("needs a Linux network namespace")
}
