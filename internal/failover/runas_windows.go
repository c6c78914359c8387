package failover

import "os/exec"

// Windows: the PostgreSQL tools run as the service's account; os_user is
// not used (PostgreSQL for Windows runs as a normal account already).
func runAs(*exec.Cmd, string) error { return nil }

func chownTo(string, string) error { return nil }
