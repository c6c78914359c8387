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
	if alive, known := processAlive(pid, "postgres"); !known || !alive {
		return false // gone, or the number is another program's now
	}
	st, _, ok := procStat(pid)
	return ok && st == 'T' // not 't': a debugger's stop is not a fence
}

// serverChildren lists the processes whose parent is pid.
func serverChildren(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing the server's processes: %w", err)
	}
	var kids []int
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(child); ok && ppid == pid {
			kids = append(kids, child)
		}
	}
	return kids, nil
}

// signalAll sends sig to each of pids; one that is gone is no error.
func signalAll(pids []int, sig syscall.Signal) error {
	for _, k := range pids {
		if err := syscall.Kill(k, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signalling the server's process %d: %w", k, err)
		}
	}
	return nil
}

// freezeServer stops the postmaster first, so it forks nobody after its
// children are listed, then every child.
func freezeServer(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freezing the postmaster (pid %d): %w", pid, err)
	}
	kids, err := serverChildren(pid)
	if err != nil {
		return err
	}
	return signalAll(kids, syscall.SIGSTOP)
}

// thawServer resumes the children, then the postmaster.
func thawServer(pid int) error {
	kids, err := serverChildren(pid)
	if err != nil {
		return err
	}
	if err := signalAll(kids, syscall.SIGCONT); err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("thawing the postmaster (pid %d): %w", pid, err)
	}
	return nil
}

// killServer kills the postmaster and every child. The children are
// listed while the postmaster is stopped (it forks nobody) and before it
// dies: a dead postmaster's children belong to init at once, and a frozen
// child nobody kills holds the server's shared memory (and a client's
// connection) forever — the first version killed the postmaster first
// and left its frozen children behind (a chaos run hung on one).
func killServer(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stopping the postmaster (pid %d): %w", pid, err)
	}
	kids, err := serverChildren(pid)
	if err != nil {
		return err
	}
	return signalAll(append([]int{pid}, kids...), syscall.SIGKILL)
}
