//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const vipAddr = "10.77.1.100"

func lbConfig(weight int, mode string) string { return lbConfigAt(vipAddr+"/24", weight, mode) }

// lbConfigAt is lbConfig's VIP section with the VIP vip (address/prefix).
func lbConfigAt(vip string, weight int, mode string) string {
	return fmt.Sprintf(`load_balancing:
  - vip: %s
    interface: eth0
    mode: %s
    rules:
      - ports: "80"
        protocol: tcp
        weight: %d
    health:
      http: http://127.0.0.1:80/health
      interval: 100ms
      fall: 2
      rise: 2
`, vip, mode, weight)
}

type nlb struct {
	*testnet.Net
	backends []*testnet.Backend
	client   *testnet.Client
	url      string // the VIP's URL
}

func newNLB(t *testing.T, nodes int, mode string, start bool) *nlb {
	n := testnet.New(t, testnet.Options{Nodes: nodes, Backup: true, Extra: func(int) string { return lbConfig(50, mode) }})
	x := &nlb{Net: n, client: n.NewClient(2 * time.Second), url: "http://" + vipAddr + "/"}
	for _, nd := range n.Nodes {
		x.backends = append(x.backends, nd.Serve(80))
	}
	if start {
		n.Start()
		x.waitOwners(nodes)
	}
	return x
}

// waitOwners waits until every running node agrees that k nodes own
// buckets.
func (x *nlb) waitOwners(k int) {
	x.WaitFor(15*time.Second, fmt.Sprintf("%d bucket owners, converged", k), func() bool {
		for _, nd := range x.Nodes {
			if !nd.Running() {
				continue
			}
			s, err := nd.Status()
			if err != nil || !s.Converged || len(s.VIPs) == 0 || len(s.VIPs[0].Rules[0].Owners) != k {
				return false
			}
		}
		return true
	})
}

// burst makes n requests, each on a new connection, c at a time.
func (x *nlb) burst(n, c int) []testnet.Result {
	out := make([]testnet.Result, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, c)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = x.client.Get(context.Background(), x.url)
		}()
	}
	wg.Wait()
	return out
}

func tally(rs []testnet.Result) (map[string]int, []error) {
	m := map[string]int{}
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		m[r.Node]++
	}
	return m, errs
}

// nlbModes: the frame-delivery modes the core NLB tests run in. multicast
// (NLB's default) and unicast (a shared unicast MAC the switch floods);
// igmp is covered by TestNLBHealthCheckWithdraws.
var nlbModes = []string{"multicast", "unicast"}

// inModes runs f once per mode, as subtests.
func inModes(t *testing.T, f func(t *testing.T, mode string)) {
	for _, m := range nlbModes {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

// spreadAndOwner makes n requests to the VIP, each on a new connection:
// none may fail, every node must serve its even share (within 50 %), and
// clusterctl owner on the first node must name the node that answered
// each of the first 40 flows (the Go hash predicts the kernel's).
func (x *nlb) spreadAndOwner(t *testing.T, n int, vip, client string) {
	t.Helper()
	rs := x.burst(n, 8)
	m, errs := tally(rs)
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(errs), n, errs[0])
	}
	t.Logf("spread: %v", m)
	share := n / len(x.Nodes)
	for _, nd := range x.Nodes {
		if m[nd.Name] < share/2 || m[nd.Name] > share*3/2 {
			t.Errorf("%s served %d of %d (want ~%d)", nd.Name, m[nd.Name], n, share)
		}
	}
	v := netip.AddrPortFrom(netip.MustParseAddr(vip), 80).String()
	for _, r := range rs[:40] {
		c := netip.AddrPortFrom(netip.MustParseAddr(client), uint16(r.ClientPort)).String()
		out, code := x.Nodes[0].Ctl("owner", v, c)
		if code != 0 || !strings.Contains(out, "served by "+r.Node) {
			t.Fatalf("owner %s %s says %q (exit %d); the flow was served by %s", v, c, out, code, r.Node)
		}
	}
}

// checkUnicastFlooded: in unicast mode the switch must never learn the
// cluster MAC (no member sends from it), so it keeps flooding the VIP's
// frames to every member; and the client resolved the VIP to it.
func checkUnicastFlooded(t *testing.T, x *nlb, mode string) {
	t.Helper()
	checkFloodedAt(t, x, mode, vipAddr, "02:bf:0a:4d:01:64")
}

