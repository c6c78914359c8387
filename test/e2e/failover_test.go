//go:build linux

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/testnet"
)

const groupVIP = "10.77.1.200"

// groupConfig is group db (owners node1, node2; node3 the third voter)
// with an exec resource whose marker files live in dir.
func groupConfig(t *testing.T, dir string) string {
	res, err := testnet.MarkerResource(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.FailoverGroup("db", groupVIP+"/24", res)
}

// vipClient asks the group VIP who serves it, each request on a new
// connection with a short timeout (a fenced VIP drops, it does not
// refuse), and can poll it in the background every 20 ms.
type vipClient struct {
	c       *testnet.Client
	mu      sync.Mutex
	results []testnet.Result
	stop    chan struct{}
	done    chan struct{}
}

func newVIPClient(n *testnet.Net) *vipClient {
	return &vipClient{c: n.NewClient(300 * time.Millisecond)}
}

func (v *vipClient) get() testnet.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	return v.c.Get(ctx, "http://"+groupVIP+"/")
}

// poll starts the background requests and returns once one was answered.
func (v *vipClient) poll(n *testnet.Net) {
	v.stop, v.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.done)
		for {
			select {
			case <-v.stop:
				return
			default:
			}
			r := v.get()
			v.mu.Lock()
			v.results = append(v.results, r)
			v.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	n.WaitFor(5*time.Second, "the poller's first answer", func() bool { return v.last().Err == nil && v.last().Node != "" })
}

// last is the newest polled result.
func (v *vipClient) last() testnet.Result {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.results) == 0 {
		return testnet.Result{}
	}
	return v.results[len(v.results)-1]
}

// halt stops polling and returns every result.
func (v *vipClient) halt() []testnet.Result {
	close(v.stop)
	<-v.done
	return v.results
}

// firstBy is when node first answered at or after t.
func firstBy(rs []testnet.Result, node string, t time.Time) time.Time {
	for _, r := range rs {
		if r.Node == node && !r.At.Before(t) {
			return r.At
		}
	}
	return time.Time{}
}

// groupOn waits until nd sees group db online on owner.
func groupOn(t *testing.T, n *testnet.Net, nd *testnet.Node, owner string, within time.Duration) api.Group {
	t.Helper()
	var g api.Group
	n.WaitFor(within, "group db online on "+owner, func() bool {
		s, err := nd.Status()
		if err != nil || len(s.Groups) != 1 {
			return false
		}
		g = s.Groups[0]
		return g.Owner == owner && (g.State == "online" || g.State == "degraded")
	})
	return g
}

// groupFailoverTraps counts cdGroupFailover notifications for group db
// that name old and new owners.
func groupFailoverTraps(log, old, new string) int {
	b, _ := os.ReadFile(log)
	count := 0
	for _, p := range strings.Split(string(b), "OID: "+oidNotify+"11\t")[1:] {
		end := strings.Index(p, "\n")
		if end < 0 {
			end = len(p)
		}
		line := p[:end]
		if strings.Contains(line, mibRoot+".1.5.3.0 = STRING: \"db\"") &&
			strings.Contains(line, mibRoot+".1.5.4.0 = STRING: \""+old+"\"") &&
			strings.Contains(line, mibRoot+".1.5.5.0 = STRING: \""+new+"\"") {
			count++
		}
	}
	return count
}

