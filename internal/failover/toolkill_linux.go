package failover

import (
	"os/exec"
	"syscall"
)

// dieWithAgent has the kernel kill cmd when the agent dies (kill -9, a
// crash): a pg_rewind or pg_basebackup left running would go on writing
// into a data directory that the next agent moves aside and copies
// afresh. Set after runAs, whose credentials Go applies first.
func dieWithAgent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
