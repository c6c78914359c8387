//go:build linux

// Package testnet builds multi-node clusters in Linux network namespaces
// and runs the real clusterd binaries on them, for end-to-end tests and
// scenario benchmarks.
//
// The topology mirrors the hospital's dual-NIC servers: a switch namespace
// holds two bridges, "pub" (the public LAN: clients and VIPs) and "priv"
// (the heartbeat network). Every node namespace has eth0 on pub and eth1 on
// priv; a client namespace sits on pub. Faults: kill -9, SIGTERM, a cable
// pull per NIC (the switch port goes down), a NIC down inside the node, and
// partitions (bridge-level nftables drops between chosen node sets).
//
// Everything created is removed when the test ends, also on failure.
package testnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
)

// TB is the part of testing.TB the harness needs, so that benchmark
// programs can use it too.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Skipper is a TB that can skip (testing.T).
type Skipper interface {
	Skip(args ...any)
}

// RequireRoot skips the test when not root: namespaces need CAP_NET_ADMIN.
func RequireRoot(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if s, ok := t.(Skipper); ok {
			s.Skip("skipping: this test builds network namespaces and needs root (run ./scripts/test.sh as root)")
		}
		t.Fatalf("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the ip command (iproute2) is missing: apt-get install iproute2")
	}
}

// Options shape a test cluster.
type Options struct {
	Nodes   int
	Backup  bool   // heartbeat.backup_bind on the public NIC
	Profile string // heartbeat profile ("" = lan)
	// Extra is appended to node i's config (0-based), e.g. load_balancing.
	Extra func(i int) string
	// IPv6: the public LAN carries IPv6 too (PubNet6; each host's address
	// ends like its IPv4 one), and backends listen on both families.
	IPv6 bool
	// Realtime runs agents under SCHED_RR (the default of a real node);
	// off by default so that 32 test agents cannot starve the test itself.
	Realtime bool
}

// Net is one test network.
type Net struct {
	t      TB
	ID     string
	Dir    string
	Bin    string
	Key    string
	opts   Options
	sw     string
	Client string // client namespace
	Nodes  []*Node

	mu      sync.Mutex
	cleanup []func()
	closed  bool // Close began: Start starts nothing
}

// Node is one cluster node.
type Node struct {
	net     *Net
	Index   int
	Name    string
	NS      string
	PubIP   string
	PubIP6  string // with Options.IPv6
	PrivIP  string
	Config  string
	Socket  string
	LogPath string
	// Bin is the directory of the binaries this node runs (Net.Bin unless
	// set: a rolling upgrade starts nodes on an older build).
	Bin string

	mu  sync.Mutex
	cmd *exec.Cmd
	ch  chan struct{}
}

// Addresses of the test LANs.
const (
	PubNet  = "10.77.1."
	PrivNet = "10.77.2."
	// ClusterName is every test cluster's name (it seeds the NLB hash).
	ClusterName = "test"
	ClientIP    = PubNet + "250"
	PubNet6     = "fd00:77:1::"
	ClientIP6   = PubNet6 + "250"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	seq       int
	seqMu     sync.Mutex
)

// CurrentVersion is the version the test binaries of this tree announce.
const CurrentVersion = "0.0.0-test-current"

// Binaries builds clusterd and clusterctl once per process and returns
// their directory.
func Binaries(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "clusterd-bin-")
		if buildErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-ldflags", "-X github.com/clusterd/clusterd/internal/version.Version="+CurrentVersion,
			"-o", binDir, "./cmd/clusterd", "./cmd/clusterctl")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building binaries: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("%v", buildErr)
	}
	if p, ok := t.(*Program); ok {
		// A program (the demo, a benchmark) is one run: its cleanups
		// remove the binaries too. Test packages' TestMain is Main, which
		// removes them after the tests.
		p.Cleanup(RemoveBinaries)
	}
	return binDir
}