// TestGroupFailover: a failover group with a VIP on three voters. Planned
// move, then kill -9 of the owner: the client sees the VIP answered by the
// new owner within the target, never again by the old one (whose web
// server and address outlive its agent: the kernel fence drops them), and
// the NOC gets a group_failover trap for each change.
func TestGroupFailover(t *testing.T) {
	needTools(t, "snmptrapd")
	dir := t.TempDir()
	cfg := groupConfig(t, dir)
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return cfg + snmpConfig }})
	for _, nd := range n.Nodes[:2] {
		nd.Serve(80)
	}
	log := trapd(t, n)
	n.Start()
	g := groupOn(t, n, n.Nodes[2], "node1", 20*time.Second)
	if g.VIP != groupVIP+"/24" || g.Replication != "none" {
		t.Errorf("group status: %+v", g)
	}
	s, _ := n.Nodes[2].Status()
	if s.Quorum == nil || !s.Quorum.HasQuorum || s.Quorum.Voters != 3 || s.Quorum.Alive != 3 || s.Quorum.Leader == "" {
		t.Errorf("quorum: %+v", s.Quorum)
	}
	vc := newVIPClient(n)
	get := vc.get
	n.WaitFor(5*time.Second, "the VIP answered by node1", func() bool { return get().Node == "node1" })

	// Planned move from a node that owns nothing, once node2 is ready to
	// take over: until then the group is degraded and a move is refused
	// ("no other owner is ready"), as it should be.
	n.WaitFor(10*time.Second, "group db online with node2 ready", func() bool {
		s, err := n.Nodes[2].Status()
		return err == nil && len(s.Groups) == 1 && s.Groups[0].State == "online" && s.Groups[0].Standby == "node2"
	})
	out, code := n.Nodes[2].Ctl("move", "db")
	if code != 0 || !strings.Contains(out, "moved to node2") {
		t.Fatalf("move: exit %d\n%s", code, out)
	}
	t.Logf("clusterctl move:\n%s", out)
	n.WaitFor(3*time.Second, "the VIP answered by node2", func() bool { return get().Node == "node2" })
	n.WaitFor(5*time.Second, "group_failover trap node1 -> node2", func() bool { return groupFailoverTraps(log, "node1", "node2") == 1 })
	if _, err := os.Stat(filepath.Join(dir, "node1.running")); err == nil {
		t.Error("the resource still runs on node1 after the move")
	}
	if hasAddr(n.Nodes[0], groupVIP) || !hasAddr(n.Nodes[1], groupVIP) {
		t.Errorf("after the move the VIP should be on node2 only: node1 %v, node2 %v", hasAddr(n.Nodes[0], groupVIP), hasAddr(n.Nodes[1], groupVIP))
	}
	if out, code := n.Nodes[2].Ctl("move", "db", "node3"); code != 1 || !strings.Contains(out, "not one of") {
		t.Errorf("move to a non-owner: exit %d: %s", code, out)
	}
	if out, code := n.Nodes[2].Ctl("move", "nosuch"); code != 1 || !strings.Contains(out, "unknown group") {
		t.Errorf("move of an unknown group: exit %d: %s", code, out)
	}

	// kill -9 the owner while a client polls the VIP.
	vc.poll(n)
	killed := time.Now()
	n.Nodes[1].Kill()
	n.WaitFor(5*time.Second, "the VIP answered by node1 again", func() bool { return vc.last().Node == "node1" })
	// A second more: long enough for the old owner to show up again if
	// it were not fenced.
	time.Sleep(time.Second)
	results := vc.halt()
	first := firstBy(results, "node1", killed)
	for _, r := range results {
		if r.At.After(first) && r.Node != "node1" {
			t.Errorf("after node1 took over, a request at %s was answered by %q (err %v)", r.At.Format(time.StampMilli), r.Node, r.Err)
		}
	}
	gap := first.Sub(killed)
	t.Logf("kill -9 of the owner: VIP answered by the new owner after %v", gap)
	if gap > 3*time.Second {
		t.Errorf("failover gap %v, want <= 3 s", gap)
	}
	g = groupOn(t, n, n.Nodes[2], "node1", time.Second)
	if g.Reason != "owner_failed" || g.Failovers != 2 {
		t.Errorf("after kill -9: %+v", g)
	}
	n.WaitFor(5*time.Second, "group_failover trap node2 -> node1", func() bool { return groupFailoverTraps(log, "node2", "node1") == 1 })

	// The zombie: node2's address and web server outlived its agent.
	// Point the client at node2's MAC: the kernel fence must drop it.
	mac, err := exec.Command("ip", "netns", "exec", n.Nodes[1].NS, "cat", "/sys/class/net/eth0/address").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !hasAddr(n.Nodes[1], groupVIP) {
		t.Fatal("the killed agent's address is gone: nothing left to test the fence with")
	}
	pin := exec.Command("ip", "netns", "exec", n.Client, "ip", "neigh", "replace", groupVIP, "lladdr", strings.TrimSpace(string(mac)), "dev", "eth0", "nud", "permanent")
	if out, err := pin.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r := get(); r.Err == nil {
		t.Errorf("the fenced zombie answered the VIP: %q", r.Node)
	}
	exec.Command("ip", "netns", "exec", n.Client, "ip", "neigh", "del", groupVIP, "dev", "eth0").Run()

	// The old owner comes back: it must not take the group (failback
	// never) and must stop its stale resource.
	n.Nodes[1].Start()
	n.WaitFor(10*time.Second, "node2's stale resource stopped", func() bool {
		_, err := os.Stat(filepath.Join(dir, "node2.running"))
		return os.IsNotExist(err)
	})
	n.WaitFor(5*time.Second, "group db online on node1 with node2 as standby (not degraded)", func() bool {
		s, err := n.Nodes[2].Status()
		return err == nil && s.Groups[0].Owner == "node1" && s.Groups[0].State == "online" && s.Groups[0].Standby == "node2"
	})

	// SIGTERM on the owner (a service stop): it stops the resource, lets
	// the group go at once and leaves; node2 takes over.
	start := time.Now()
	if !n.Nodes[0].Term(10 * time.Second) {
		t.Fatal("node1 did not stop on SIGTERM")
	}
	g = groupOn(t, n, n.Nodes[2], "node2", 5*time.Second)
	t.Logf("SIGTERM of the owner: group online on node2 %v after the signal", time.Since(start))
	if g.Reason != "owner_left" {
		t.Errorf("after SIGTERM: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(dir, "node1.running")); err == nil {
		t.Error("node1 left its resource running after SIGTERM")
	}
}

