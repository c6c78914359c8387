//go:build windows

package config

// DefaultSocket is the control endpoint clusterctl uses when not told.
func DefaultSocket() string { return `\\.\pipe\clusterd` }

func defaultStateDir() string { return `C:\ProgramData\clusterd` }
