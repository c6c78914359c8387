//go:build !linux && !windows

package api

// peerUID is unknown where SO_PEERCRED does not exist (BSD, macOS: only
// for development builds).
func peerUID(fd int) int { return -1 }
