//go:build windows

package api

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// pipeSDDL gives full access to SYSTEM and Administrators only.
const pipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"

func dial(ctx context.Context, socket string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, socket)
}

// Listen opens the control named pipe, restricted to Administrators and
// SYSTEM. group is ignored on Windows.
func Listen(socket, group string) (net.Listener, error) {
	return winio.ListenPipe(socket, &winio.PipeConfig{SecurityDescriptor: pipeSDDL})
}

// PeerUID is not available for named pipes; the pipe's ACL already limits
// callers to administrators.
func PeerUID(c net.Conn) int { return -1 }
