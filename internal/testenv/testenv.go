// Package testenv holds what tests need to know about where they run: in
// particular under Wine (Windows test binaries on the Linux CI machine,
// see packaging/wine), which lacks some of Windows.
package testenv

import (
	"os"
	"runtime"
	"testing"
)

// Wine reports whether the test binary runs under Wine
// (packaging/wine/go-wine-exec.sh sets CLUSTERD_WINE=1).
func Wine() bool { return runtime.GOOS == "windows" && os.Getenv("CLUSTERD_WINE") == "1" }

// WineLacksUDP is why UDP tests skip under Wine 8: Go's net package sets
// SIO_UDP_CONNRESET on every UDP socket, which Wine refuses (WSAEOPNOTSUPP).
const WineLacksUDP = "Wine 8 cannot open UDP sockets for Go (WSAIoctl SIO_UDP_CONNRESET: WSAEOPNOTSUPP); run on Windows"

// WineLacksPipes is why named-pipe tests skip under Wine.
const WineLacksPipes = "under Wine 8 go-winio's named-pipe listener never accepts (the test hangs); run on Windows"

// WineLacksRenamedDirs is why tests that rename a directory with files in
// it skip under Wine.
const WineLacksRenamedDirs = "under Wine 8 the files of a directory renamed while the test runs cannot be removed (unlinkat: Invalid function); run on Windows"

// SkipUnderWine skips t under Wine, saying why.
func SkipUnderWine(t testing.TB, why string) {
	t.Helper()
	if Wine() {
		t.Skip("skipping under Wine: " + why)
	}
}

// UnixModes reports whether files have Unix permission bits (a test of
// mode 0600 means nothing on Windows, where access is an ACL).
func UnixModes() bool { return runtime.GOOS != "windows" }

// TempDir is t.TempDir, except under Wine, whose file system lacks the
// deletion Go's os.RemoveAll uses (FileDispositionInformationEx): there
// the directory is made with os.MkdirTemp and removed as far as Wine
// allows, without failing the test.
func TempDir(t testing.TB) string {
	t.Helper()
	if !Wine() {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("", "clusterd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
