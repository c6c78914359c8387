//go:build !windows

package config

// DefaultSocket is the control endpoint clusterctl uses when not told.
func DefaultSocket() string { return "/run/clusterd/clusterd.sock" }

func defaultStateDir() string { return "/var/lib/clusterd" }
