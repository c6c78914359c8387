//go:build linux

package testnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// inNS runs f on an OS thread that has entered namespace ns. Sockets
// created there stay in that namespace wherever they are used later. The
// thread is never unlocked, so Go discards it rather than reuse a thread
// in the wrong namespace.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listen opens a TCP listener on 0.0.0.0:port inside the node.
func (nd *Node) listen(port int) net.Listener {
	var l net.Listener
	err := inNS(nd.NS, func() error {
		var err error
		if nd.net.opts.IPv6 {
			l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		} else {
			l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		}
		return err
	})
	if err != nil {
		nd.net.t.Fatalf("backend on %s: %v", nd.Name, err)
	}
	return l
}

// Backend is a real HTTP server in a node's namespace: it answers with the
// node's name, serves long-lived streams, and a health URL that a test can
// fail.
type Backend struct {
	Node     *Node
	srv      *http.Server
	Served   atomic.Int64
	unhealth atomic.Bool
}

// Serve starts an HTTP backend on 0.0.0.0:port inside the node.
//
//	/          -> the node's name (header X-Node too)
//	/stream?s= -> a chunk every 100 ms for s seconds (a long-lived connection)
//	/health    -> 200, or 503 after SetHealthy(false)
func (nd *Node) Serve(port int) *Backend {
	b := &Backend{Node: nd}
	l := nd.listen(port)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.Served.Add(1)
		w.Header().Set("X-Node", nd.Name)
		fmt.Fprintln(w, nd.Name)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		b.Served.Add(1)
		secs, _ := strconv.ParseFloat(r.URL.Query().Get("s"), 64)
		w.Header().Set("X-Node", nd.Name)
		fl := w.(http.Flusher)
		end := time.Now().Add(time.Duration(secs * float64(time.Second)))
		for time.Now().Before(end) {
			fmt.Fprintf(w, "%s\n", nd.Name)
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		fmt.Fprintln(w, "end")
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if b.unhealth.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(l)
	nd.net.addCleanup(func() { b.srv.Close() })
	return b
}

// ServeCapacity starts a backend with a fixed capacity: workers requests in
// service at once, each taking service, the rest queued (an app server's
// thread pool). Scale benchmarks use it so that the figures show what the
// cluster adds, not what the shared host CPU can do.
func (nd *Node) ServeCapacity(port, workers int, service time.Duration) *Backend {
	b := &Backend{Node: nd}
	l := nd.listen(port)
	pool := make(chan struct{}, workers)
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pool <- struct{}{}
		time.Sleep(service)
		<-pool
		b.Served.Add(1)
		w.Header().Set("X-Node", nd.Name)
		fmt.Fprintln(w, nd.Name)
	})}
	go b.srv.Serve(l)
	nd.net.addCleanup(func() { b.srv.Close() })
	return b
}

// SetHealthy makes /health answer 200 (true) or 503 (false).
func (b *Backend) SetHealthy(ok bool) { b.unhealth.Store(!ok) }

// Client is an HTTP client whose connections start in the client
// namespace.
type Client struct {
	HTTP *http.Client
	// BindPorts: each dial binds an ephemeral port before it connects, so
	// that Result.ClientPort is known when the connection fails (a reset
	// names the bucket two nodes answered). Set it before the first dial.
	// bind(2) draws ports at random and cannot reuse one in TIME_WAIT, so
	// clients that hold tens of thousands of connections leave it off.
	BindPorts bool
	ns        string

	once  sync.Once
	dials chan dialReq
	done  chan struct{} // closed when the network is torn down
}

type dialReq struct {
	ctx           context.Context
	network, addr string
	port          int
	reply         chan dialResult
}

type dialResult struct {
	conn net.Conn
	port int // the local port, also when the dial failed (0: unknown)
	err  error
}

// dialerThreads is the size of the pool of threads that stay in the
// client namespace to create sockets (a socket belongs to the namespace of
// the thread that created it; creating a thread per dial is too slow for
// tens of thousands of connections). A thread is held for as long as its
// dial waits, up to the caller's deadline: the chaos campaign opens 100
// connections a second with a 1 s deadline, so with 64 threads an outage
// of more than about two thirds of the buckets failed the others too,
// queued behind it (the report's longest run of failed connections then
// measured the pool, not the cluster).
const dialerThreads = 256