// checkFloodedAt is checkUnicastFlooded for the VIP vip, whose unicast
// cluster MAC is cmac.
func checkFloodedAt(t *testing.T, x *nlb, mode, vip, cmac string) {
	t.Helper()
	if mode != "unicast" {
		return
	}
	learned, err := x.SwitchLearned("pub")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range learned {
		if m == cmac {
			t.Errorf("the switch learned the cluster MAC %s from a frame's source: it will stop flooding it", cmac)
		}
	}
	out, _ := exec.Command("ip", "-n", x.Client, "neigh", "show", vip).CombinedOutput()
	if !strings.Contains(string(out), cmac) {
		t.Errorf("the client's neighbour entry for the VIP: %q, want %s", out, cmac)
	}
}

// TestNLBSpreadsFlowsAndOwnerPredicts: every connection is answered, the
// load spreads over the 4 nodes per their (equal) weights, and clusterctl
// owner names the node that actually answered each flow.
func TestNLBSpreadsFlowsAndOwnerPredicts(t *testing.T) { inModes(t, testSpread) }

func testSpread(t *testing.T, mode string) {
	x := newNLB(t, 4, mode, true)
	x.spreadAndOwner(t, 400, vipAddr, testnet.ClientIP)
	// ICMP echo to the VIP: exactly one node (the default host) answers.
	if _, err := exec.LookPath("ping"); err == nil {
		out, _ := exec.Command("ip", "netns", "exec", x.Client, "ping", "-c", "3", "-i", "0.2", "-W", "1", vipAddr).CombinedOutput()
		if strings.Contains(string(out), "DUP!") || !strings.Contains(string(out), " 0% packet loss") {
			t.Errorf("ping to the VIP:\n%s", out)
		}
	}
	wantMAC := map[string]string{"multicast": "03:bf:0a:4d:01:64", "unicast": "02:bf:0a:4d:01:64"}[mode]
	s, _ := x.Nodes[0].Status()
	if v := s.VIPs[0]; v.PacketsAccepted == 0 || v.PacketsDropped == 0 || v.MAC != wantMAC {
		t.Errorf("VIP status: %+v", v)
	}
	checkUnicastFlooded(t, x, mode)
}

// TestNLBKill9FailsClosed: the agent of one node dies but its web server
// lives on (a zombie): after the liveness window it takes no new flows,
// survivors take its buckets, and no request fails after takeover.
func TestNLBKill9FailsClosed(t *testing.T) { inModes(t, testKill9) }

func testKill9(t *testing.T, mode string) {
	x := newNLB(t, 4, mode, true)
	victim := x.Nodes[3]
	victim.Kill()
	killed := time.Now()
	x.WaitState(3*time.Second, victim, "failed")
	x.waitOwners(3)
	rs := x.burst(200, 8)
	m, errs := tally(rs)
	if len(errs) > 0 {
		t.Errorf("%d of 200 requests failed after takeover: %v", len(errs), errs[0])
	}
	if m[victim.Name] > 0 {
		t.Errorf("the node whose agent died still took %d new flows %s after the kill", m[victim.Name], time.Since(killed))
	}
	t.Logf("after kill -9 of %s: %v", victim.Name, m)
	checkUnicastFlooded(t, x, mode)
}

// TestNLBDrainKeepsEstablished: a long-lived connection on the drained node
// runs to its end while new requests all go elsewhere and none fails;
// drain --wait returns 0 when it has ended.
func TestNLBDrainKeepsEstablished(t *testing.T) { inModes(t, testDrain) }

