package postmaster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Alive says whether pid is a live (not zombie) server process, from
// /proc; known is false when /proc cannot tell. A killed postmaster stays
// in the process table as a zombie until its parent (init) reaps it, and
// pg_ctl counts it as running until then: its stop then waits and fails
// ("server does not shut down"), 1.5 s on the path of every failover
// after a crash.
func Alive(pid int) (ok, known bool) { return alive(pid, Comm) }

func alive(pid int, comm string) (ok, known bool) {
	st, err := procStat(pid)
	if os.IsNotExist(err) {
		return false, true
	}
	if err != nil {
		return false, false
	}
	if st.comm != comm {
		return false, true // the number was reused by another program
	}
	return st.state != 'Z' && st.state != 'X', true
}

// stat is what clusterd reads of /proc/PID/stat.
type stat struct {
	comm  string
	state byte
	ppid  int
}

// procStat reads /proc/PID/stat: "pid (comm) state ppid ...". comm may
// hold spaces and parentheses, so the fields after it follow the last ')'.
func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (stat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("/proc stat line: %q", b)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("/proc stat line: %q", b)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, fmt.Errorf("/proc stat line: %q", b)
	}
	return stat{comm: string(b[open+1 : end]), state: f[0][0], ppid: ppid}, nil
}

// Stopped says whether pid is a postmaster stopped by a signal
// (SIGSTOP): a server an earlier agent froze (Freeze) and did not thaw.
// Not 't' (a debugger's stop), not another program under the number.
func Stopped(pid int) bool {
	st, err := procStat(pid)
	return err == nil && st.comm == Comm && st.state == 'T'
}

// children lists the processes whose parent is pid.
func children(pid int) ([]int, error) {
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
		if st, err := procStat(child); err == nil && st.ppid == pid {
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

// stopWait bounds how long Freeze waits for its SIGSTOPs to take effect.
// A signal is sent when kill returns but acts when its target is next
// scheduled: on a loaded machine, milliseconds later.
const stopWait = 2 * time.Second

// Freeze stops the postmaster first, waits until it is stopped, so that
// it forks nobody after its children are listed (a backend forked in
// that moment would run, and acknowledge commits, unfrozen), then stops
// every child and waits for them too: when Freeze returns nil, nothing of
// the server runs.
func Freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freezing the postmaster (pid %d): %w", pid, err)
	}
	if err := waitStopped([]int{pid}, stopWait); err != nil {
		return fmt.Errorf("freezing the postmaster: %w", err)
	}
	kids, err := children(pid)
	if err != nil {
		return err
	}
	if err := signalAll(kids, syscall.SIGSTOP); err != nil {
		return err
	}
	if err := waitStopped(kids, stopWait); err != nil {
		return fmt.Errorf("freezing the server's processes: %w", err)
	}
	return nil
}

// waitStopped polls /proc until each of pids is stopped or gone.
func waitStopped(pids []int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for {
			st, err := procStat(pid)
			if err != nil || st.state == 'T' || st.state == 'Z' || st.state == 'X' {
				break // stopped, or gone (dead or reaped)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d is not stopped %v after SIGSTOP (state %c)", pid, limit, st.state)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// Thaw resumes the children, then the postmaster.
func Thaw(pid int) error {
	kids, err := children(pid)
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

// Kill kills the postmaster and every child. The children are listed
// while the postmaster is stopped (it forks nobody) and before it dies: a
// dead postmaster's children belong to init at once, and a frozen child
// nobody kills holds the server's shared memory (and a client's
// connection) forever — the first version killed the postmaster first
// and left its frozen children behind (a chaos run hung on one). A thaw
// first would let a frozen server run (and acknowledge) on its way down.
func Kill(pid int) error {
	if ok, _ := Alive(pid); !ok {
		return nil // gone, or the number is another program's now
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stopping the postmaster (pid %d): %w", pid, err)
	}
	kids, err := children(pid)
	if err != nil {
		return err
	}
	return signalAll(append([]int{pid}, kids...), syscall.SIGKILL)
}
