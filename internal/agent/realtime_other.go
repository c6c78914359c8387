//go:build !linux

package agent

import "errors"

// SetRealtime is Linux-only; elsewhere the agent runs at normal priority.
func SetRealtime() error { return errors.New("real-time scheduling is only supported on Linux") }
