//go:build windows

package config

import "fmt"

// DefaultSocket is the control endpoint clusterctl uses when not told.
func DefaultSocket() string { return `\\.\pipe\clusterd` }

func defaultStateDir() string { return `C:\ProgramData\clusterd` }

// checkGroup: Windows restricts the named pipe to Administrators and
// SYSTEM; control.group does not apply.
func checkGroup(name string) error {
	return fmt.Errorf("%q: not used on Windows (the pipe is restricted to Administrators and SYSTEM); remove the key", name)
}
