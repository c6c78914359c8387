//go:build !windows

package main

import (
	"os"
	"strconv"
	"syscall"
)

// underJournald reports whether stderr is the journal's stream: systemd
// sets JOURNAL_STREAM to its device:inode (a redirected stderr is not).
func underJournald() bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return js == strconv.FormatUint(uint64(st.Dev), 10)+":"+strconv.FormatUint(st.Ino, 10)
}