// NewClient returns a client in the client namespace; every request uses
// a new connection (no keep-alive), as new flows are what the NLB hashes.
func (n *Net) NewClient(timeout time.Duration) *Client {
	c := &Client{ns: n.Client}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.Dial(ctx, network, addr)
		},
	}
	c.HTTP = &http.Client{Transport: tr, Timeout: timeout}
	c.done = make(chan struct{})
	n.addCleanup(func() {
		c.once.Do(func() {}) // no dialers start after this
		close(c.done)
	})
	return c
}

// Dial opens a connection from the client namespace.
func (c *Client) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.DialFrom(ctx, network, addr, 0)
}

func (c *Client) startDialers() {
	c.dials = make(chan dialReq)
	for i := 0; i < dialerThreads; i++ {
		go inNS(c.ns, func() error {
			for {
				var r dialReq
				select {
				case r = <-c.dials:
				case <-c.done:
					return nil
				}
				d := net.Dialer{}
				port := r.port
				if port != 0 {
					d.LocalAddr = &net.TCPAddr{Port: port}
				} else if c.BindPorts {
					d.Control = func(_, _ string, c syscall.RawConn) error {
						return bindAnyPort(c, &port)
					}
				}
				conn, err := d.DialContext(r.ctx, r.network, r.addr)
				if a, ok := conn.(*net.TCPConn); ok && port == 0 {
					port = a.LocalAddr().(*net.TCPAddr).Port
				}
				r.reply <- dialResult{conn, port, err}
			}
		})
	}
}

// Result is one request's outcome.
type Result struct {
	Node       string
	ClientPort int
	Err        error
	At         time.Time
}

// Get makes one request on a new connection and says who answered.
func (c *Client) Get(ctx context.Context, url string) Result {
	r := Result{At: time.Now()}
	var local int
	tr := c.HTTP.Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, port, err := c.dial(ctx, network, addr, 0)
		local = port
		return conn, err
	}
	hc := &http.Client{Transport: tr, Timeout: c.HTTP.Timeout}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	r.ClientPort = local
	if err != nil {
		r.Err = err
		return r
	}
	defer resp.Body.Close()
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	r.Node = strings.TrimSpace(string(buf[:n]))
	if resp.StatusCode != 200 {
		r.Err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return r
}

// DialFrom opens a connection from the client namespace with a fixed
// source port (0: any; the NLB hashes on it).
func (c *Client) DialFrom(ctx context.Context, network, addr string, port int) (net.Conn, error) {
	conn, _, err := c.dial(ctx, network, addr, port)
	return conn, err
}

// dial is DialFrom that also returns the local port (0: not known).
func (c *Client) dial(ctx context.Context, network, addr string, port int) (net.Conn, int, error) {
	c.once.Do(c.startDialers)
	r := dialReq{ctx: ctx, network: network, addr: addr, port: port, reply: make(chan dialResult, 1)}
	select {
	case c.dials <- r:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	case <-c.done:
		return nil, 0, net.ErrClosed
	}
	res := <-r.reply
	return res.conn, res.port, res.err
}

// bindAnyPort binds the socket to an ephemeral port of its family and
// stores the port.
func bindAnyPort(c syscall.RawConn, port *int) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		var sa syscall.Sockaddr = &syscall.SockaddrInet4{}
		if d, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN); d == syscall.AF_INET6 {
			sa = &syscall.SockaddrInet6{}
		}
		if err = syscall.Bind(int(fd), sa); err != nil {
			return
		}
		var got syscall.Sockaddr
		if got, err = syscall.Getsockname(int(fd)); err != nil {
			return
		}
		switch a := got.(type) {
		case *syscall.SockaddrInet4:
			*port = a.Port
		case *syscall.SockaddrInet6:
			*port = a.Port
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Forward listens on 127.0.0.1 in the test's own namespace and carries
// each connection to target (HOST:PORT) from the client namespace: a
// program that cannot enter a namespace (a browser driven over a local
// DevTools socket) reaches the cluster through it, and the cluster sees
// the client's address. It stops with the network.
func (c *Client) Forward(t TB, target string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("forwarder: %v", err)
	}
	go func() {
		<-c.done
		l.Close()
	}()
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := c.Dial(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer out.Close()
				go func() {
					io.Copy(out, in)
					if tc, ok := out.(*net.TCPConn); ok {
						tc.CloseWrite()
					}
				}()
				io.Copy(in, out)
			}()
		}
	}()
	return l.Addr().String()
}