func testDrain(t *testing.T, mode string) {
	x := newNLB(t, 3, mode, true)
	// Open streams until one lands on node2.
	var target = x.Nodes[1]
	type stream struct {
		node string
		body string
		err  error
	}
	done := make(chan stream, 1)
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		hc := x.NewClient(20 * time.Second)
		req, _ := httpGet(ctx, "http://"+vipAddr+"/stream?s=4")
		resp, err := hc.HTTP.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("opening a stream: %v", err)
		}
		if resp.Header.Get("X-Node") != target.Name {
			resp.Body.Close()
			cancel()
			continue
		}
		go func() {
			defer cancel()
			b, err := readAll(resp.Body)
			done <- stream{target.Name, b, err}
		}()
		break
	}
	out, code := x.Nodes[0].Ctl("drain", target.Name)
	if code != 0 {
		t.Fatalf("drain: %d %s", code, out)
	}
	waitOut := make(chan string, 1)
	go func() {
		o, c := target.Ctl("drain", "--wait", "--timeout", "30s")
		waitOut <- fmt.Sprintf("exit %d: %s", c, o)
	}()
	x.waitOwners(2)
	rs := x.burst(150, 6)
	m, errs := tally(rs)
	if len(errs) > 0 || m[target.Name] > 0 {
		t.Errorf("during drain: %v, %d errors %v", m, len(errs), errs)
	}
	select {
	case s := <-done:
		if s.err != nil || !strings.HasSuffix(strings.TrimSpace(s.body), "end") {
			t.Errorf("the long-lived connection on the drained node broke: %v %q", s.err, s.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream did not finish")
	}
	select {
	case o := <-waitOut:
		if !strings.HasPrefix(o, "exit 0") || !strings.Contains(o, "drained") {
			t.Errorf("drain --wait: %s", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain --wait did not return")
	}
	if st := x.Nodes[0].MemberState(target.Name); st != "drained" {
		t.Errorf("state %q, want drained", st)
	}
	// Drain survives an agent restart until resumed.
	target.Kill()
	target.Start()
	x.WaitFor(5*time.Second, "drained after restart", func() bool { return x.Nodes[0].MemberState(target.Name) == "drained" })
	if out, code := x.Nodes[2].Ctl("resume", target.Name); code != 0 {
		t.Fatalf("resume from another node: %d %s", code, out)
	}
	x.waitOwners(3)
	checkUnicastFlooded(t, x, mode)
}

// TestNLBHealthCheckWithdraws: a failing health check takes the node out
// of the VIP; recovery brings it back.
func TestNLBHealthCheckWithdraws(t *testing.T) {
	x := newNLB(t, 3, "igmp", true)
	x.backends[2].SetHealthy(false)
	x.waitOwners(2)
	m, errs := tally(x.burst(120, 6))
	if len(errs) > 0 || m["node3"] > 0 {
		t.Errorf("with node3 unhealthy: %v, errors %v", m, errs)
	}
	s, _ := x.Nodes[0].Status()
	for _, mem := range s.Members {
		if mem.Name == "node3" && mem.Healthy {
			t.Error("status shows node3 healthy")
		}
	}
	x.backends[2].SetHealthy(true)
	x.waitOwners(3)
}

// TestNLBJoinKeepsEstablished: a node joining takes buckets without
// breaking established connections.
func TestNLBJoinKeepsEstablished(t *testing.T) { inModes(t, testJoin) }

func testJoin(t *testing.T, mode string) {
	x := newNLB(t, 4, mode, false)
	for _, nd := range x.Nodes[:3] {
		nd.Start()
	}
	x.waitOwners(3)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var broken []string
	opened := make(chan struct{}, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := x.NewClient(20 * time.Second)
			req, _ := httpGet(context.Background(), "http://"+vipAddr+"/stream?s=3")
			resp, err := hc.HTTP.Do(req)
			opened <- struct{}{} // established (or failed): counted either way
			if err != nil {
				mu.Lock()
				broken = append(broken, err.Error())
				mu.Unlock()
				return
			}
			b, err := readAll(resp.Body)
			if err != nil || !strings.HasSuffix(strings.TrimSpace(b), "end") {
				mu.Lock()
				broken = append(broken, fmt.Sprintf("%v %q", err, b))
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 12; i++ {
		<-opened
	}
	x.Nodes[3].Start()
	x.waitOwners(4)
	wg.Wait()
	if len(broken) > 0 {
		t.Errorf("%d of 12 established connections broke when node4 joined: %v", len(broken), broken)
	}
	m, errs := tally(x.burst(100, 5))
	if len(errs) > 0 || m["node4"] == 0 {
		t.Errorf("after join: %v, errors %v", m, errs)
	}
	checkUnicastFlooded(t, x, mode)
}

// TestNLBSIGTERMKeepsEstablished: SIGTERM stops new flows at once, and an
// established connection finishes within node.shutdown_drain.
func TestNLBSIGTERMKeepsEstablished(t *testing.T) {
	x := newNLB(t, 3, "multicast", true)
	target := x.Nodes[2]
	var resp2 *httpResp
	for i := 0; i < 40 && resp2 == nil; i++ {
		hc := x.NewClient(20 * time.Second)
		req, _ := httpGet(context.Background(), "http://"+vipAddr+"/stream?s=0.8")
		resp, err := hc.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("X-Node") == target.Name {
			resp2 = resp
		} else {
			resp.Body.Close()
		}
	}
	if resp2 == nil {
		t.Fatal("no stream landed on node3")
	}
	stopped := make(chan bool)
	go func() { stopped <- target.Term(10 * time.Second) }()
	b, err := readAll(resp2.Body)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(b), "end") {
		t.Errorf("established connection broken by SIGTERM: %v %q", err, b)
	}
	if !<-stopped {
		t.Error("agent did not stop")
	}
	x.WaitState(3*time.Second, target, "left")
	m, errs := tally(x.burst(60, 4))
	if len(errs) > 0 || m[target.Name] > 0 {
		t.Errorf("after SIGTERM: %v %v", m, errs)
	}
}

// TestNLBPublicCablePull: a node whose public cable is pulled stays a
// member (its private heartbeat works) but must give up its buckets, since
// no client can reach it; mended, it takes them back.
func TestNLBPublicCablePull(t *testing.T) {
	x := newNLB(t, 4, "multicast", true)
	v := x.Nodes[2]
	v.Cable(testnet.Public, false)
	x.waitOwners(3)
	if st := x.Nodes[0].MemberState(v.Name); st != "active" {
		t.Errorf("%s is %s; its private heartbeat still works", v.Name, st)
	}
	m, errs := tally(x.burst(200, 8))
	if len(errs) > 0 || m[v.Name] > 0 {
		t.Errorf("with %s's public cable pulled: %v, %d errors %v", v.Name, m, len(errs), errs)
	}
	v.Cable(testnet.Public, true)
	x.waitOwners(4)
	m, errs = tally(x.burst(200, 8))
	if len(errs) > 0 || m[v.Name] == 0 {
		t.Errorf("after mending: %v, errors %v", m, errs)
	}
}

// TestNLBPrivatePartitionWithBackupPath: the private network splits 2|2;
// the backup path on the public LAN keeps one membership, so every
// connection is still answered exactly once.
func TestNLBPrivatePartitionWithBackupPath(t *testing.T) {
	x := newNLB(t, 4, "multicast", true)
	x.PartitionNIC(testnet.Private, x.Nodes[:2], x.Nodes[2:])
	time.Sleep(time.Second) // well past the failure timeout
	for _, nd := range x.Nodes {
		s, err := nd.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range s.Members {
			if m.State != "active" {
				t.Errorf("%s sees %s as %s during a private-network split", nd.Name, m.Name, m.State)
			}
		}
		if s.VIPs[0].Rules[0].Owners == nil || len(s.VIPs[0].Rules[0].Owners) != 4 {
			t.Errorf("%s: owners %v", nd.Name, s.VIPs[0].Rules[0].Owners)
		}
	}
	m, errs := tally(x.burst(300, 8))
	if len(errs) > 0 {
		t.Errorf("%d of 300 failed during the split: %v", len(errs), errs[0])
	}
	t.Logf("during the split: %v", m)
	x.Heal()
}

// TestNLBMismatchedRulesFlagged: a node with other port rules is flagged
// in every status, naming the section.
func TestNLBMismatchedRulesFlagged(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(i int) string {
		if i == 2 {
			return strings.Replace(lbConfig(50, "multicast"), `ports: "80"`, `ports: "8080"`, 1)
		}
		return lbConfig(50, "multicast")
	}})
	n.Start()
	n.WaitFor(10*time.Second, "node3 flagged on node1", func() bool {
		s, err := n.Nodes[0].Status()
		if err != nil {
			return false
		}
		for _, m := range s.Members {
			if m.Name == "node3" && contains(m.ConfigMismatch, "load_balancing") {
				return !s.Converged
			}
		}
		return false
	})
}

// TestNLBRuleOptions: affinity single keeps one client on one node;
// filtering single sends a rule to the live node with the lowest
// handling_priority (and to the next one when it drains that rule);
// filtering disabled drops the ports on every node.
func TestNLBRuleOptions(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(i int) string {
		// node3 has the lowest handling priority for 8080, then node2.
		hp := []int{30, 20, 10}[i]
		return fmt.Sprintf(`load_balancing:
  - vip: %s/24
    interface: eth0
    rules:
      - ports: "80"
        affinity: single
      - ports: "8080"
        filtering: single
        handling_priority: %d
      - ports: "9090"
        filtering: disabled
`, vipAddr, hp)
	}})
	for _, nd := range n.Nodes {
		nd.Serve(80)
		nd.Serve(8080)
		nd.Serve(9090)
	}
	n.Start()
	n.WaitConverged(15 * time.Second)
	x := &nlb{Net: n, client: n.NewClient(time.Second)}
	x.WaitFor(10*time.Second, "converged tables", func() bool {
		s, err := n.Nodes[0].Status()
		return err == nil && s.Converged && len(s.VIPs) == 1 && len(s.VIPs[0].Rules[1].Owners) == 1
	})
	get := func(port int, k int) (map[string]int, []error) {
		var rs []testnet.Result
		for i := 0; i < k; i++ {
			rs = append(rs, x.client.Get(context.Background(), fmt.Sprintf("http://%s:%d/", vipAddr, port)))
		}
		return tally(rs)
	}
	if m, errs := get(80, 30); len(errs) > 0 || len(m) != 1 {
		t.Errorf("affinity single: one client should stay on one node: %v %v", m, errs)
	}
	if m, errs := get(8080, 30); len(errs) > 0 || m["node3"] != 30 {
		t.Errorf("filtering single: all to node3 (lowest handling_priority): %v %v", m, errs)
	}
	if m, errs := get(9090, 3); len(errs) != 3 {
		t.Errorf("filtering disabled: the ports must be dropped: %v", m)
	}
	// drain --rule 8080 on node3: the rule goes to node2; port 80 is untouched.
	if out, code := n.Nodes[2].Ctl("drain", "--rule", "8080"); code != 0 {
		t.Fatalf("drain --rule: %s", out)
	}
	x.WaitFor(5*time.Second, "8080 on node2", func() bool {
		m, errs := get(8080, 5)
		return len(errs) == 0 && m["node2"] == 5
	})
	if st := n.Nodes[0].MemberState("node3"); st != "active" {
		t.Errorf("a rule drain changed the node's state to %s", st)
	}
	n.Nodes[2].Ctl("resume")
	x.WaitFor(5*time.Second, "8080 back on node3", func() bool {
		m, errs := get(8080, 5)
		return len(errs) == 0 && m["node3"] == 5
	})
}