// Main is the TestMain of a package whose tests build the binaries: it
// runs the tests (m is the *testing.M; an interface, so that programs
// using the harness do not link package testing), removes the binaries
// (as the tests remove their networks) and exits with the tests' status.
func Main(m interface{ Run() int }) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}

// RemoveBinaries deletes what Binaries built; call it when the process's
// last network is closed (TestMain after m.Run, or a Program's Done).
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the clusterd module")
	}
	return filepath.Dir(gomod), nil
}

// New builds the namespaces and writes the configs; Start runs the nodes.
func New(t TB, o Options) *Net {
	t.Helper()
	RequireRoot(t)
	bin := Binaries(t)
	seqMu.Lock()
	seq++
	id := fmt.Sprintf("cd%d%c", os.Getpid()%100000, 'a'+rune(seq%26))
	seqMu.Unlock()
	dir, err := os.MkdirTemp("", "clusterd-net-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	n := &Net{t: t, ID: id, Dir: dir, Bin: bin, opts: o, sw: id + "sw", Client: id + "cl"}
	t.Cleanup(n.Close)
	removeStale()
	raiseNeighbourLimits()
	n.mustRun("ip", "netns", "add", n.sw)
	n.addCleanup(func() { run("ip", "netns", "del", n.sw) })
	for _, br := range []string{"pub", "priv"} {
		n.mustRun("ip", "-n", n.sw, "link", "add", br, "type", "bridge")
		// No STP, no forwarding delay, and no multicast snooping: a plain
		// switch that floods, as the hospital's NLB VLAN does.
		n.mustRun("ip", "-n", n.sw, "link", "set", br, "type", "bridge", "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0")
		n.mustRun("ip", "-n", n.sw, "link", "set", br, "up")
	}
	n.addHost(n.Client, "c", ClientIP, "")
	k, _ := config.NewKey()
	n.Key = filepath.Join(dir, "cluster.key")
	os.WriteFile(n.Key, []byte(k), 0o600)
	for i := 0; i < o.Nodes; i++ {
		n.Nodes = append(n.Nodes, n.newNode(i))
	}
	return n
}

// raiseNeighbourLimits: the kernel's ARP table is shared by all network
// namespaces and overflows at its default 1024 entries once ~16 nodes talk
// to each other on two NICs ("neighbor table overflow", then ENOBUFS). One
// machine playing 32 hosts needs more; real hosts each have their own.
func raiseNeighbourLimits() {
	for k, v := range map[string]string{"gc_thresh1": "4096", "gc_thresh2": "8192", "gc_thresh3": "16384"} {
		p := "/proc/sys/net/ipv4/neigh/default/" + k
		if cur, err := os.ReadFile(p); err == nil {
			if n, _ := strconv.Atoi(strings.TrimSpace(string(cur))); n < 4096 {
				os.WriteFile(p, []byte(v), 0o644)
			}
		}
	}
}

// removeStale deletes namespaces left by an earlier test process that died
// before its cleanup ran.
func removeStale() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cd") {
			continue
		}
		digits := strings.TrimLeft(f[0][2:], "0123456789")
		pid, err := strconv.Atoi(f[0][2 : len(f[0])-len(digits)])
		if err != nil || pid == os.Getpid()%100000 {
			continue
		}
		if syscall.Kill(pid, 0) != nil {
			run("ip", "netns", "del", f[0])
		}
	}
}

func (n *Net) addCleanup(f func()) {
	n.mu.Lock()
	n.cleanup = append(n.cleanup, f)
	n.mu.Unlock()
}

// Close kills every process and removes every namespace (idempotent).
func (n *Net) Close() {
	// No agent starts from now on: a program interrupted mid-fault (a
	// chaos storm restarting an agent) left one running, and its switch
	// namespace, behind the teardown.
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	// SIGTERM first, all at once, so agents flush what they write at exit
	// (CPU profiles); whatever does not stop in 3 s is killed.
	var wg sync.WaitGroup
	for _, nd := range n.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.Term(3 * time.Second) }()
	}
	wg.Wait()
	n.mu.Lock()
	c := n.cleanup
	n.cleanup = nil
	n.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
	if os.Getenv("CLUSTERD_KEEP_LOGS") == "" {
		os.RemoveAll(n.Dir)
	}
}

