package failover

import (
	"bytes"
	"fmt"
	"os"
)

// processAlive says whether pid is a live (not zombie) process whose
// command is comm, from /proc. A killed postmaster stays in the process
// table as a zombie until its parent (init) reaps it, and pg_ctl counts
// it as running until then: its stop then waits and fails ("server does
// not shut down"), 1.5 s on the path of every failover after a crash.
func processAlive(pid int, comm string) (alive, known bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if os.IsNotExist(err) {
		return false, true
	}
	if err != nil {
		return false, false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the
	// state follows the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open || end+2 >= len(b) {
		return false, false
	}
	if string(b[open+1:end]) != comm {
		return false, true // the number was reused by another program
	}
	state := b[end+2]
	return state != 'Z' && state != 'X', true
}
