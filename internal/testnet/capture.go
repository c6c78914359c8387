//go:build linux

package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// Datagram is one captured UDP datagram.
type Datagram struct {
	At       time.Time
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Capture records the IPv4 UDP datagrams to port that arrive on the
// node's NIC nic for d, from a raw socket in the node's namespace: a real
// capture, as tcpdump would take it.
func (nd *Node) Capture(nic string, port uint16, d time.Duration) ([]Datagram, error) {
	var c *packet.Conn
	err := inNS(nd.NS, func() error {
		ifi, err := net.InterfaceByName(nic)
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Datagram, 0x0800, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []Datagram
	buf := make([]byte, 65536)
	end := time.Now().Add(d)
	c.SetReadDeadline(end)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out, nil
			}
			return out, err
		}
		if dg, ok := parseUDP4(buf[:n]); ok && dg.Dst.Port() == port {
			dg.At = time.Now()
			out = append(out, dg)
		}
	}
}

func parseUDP4(b []byte) (Datagram, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 17 {
		return Datagram{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8 {
		return Datagram{}, false
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	u := b[ihl:]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < 8 || ulen > len(u) {
		return Datagram{}, false
	}
	return Datagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: append([]byte(nil), u[8:ulen]...),
	}, true
}

// Replay sends the datagrams again from inside the node's namespace, from
// their original source address and port (the sender's addresses are
// still on its NICs after a kill -9), with their original spacing.
func (nd *Node) Replay(dgs []Datagram) (sent int, err error) {
	conns := map[netip.AddrPort]*net.UDPConn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var prev time.Time
	for _, dg := range dgs {
		c := conns[dg.Src]
		if c == nil {
			err := inNS(nd.NS, func() error {
				var err error
				c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(dg.Src))
				return err
			})
			if err != nil {
				return sent, err
			}
			conns[dg.Src] = c
		}
		if !prev.IsZero() {
			time.Sleep(dg.At.Sub(prev))
		}
		prev = dg.At
		if _, err := c.WriteToUDPAddrPort(dg.Payload, dg.Dst); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

// HoldConnections keeps k idle TCP connections open from src (an extra
// address put on the node's private NIC: a stranger on the heartbeat LAN)
// to each of dsts, dialling again whenever the far end closes one, until
// the returned stop is called. They send nothing: a port scanner, a
// half-open client, an attacker holding slots.
func (nd *Node) HoldConnections(src string, k int, dsts ...string) (stop func(), err error) {
	if out, err := exec.Command("ip", "-n", nd.NS, "addr", "add", src+"/24", "dev", Private).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("adding %s: %v: %s", src, err, out)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
	for _, dst := range dsts {
		for range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1)
				for {
					var c net.Conn
					inNS(nd.NS, func() error {
						var err error
						c, err = d.Dial("tcp", dst)
						return err
					})
					if c == nil {
						select {
						case <-done:
							return
						case <-time.After(100 * time.Millisecond):
							continue
						}
					}
					closed := make(chan struct{})
					go func() { c.Read(buf); close(closed) }()
					select {
					case <-done:
						c.Close()
						return
					case <-closed:
						c.Close()
					}
				}
			}()
		}
	}
	return func() {
		close(done)
		wg.Wait()
		exec.Command("ip", "-n", nd.NS, "addr", "del", src+"/24", "dev", Private).Run()
	}, nil
}
