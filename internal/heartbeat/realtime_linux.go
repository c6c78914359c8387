package heartbeat

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// rtPriority is low among real-time priorities: above every normal task,
// so busy processes cannot delay a heartbeat, below the kernel's own
// real-time threads.
const rtPriority = 10

// lockRealtime pins the calling goroutine to its OS thread and runs that
// thread under SCHED_RR. Only the heartbeat's own loops do this: making the
// whole process real-time would let the Go runtime's idle spinning threads
// starve ksoftirqd, which delivers the very packets we wait for. Threads
// the runtime starts while on a locked thread come from its template
// thread, so the policy does not spread.
func lockRealtime() error {
	runtime.LockOSThread()
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: rtPriority}
	return unix.SchedSetAttr(0, attr, 0)
}
