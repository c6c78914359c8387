package failover

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// procStat is a process's state letter and parent from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 || end+2 >= len(b) {
		return 0, 0, false
	}
	// ") S PPID ...": the state, then the parent.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// processStopped says whether pid is stopped by a signal (SIGSTOP): a
// server an earlier agent froze (freezeServer) and did not thaw.
func processStopped(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && (st == 'T' || st == 't')
}

// signalServer sends sig to the postmaster pid and then to each of its
// children (backends, WAL senders, background workers). For SIGSTOP the
// postmaster goes first, so it forks nobody after the children were
// listed; a child it forked just before is listed, being its child.
func signalServer(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signalling the postmaster (pid %d): %w", pid, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("listing the server's processes: %w", err)
	}
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(child); ok && ppid == pid {
			if err := syscall.Kill(child, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("signalling the server's process %d: %w", child, err)
			}
		}
	}
	return nil
}

// freezeServer, thawServer and killServer signal a server's processes.
func freezeServer(pid int) error { return signalServer(pid, syscall.SIGSTOP) }
func thawServer(pid int) error   { return signalServer(pid, syscall.SIGCONT) }
func killServer(pid int) error {
	if err := signalServer(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
