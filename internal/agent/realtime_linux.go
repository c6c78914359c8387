package agent

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// rtPriority is low among real-time priorities: above every normal task
// (so busy loops cannot delay a heartbeat), below the kernel's own
// real-time threads. corosync does the same, at its maximum.
const rtPriority = 10

// SetRealtime puts every thread of this process under SCHED_RR. Threads the
// Go runtime starts later inherit the policy from the thread that creates
// them. The agent does little work, so it cannot starve the machine.
func SetRealtime() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: rtPriority}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
			return fmt.Errorf("setting SCHED_RR on thread %d: %w", tid, err)
		}
	}
	return nil
}