// addHost creates namespace ns wired to the bridges: eth0 on pub (pubIP),
// and eth1 on priv if privIP is set. Switch-side ports are <tag>p / <tag>q.
func (n *Net) addHost(ns, tag, pubIP, privIP string) {
	n.mustRun("ip", "netns", "add", ns)
	n.addCleanup(func() { run("ip", "netns", "del", ns) })
	n.mustRun("ip", "-n", ns, "link", "set", "lo", "up")
	if n.opts.IPv6 {
		// No duplicate address detection on the NICs made next: a fresh
		// namespace is a NIC that came up a moment ago, and until its
		// link-local address has passed DAD (1-2 s) the kernel sends no
		// neighbour solicitation from it, so a node whose answer comes
		// from an address on lo (a load-balanced IPv6 VIP) could not
		// resolve the client. A real node's NIC is up long before.
		n.mustRun("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	}
	wire := func(port, nic, br, ip string) {
		n.mustRun("ip", "-n", n.sw, "link", "add", port, "type", "veth", "peer", "name", nic, "netns", ns)
		n.mustRun("ip", "-n", n.sw, "link", "set", port, "master", br, "up")
		n.mustRun("ip", "-n", ns, "addr", "add", ip+"/24", "dev", nic)
		n.mustRun("ip", "-n", ns, "link", "set", nic, "up")
	}
	wire(tag+"p", "eth0", "pub", pubIP)
	if n.opts.IPv6 {
		// nodad: usable at once, as a test cannot wait for DAD.
		n.mustRun("ip", "-n", ns, "-6", "addr", "add", PubNet6+pubIP[strings.LastIndexByte(pubIP, '.')+1:]+"/64", "dev", "eth0", "nodad")
	}
	if privIP != "" {
		wire(tag+"q", "eth1", "priv", privIP)
	}
}

func (n *Net) newNode(i int) *Node {
	nd := &Node{
		net:    n,
		Index:  i,
		Name:   fmt.Sprintf("node%d", i+1),
		NS:     fmt.Sprintf("%sn%d", n.ID, i+1),
		PubIP:  fmt.Sprintf("%s%d", PubNet, 11+i),
		PrivIP: fmt.Sprintf("%s%d", PrivNet, 11+i),
	}
	if n.opts.IPv6 {
		nd.PubIP6 = fmt.Sprintf("%s%d", PubNet6, 11+i)
	}
	n.addHost(nd.NS, fmt.Sprintf("n%d", i+1), nd.PubIP, nd.PrivIP)
	nd.Config = filepath.Join(n.Dir, nd.Name+".yaml")
	nd.Socket = filepath.Join(n.Dir, nd.Name+".sock")
	nd.LogPath = filepath.Join(n.Dir, nd.Name+".log")
	nd.WriteConfig("")
	return nd
}

// WriteConfig writes the node's config; extra YAML is appended after the
// harness's own (and after Options.Extra).
func (nd *Node) WriteConfig(extra string) {
	n := nd.net
	var join []string
	for j := 0; j < n.opts.Nodes && j < 3; j++ {
		join = append(join, fmt.Sprintf("%s%d", PrivNet, 11+j))
	}
	backup := ""
	if n.opts.Backup {
		backup = "  backup_bind: " + nd.PubIP + "\n"
	}
	prof := n.opts.Profile
	if prof == "" {
		prof = "lan"
	}
	cfg := fmt.Sprintf(`cluster:
  name: `+ClusterName+`
  key_file: %s
node:
  name: %s
  priority: %d
  state_dir: %s
  shutdown_drain: 1s
heartbeat:
  bind: %s
  join: [%s]
%s  profile: %s
  realtime: %v
control:
  socket: %s
`, n.Key, nd.Name, nd.Index+1, filepath.Join(n.Dir, nd.Name+".state"), nd.PrivIP, strings.Join(join, ", "), backup, prof, n.opts.Realtime, nd.Socket)
	if n.opts.Extra != nil {
		cfg += n.opts.Extra(nd.Index)
	}
	cfg += extra
	if err := os.WriteFile(nd.Config, []byte(cfg), 0o644); err != nil {
		n.t.Fatalf("%v", err)
	}
}

// Start runs every node (in index order).
func (n *Net) Start() {
	n.t.Helper()
	for _, nd := range n.Nodes {
		nd.Start()
	}
}

// Start runs this node's clusterd and waits until its control socket
// answers.
func (nd *Node) Start() {
	n := nd.net
	n.t.Helper()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	// Under nd.mu: Close's Term of this node waits for a Start that
	// began before it, and one after it starts nothing.
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		n.t.Logf("%s not started: the network is being torn down", nd.Name)
		return
	}
	if nd.cmd != nil {
		n.t.Fatalf("%s is already running", nd.Name)
	}
	lf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatalf("%v", err)
	}
	cmd := exec.Command("ip", "netns", "exec", nd.NS, filepath.Join(nd.bin(), "clusterd"), "run", "--config", nd.Config)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("starting %s: %v", nd.Name, err)
	}
	ch := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(ch) }()
	nd.cmd, nd.ch = cmd, ch
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := api.NewClient(nd.Socket).Status(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ch:
			n.t.Fatalf("%s exited at start:\n%s", nd.Name, nd.Log())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s did not answer on its socket within 10s: %v\n%s", nd.Name, err, nd.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (nd *Node) bin() string {
	if nd.Bin != "" {
		return nd.Bin
	}
	return nd.net.Bin
}

