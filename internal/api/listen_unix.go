//go:build !windows

package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func dial(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", socket)
}

// Listen opens the control socket: mode 0660, owned by root and, if it
// exists, the given group. A socket file left by a crashed agent is
// replaced; one that a live agent answers on is never stolen.
func Listen(socket, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("creating the socket's directory: %w", err)
	}
	if _, err := os.Lstat(socket); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		c, err := dial(ctx, socket)
		cancel()
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another clusterd agent is running on %s: stop it first, or set control.socket", socket)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("checking the existing socket %s: %w", socket, err)
		}
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("removing the stale socket %s: %w", socket, err)
		}
	}
	// Create with a tight umask so the socket is never briefly open to all.
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", socket)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("control.group %q: %w", group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(socket, 0, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("giving the socket to group %s: %w", group, err)
		}
	}
	return l, nil
}

// PeerUID is the uid of the process at the other end of a control
// connection (from SO_PEERCRED), or -1.
func PeerUID(c net.Conn) int {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	raw.Control(func(fd uintptr) { uid = peerUID(int(fd)) })
	return uid
}
