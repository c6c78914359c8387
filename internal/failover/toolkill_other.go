//go:build !linux

package failover

import "os/exec"

// dieWithAgent: only Linux kills a child with its parent (a Windows
// service's tools are stopped with the service's job object, if any).
func dieWithAgent(*exec.Cmd) {}