// Running reports whether the node's agent process is alive.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil
}

// PID is the agent's process id (0 if it is not running).
func (nd *Node) PID() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil || nd.cmd.Process == nil {
		return 0
	}
	return nd.cmd.Process.Pid
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (nd *Node) Kill() { nd.signal(syscall.SIGKILL, 5*time.Second) }

// Pause stops the agent with SIGSTOP (a hung process: GC pause, VM
// freeze, swap storm); Resume continues it with SIGCONT.
func (nd *Node) Pause() { nd.sendOnly(syscall.SIGSTOP) }

// Resume continues an agent stopped by Pause.
func (nd *Node) Resume() { nd.sendOnly(syscall.SIGCONT) }

func (nd *Node) sendOnly(sig syscall.Signal) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil && nd.cmd.Process != nil {
		nd.cmd.Process.Signal(sig)
	}
}

// Term sends SIGTERM and waits (up to timeout) for a clean exit.
func (nd *Node) Term(timeout time.Duration) bool { return nd.signal(syscall.SIGTERM, timeout) }

func (nd *Node) signal(sig syscall.Signal, timeout time.Duration) bool {
	nd.mu.Lock()
	cmd, ch := nd.cmd, nd.ch
	nd.mu.Unlock()
	if cmd == nil {
		return true
	}
	cmd.Process.Signal(sig)
	cmd.Process.Signal(syscall.SIGCONT) // a paused agent acts on the signal too
	ok := true
	select {
	case <-ch:
	case <-time.After(timeout):
		ok = false
		cmd.Process.Kill()
		<-ch
	}
	nd.mu.Lock()
	nd.cmd = nil
	nd.mu.Unlock()
	return ok
}

// Log returns the node's log so far.
func (nd *Node) Log() string {
	b, _ := os.ReadFile(nd.LogPath)
	return string(b)
}

// Status asks the node's agent for its status.
func (nd *Node) Status() (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return api.NewClient(nd.Socket).Status(ctx)
}

// Events returns the node's event log.
func (nd *Node) Events() ([]api.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out []api.Event
	err := api.NewClient(nd.Socket).Events(ctx, false, func(e api.Event) { out = append(out, e) })
	return out, err
}

