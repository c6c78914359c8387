//go:build !windows

package config

import (
	"fmt"
	"os/user"
)

// DefaultSocket is the control endpoint clusterctl uses when not told.
func DefaultSocket() string { return "/run/clusterd/clusterd.sock" }

func defaultStateDir() string { return "/var/lib/clusterd" }

// checkGroup: the control socket is given to this group, so it must exist
// on this host.
func checkGroup(name string) error {
	if _, err := user.LookupGroup(name); err != nil {
		return fmt.Errorf("no group %q on this host: create it (groupadd %s) or remove the key", name, name)
	}
	return nil
}
