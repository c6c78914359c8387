//go:build !windows

package failover

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// lookup gives the uid and gid of an OS user.
func lookup(name string) (uint32, uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("resource.os_user %q: %w", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(uid), uint32(gid), nil
}

// runAs makes cmd run as the OS user name when the agent runs as root (the
// database server refuses to run as root); otherwise as the agent's user.
func runAs(cmd *exec.Cmd, name string) error {
	if os.Geteuid() != 0 || name == "" {
		return nil
	}
	uid, gid, err := lookup(name)
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	return nil
}

func chownTo(path, name string) error {
	if os.Geteuid() != 0 || name == "" {
		return nil
	}
	uid, gid, err := lookup(name)
	if err != nil {
		return err
	}
	return os.Chown(path, int(uid), int(gid))
}