// Ctl runs clusterctl against this node and returns its output and exit
// code.
func (nd *Node) Ctl(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(nd.bin(), "clusterctl"), append([]string{"--socket", nd.Socket}, args...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return b.String(), code
}

// MemberState is what this node says of member name ("" if unlisted or the
// node does not answer).
func (nd *Node) MemberState(name string) string {
	s, err := nd.Status()
	if err != nil {
		return ""
	}
	for _, m := range s.Members {
		if m.Name == name {
			return string(m.State)
		}
	}
	return ""
}

// NIC names inside a node.
const (
	Public  = "eth0"
	Private = "eth1"
)

func (nd *Node) port(nic string) string {
	if nic == Public {
		return fmt.Sprintf("n%dp", nd.Index+1)
	}
	return fmt.Sprintf("n%dq", nd.Index+1)
}

// Cable pulls (up=false) or mends the cable of one NIC: the switch port
// goes down, so both directions stop.
func (nd *Node) Cable(nic string, up bool) { nd.Cables(up, nic) }

// Cables pulls (up false) or plugs back the cables of several NICs in one
// step, over netlink in the switch's namespace, and returns when the first
// link changed: a fault that hits both heartbeat paths at once (two ip
// commands are ~100 ms apart on a loaded machine), timed exactly.
func (nd *Node) Cables(up bool, nics ...string) time.Time {
	ns, err := netns.GetFromName(nd.net.sw)
	if err != nil {
		nd.net.t.Fatalf("opening namespace %s: %v", nd.net.sw, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		nd.net.t.Fatalf("netlink in %s: %v", nd.net.sw, err)
	}
	defer h.Close()
	var links []netlink.Link
	for _, nic := range nics {
		l, err := h.LinkByName(nd.port(nic))
		if err != nil {
			nd.net.t.Fatalf("link %s: %v", nd.port(nic), err)
		}
		links = append(links, l)
	}
	at := time.Now()
	for _, l := range links {
		set := h.LinkSetDown
		if up {
			set = h.LinkSetUp
		}
		if err := set(l); err != nil {
			nd.net.t.Fatalf("link %s up=%v: %v", l.Attrs().Name, up, err)
		}
	}
	return at
}

// NIC sets a NIC down or up inside the node (an administrator's ifdown).
func (nd *Node) NIC(nic string, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	nd.net.mustRun("ip", "-n", nd.NS, "link", "set", nic, state)
}

// Partition drops all traffic between the two node sets, on both bridges,
// until Heal.
func (n *Net) Partition(a, b []*Node) {
	n.PartitionNIC(Public, a, b)
	n.PartitionNIC(Private, a, b)
}

// SplitSwitch cuts the node set a off from everyone else, the client
// namespace included, on both networks until Heal, in one step: what a
// switch split does (the clients and the router stay on b's side).
// Partition cuts the nodes from each other only (a filter between them),
// so the client still reaches both sides.
func (n *Net) SplitSwitch(a, b []*Node) {
	var rules strings.Builder
	cutRules(&rules, Public, a, b)
	cutRules(&rules, Private, a, b)
	for _, x := range a {
		fmt.Fprintf(&rules, "add rule bridge cdpart cut iifname %s oifname %s drop\n", x.port(Public), clientPort)
		fmt.Fprintf(&rules, "add rule bridge cdpart cut iifname %s oifname %s drop\n", clientPort, x.port(Public))
	}
	n.nft(partTable + rules.String())
}

// clientPort is the client namespace's switch-side port (addHost tag "c").
const clientPort = "cp"

// partTable is the switch's table of partition rules (Heal deletes it).
const partTable = "add table bridge cdpart\nadd chain bridge cdpart cut { type filter hook forward priority 0; }\n"

// PartitionNIC drops traffic between the two node sets on one network
// only (Public or Private), until Heal.
func (n *Net) PartitionNIC(nic string, a, b []*Node) {
	var rules strings.Builder
	cutRules(&rules, nic, a, b)
	n.nft(partTable + rules.String())
}

// cutRules writes the rules that drop frames between a and b on nic.
func cutRules(w *strings.Builder, nic string, a, b []*Node) {
	for _, x := range a {
		for _, y := range b {
			fmt.Fprintf(w, "add rule bridge cdpart cut iifname %s oifname %s drop\n", x.port(nic), y.port(nic))
			fmt.Fprintf(w, "add rule bridge cdpart cut iifname %s oifname %s drop\n", y.port(nic), x.port(nic))
		}
	}
}

// Heal removes every partition.
func (n *Net) Heal() { run("ip", "netns", "exec", n.sw, "nft", "delete table bridge cdpart") }

func (n *Net) nft(script string) {
	cmd := exec.Command("ip", "netns", "exec", n.sw, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft: %v\n%s\n%s", err, out, script)
	}
}

// WaitFor polls cond every 10 ms until it holds or d passes.
func (n *Net) WaitFor(d time.Duration, what string, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			var logs strings.Builder
			if len(n.Nodes) > 8 {
				for nd, view := range n.states() {
					fmt.Fprintf(&logs, "%s sees %v\n", nd.Name, view)
				}
				n.t.Fatalf("timed out after %s waiting for %s\n%s", d, what, logs.String())
			}
			for _, nd := range n.Nodes {
				s, _ := nd.Ctl("status")
				fmt.Fprintf(&logs, "--- %s status:\n%s\n", nd.Name, s)
			}
			n.t.Fatalf("timed out after %s waiting for %s\n%s", d, what, logs.String())
		}
		time.Sleep(time.Duration(10*max(1, len(n.Nodes)/4)) * time.Millisecond)
	}
}