// TestNLBWeightReload: a node's weight changes with SIGHUP, without a
// restart, and the bucket shares follow (weight 0: no new flows).
func TestNLBWeightReload(t *testing.T) {
	x := newNLB(t, 2, "multicast", true)
	v := x.Nodes[1]
	owners := func() map[string]int {
		s, err := x.Nodes[0].Status()
		if err != nil || len(s.VIPs) == 0 {
			return nil
		}
		return s.VIPs[0].Rules[0].Owners
	}
	setWeight := func(w int) {
		v.WriteConfig("")
		setLine(t, v.Config, "        weight: 50", fmt.Sprintf("        weight: %d", w))
		v.HUP()
	}
	setWeight(0)
	x.WaitFor(5*time.Second, "node2 without buckets", func() bool { o := owners(); return len(o) == 1 && o["node1"] == 16381 })
	setWeight(100)
	x.WaitFor(5*time.Second, "node2 with two thirds", func() bool {
		o := owners()
		return o["node2"] > 16381*65/100 && o["node2"] < 16381*68/100
	})
	if strings.Contains(v.Log(), "not reloaded") {
		t.Errorf("weight reload refused:\n%s", v.Log())
	}
	m, errs := tally(x.burst(90, 6))
	if len(errs) > 0 || m["node2"] < m["node1"] {
		t.Errorf("after weight 100 vs 50: %v %v", m, errs)
	}
}