// TestGroupPartitionNoSplitBrain: the owner is cut off from both other
// nodes on both networks but stays alive, and the client still reaches
// every node. The owner loses its lease and fences itself; the majority
// side promotes the standby; the client never gets an answer from the old
// owner once the new one has answered. After the heal the old owner is a
// standby.
func TestGroupPartitionNoSplitBrain(t *testing.T) {
	dir := t.TempDir()
	cfg := groupConfig(t, dir)
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return cfg }})
	for _, nd := range n.Nodes[:2] {
		nd.Serve(80)
	}
	n.Start()
	groupOn(t, n, n.Nodes[2], "node1", 20*time.Second)
	vc := newVIPClient(n)
	n.WaitFor(5*time.Second, "the VIP answered by node1", func() bool { return vc.get().Node == "node1" })

	vc.poll(n)
	cut := time.Now()
	n.Partition(n.Nodes[:1], n.Nodes[1:])
	n.WaitFor(6*time.Second, "the VIP answered by node2", func() bool { return vc.last().Node == "node2" })
	// Long enough for a split brain to show if there were one.
	time.Sleep(2 * time.Second)
	results := vc.halt()
	first := firstBy(results, "node2", cut)
	for _, r := range results {
		if r.At.After(first) && r.Node == "node1" {
			t.Errorf("split brain: node1 answered at %s after node2 had taken over", r.At.Format(time.StampMilli))
		}
	}
	t.Logf("partition of the owner: VIP answered by node2 after %v", first.Sub(cut))
	if _, err := os.Stat(filepath.Join(dir, "node1.running")); err == nil {
		t.Error("the cut-off owner still runs the resource")
	}
	s, _ := n.Nodes[0].Status()
	if s.Quorum == nil || s.Quorum.HasQuorum {
		t.Errorf("node1 alone should have no quorum: %+v", s.Quorum)
	}
	ev, _ := n.Nodes[0].Events()
	lost := false
	for _, e := range ev {
		lost = lost || e.Type == "quorum_lost"
	}
	if !lost {
		t.Error("node1 recorded no quorum_lost event")
	}
	g := groupOn(t, n, n.Nodes[2], "node2", time.Second)
	if g.Reason != "owner_failed" && g.Reason != "lease_expired" {
		t.Errorf("reason: %+v", g)
	}

	n.Heal()
	n.WaitFor(10*time.Second, "group db online on node2 with node1 as standby", func() bool {
		s, err := n.Nodes[0].Status()
		return err == nil && s.Quorum != nil && s.Quorum.HasQuorum && s.Groups[0].Owner == "node2" && s.Groups[0].State == "online" && s.Groups[0].Standby == "node1"
	})
}

// hasAddr reports whether addr is configured on the node's public NIC.
func hasAddr(nd *testnet.Node, addr string) bool {
	out, _ := exec.Command("ip", "-n", nd.NS, "-4", "-o", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+addr+"/")
}