// states returns, for each running node, its view of every member's state
// (one status call per node).
func (n *Net) states() map[*Node]map[string]string {
	out := map[*Node]map[string]string{}
	for _, nd := range n.Nodes {
		if !nd.Running() {
			continue
		}
		m := map[string]string{}
		if s, err := nd.Status(); err == nil {
			for _, mem := range s.Members {
				m[mem.Name] = string(mem.State)
			}
		}
		out[nd] = m
	}
	return out
}

// WaitState waits until every running node other than about says member
// about is in state.
func (n *Net) WaitState(d time.Duration, about *Node, state string) {
	n.t.Helper()
	n.WaitFor(d, fmt.Sprintf("every running node to see %s as %s", about.Name, state), func() bool {
		for nd, view := range n.states() {
			if nd != about && view[about.Name] != state {
				return false
			}
		}
		return true
	})
}

// WaitConverged waits until every running node lists every running node
// as active.
func (n *Net) WaitConverged(d time.Duration) {
	n.t.Helper()
	n.WaitFor(d, "all running nodes active on every running node", func() bool {
		views := n.states()
		for _, view := range views {
			for other := range views {
				if view[other.Name] != "active" {
					return false
				}
			}
		}
		return true
	})
}

func (n *Net) mustRun(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func run(args ...string) {
	exec.Command(args[0], args[1:]...).Run()
}

// HUP sends SIGHUP (reload) to the node's agent.
func (nd *Node) HUP() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		nd.cmd.Process.Signal(syscall.SIGHUP)
	}
}

// SwitchLearned lists the MAC addresses the switch's bridge br ("pub" or
// "priv") has learned from the frames' source addresses: a unicast
// cluster MAC must never be among them, or the switch would stop flooding
// the VIP's frames to every member.
func (n *Net) SwitchLearned(br string) ([]string, error) {
	out, err := exec.Command("bridge", "-n", n.sw, "fdb", "show", "br", br).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bridge fdb show br %s: %v: %s", br, err, out)
	}
	var macs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.Contains(l, "permanent") {
			continue
		}
		macs = append(macs, f[0])
	}
	return macs, nil
}
