package heartbeat

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// On the real-time heartbeat threads, waiting must not depend on the Go
// runtime's timers and network poller: those are serviced by ordinary
// threads, which a saturated CPU starves, and a real-time thread waiting
// for them is no better off than any other. So these threads sleep in
// nanosleep and receive in a blocking recvfrom: the kernel wakes them at
// their real-time priority.

// rtSleep sleeps d in the kernel, on the calling thread.
func rtSleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// rtReader reads datagrams with blocking recvfrom on a duplicate of the
// socket. A receive timeout lets the loop notice shutdown.
type rtReader struct {
	f  *os.File
	fd int
}

var errRTTimeout = errors.New("receive timeout")

func newRTReader(c *net.UDPConn) (*rtReader, error) {
	f, err := c.File() // a blocking duplicate
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		f.Close()
		return nil, err
	}
	return &rtReader{f: f, fd: fd}, nil
}

func (r *rtReader) read(buf []byte) (int, netip.Addr, error) {
	n, sa, err := unix.Recvfrom(r.fd, buf, 0)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return 0, netip.Addr{}, errRTTimeout
		}
		return 0, netip.Addr{}, err
	}
	if in4, ok := sa.(*unix.SockaddrInet4); ok {
		return n, netip.AddrFrom4(in4.Addr), nil
	}
	if in6, ok := sa.(*unix.SockaddrInet6); ok {
		return n, netip.AddrFrom16(in6.Addr).Unmap(), nil
	}
	return n, netip.Addr{}, nil
}

func (r *rtReader) close() { r.f.Close() }
