//go:build !linux

package heartbeat

import "errors"

// lockRealtime is Linux-only; elsewhere heartbeats run at normal priority.
func lockRealtime() error { return errors.New("real-time scheduling is only supported on Linux") }
