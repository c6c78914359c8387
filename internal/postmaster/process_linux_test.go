package postmaster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// alive tells a live process, a missing one and another program
// under the number; a zombie is covered by the real-server test's kill.
func TestAlive(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer cmd.Process.Kill()
	if alive, known := alive(cmd.Process.Pid, "sleep"); !alive || !known {
		t.Fatalf("a sleeping process: alive %v known %v", alive, known)
	}
	if alive, known := alive(cmd.Process.Pid, "postgres"); alive || !known {
		t.Fatalf("another program under the number: alive %v known %v", alive, known)
	}
	cmd.Process.Kill() // not reaped (no Wait yet): a zombie once it dies
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		alive, known := alive(cmd.Process.Pid, "sleep")
		if !alive && known {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("a zombie: alive %v known %v", alive, known)
		}
	}
	cmd.Wait()
	if alive, known := alive(cmd.Process.Pid, "sleep"); alive || !known {
		t.Fatalf("a reaped process: alive %v known %v", alive, known)
	}
}

// KillFrozen ends a frozen server and every child of it, and leaves a
// running one (an operator's, or one whose agent is alive) alone. The
// server is a stand-in: a script named postgres (its command name) with
// two children, its pid in a postmaster.pid.
func TestKillFrozen(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, Comm)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 60 & sleep 60 & wait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(pid)+"\n"+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var kids []int
	for start := time.Now(); len(kids) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the stand-in server has %d children", len(kids))
		}
		var err error
		if kids, err = children(pid); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := KillFrozen(dir); got != 0 || err != nil {
		t.Fatalf("a running server: KillFrozen = %d, %v; want it left alone", got, err)
	}
	if ok, _ := Alive(pid); !ok {
		t.Fatal("KillFrozen killed a running server")
	}
	if err := Freeze(pid); err != nil {
		t.Fatal(err)
	}
	// Freeze returns once every process is stopped, not when the signals
	// are sent: a new agent's check right after must see it frozen.
	if !Stopped(pid) {
		t.Fatal("Freeze returned and the server is not stopped")
	}
	for _, k := range kids {
		if st, err := procStat(k); err != nil || st.state != 'T' {
			t.Fatalf("Freeze returned and child %d is not stopped (%v, %v)", k, st, err)
		}
	}
	if got, err := KillFrozen(dir); got != pid || err != nil {
		t.Fatalf("a frozen server: KillFrozen = %d, %v; want %d", got, err, pid)
	}
	cmd.Wait()
	for _, k := range kids {
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			st, err := procStat(k)
			if err != nil || st.state == 'Z' || st.state == 'X' {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("child %d of the frozen server outlived it (state %c)", k, st.state)
			}
		}
	}
	if got, err := KillFrozen(dir); got != 0 || err != nil {
		t.Fatalf("no server: KillFrozen = %d, %v", got, err)
	}
	// A pid file that cannot be read is said, not taken for "no server".
	os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("garbage\n"), 0o600)
	if _, err := KillFrozen(dir); err == nil || !strings.Contains(err.Error(), "cannot tell") {
		t.Fatalf("an unreadable pid file: %v, want an error that says so", err)
	}
}

// FuzzParseStat: no /proc line panics the parser.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (postgres) T 1 1234 1234 0 -1 4194560 1 0 0 0"))
	f.Add([]byte("77 (a) b) c) S 12 77"))
	f.Add([]byte("9 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := parseStat(b); err == nil && st.state == 0 {
			t.Fatalf("%q: parsed without a state", b)
		}
	})
}