// TestMixedTiers: one cluster with a node that serves no VIP (a database
// node, here with the lowest priority number) beside the web nodes that
// share it. It must own no buckets, never be the VIP's default host (ping
// answered by a web node), and not be flagged as a config mismatch.
func TestMixedTiers(t *testing.T) {
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(i int) string {
		if i == 0 {
			return ""
		}
		return lbConfig(50, "multicast")
	}})
	for _, nd := range n.Nodes[1:] {
		nd.Serve(80)
	}
	n.Start()
	n.WaitFor(15*time.Second, "the web nodes own the buckets, converged everywhere", func() bool {
		for _, nd := range n.Nodes {
			s, err := nd.Status()
			if err != nil || !s.Converged {
				return false
			}
		}
		s, _ := n.Nodes[1].Status()
		o := s.VIPs[0].Rules[0].Owners
		return len(o) == 2 && o["node2"] > 0 && o["node3"] > 0
	})
	c := n.NewClient(2 * time.Second)
	for i := 0; i < 40; i++ {
		if r := c.Get(context.Background(), "http://"+vipAddr+"/"); r.Err != nil || r.Node == "node1" {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if _, err := exec.LookPath("ping"); err == nil {
		out, _ := exec.Command("ip", "netns", "exec", n.Client, "ping", "-c", "3", "-i", "0.2", "-W", "1", vipAddr).CombinedOutput()
		if strings.Contains(string(out), "DUP!") || !strings.Contains(string(out), " 0% packet loss") {
			t.Errorf("ping to the VIP (default host must be a web node):\n%s", out)
		}
	}
	for _, nd := range n.Nodes {
		s, _ := nd.Status()
		if !s.Converged {
			t.Errorf("%s says the cluster is not converged", nd.Name)
		}
		for _, m := range s.Members {
			if len(m.ConfigMismatch) > 0 {
				t.Errorf("%s flags %s: %v", nd.Name, m.Name, m.ConfigMismatch)
			}
		}
	}
}
