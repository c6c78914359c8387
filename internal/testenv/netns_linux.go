package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// netnsEnv marks the copy of a test binary that runs in its own network
// namespace.
const netnsEnv = "CLUSTERD_TEST_NETNS"

// MainInNetns is a TestMain for packages whose tests touch the kernel's
// network state (nftables, addresses, raw sockets). As root, the test
// binary runs again in a network namespace of its own (CLONE_NEWNET), with
// the same arguments, so that -cover and -run work as usual, and nothing
// it does can reach the host's tables or NICs; the namespace goes when the
// process ends, whatever state the tests left. Without root the tests run
// here and those that need the namespace skip (see NeedNetns).
func MainInNetns(m *testing.M) int {
	if os.Getenv(netnsEnv) == "1" {
		if err := setUp(); err != nil {
			fmt.Fprintln(os.Stderr, "setting up the test network namespace:", err)
			return 1
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "running the tests in a network namespace of their own:", err)
		return 1
	}
	return 0
}

// setUp brings the namespace's loopback up.
func setUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// NeedNetns skips a test that must run in the namespace MainInNetns makes.
func NeedNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(netnsEnv) != "1" {
		t.Skip("needs root: runs in a network namespace of its own (nftables, addresses, raw sockets)")
	}
}
