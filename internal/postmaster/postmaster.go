// Package postmaster reads and signals the process tree of a PostgreSQL
// server from its data directory: whether the postmaster named in
// postmaster.pid lives, and freezing (SIGSTOP), thawing and killing it
// with every child. The agent fences a primary with it, `clusterd
// cleanup` ends a server a killed agent left frozen, and the test
// harness kills the servers a test leaves behind: one reading of /proc
// for all three.
package postmaster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Comm is the command name of a PostgreSQL server's processes.
const Comm = "postgres"

// PID is the pid in dataDir/postmaster.pid: 0 and known when there is no
// such file, known false when it cannot be read.
func PID(dataDir string) (pid int, known bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if os.IsNotExist(err) {
		return 0, true
	}
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// KillFrozen kills the server of dataDir if it is frozen — an agent
// fenced it and was killed before it thawed or ended it — and returns
// its pid (0: no frozen server). A frozen server holds its clients'
// connections open, unanswered, until someone ends it; the data is
// crash-consistent, as after an immediate stop.
func KillFrozen(dataDir string) (int, error) {
	pid, known := PID(dataDir)
	if !known {
		return 0, fmt.Errorf("%s: cannot read the postmaster's pid, so cannot tell whether its server is frozen (look with ps for processes in state T)", filepath.Join(dataDir, "postmaster.pid"))
	}
	if pid == 0 || !Stopped(pid) {
		return 0, nil
	}
	if err := Kill(pid); err != nil {
		return pid, fmt.Errorf("killing the frozen server of %s: %w", dataDir, err)
	}
	return pid, nil
}
