//go:build linux

// Command takeover measures the NLB tier on a namespace cluster:
//
//	takeover -mode gap -fault kill  -runs 10   # longest span without a successful connection
//	takeover -mode gap -fault cable -runs 10   #   ... after a cable pull of a whole node
//	takeover -mode gap -profile fast -stable 5m -burn 2   # false takeovers under CPU load
//	takeover -mode wrk -runs 7                 # requests/s through the VIP vs. the node's own IP
//
// gap: a client opens a new TCP connection every 10 ms, each with its own
// 300 ms timeout, from source ports whose buckets the victim owns (the
// other buckets are unaffected and would hide the gap). Success = the
// handshake completes; the connection is then reset, leaving no TIME_WAIT.
// The figure is the longest span between two successes around the fault.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
	"github.com/clusterd/clusterd/internal/vip"
)

const vipAddr = "10.77.1.100"

func main() {
	mode := flag.String("mode", "gap", "gap or wrk")
	nodes := flag.Int("nodes", 4, "cluster size")
	runs := flag.Int("runs", 10, "repetitions")
	fault := flag.String("fault", "kill", "gap: kill (kill -9 of the agent) or cable (both cables of the node)")
	profile := flag.String("profile", "lan", "heartbeat profile")
	stable := flag.Duration("stable", 0, "gap: no fault; run this long and report the longest gap (false takeovers)")
	burn := flag.Int("burn", 0, "busy loops at normal priority during the run")
	flag.Parse()

	p := &testnet.Program{Quiet: true}
	p.HandleSignals()
	defer p.Done()
	nn := *nodes
	if *mode == "wrk" {
		nn = 1
	}
	n := testnet.New(p, testnet.Options{Nodes: nn, Backup: true, Profile: *profile, Realtime: true, Extra: func(int) string {
		return fmt.Sprintf("load_balancing:\n  - vip: %s/24\n    interface: eth0\n    rules:\n      - ports: \"80\"\n", vipAddr)
	}})
	for _, nd := range n.Nodes {
		nd.Serve(80)
	}
	n.Start()
	n.WaitConverged(30 * time.Second)
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < *burn; i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.Start()
		p.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	switch *mode {
	case "gap":
		gap(p, n, *runs, *fault, *stable, *profile)
	case "wrk":
		wrk(p, n, *runs)
	default:
		p.Fatalf("unknown -mode %q", *mode)
	}
}

// victimPorts are client ports whose flows the victim owns now.
func victimPorts(n *testnet.Net, victim string, want int) []int {
	var cands []vip.Candidate
	for _, nd := range n.Nodes {
		cands = append(cands, vip.Candidate{Name: nd.Name, Weight: 50})
	}
	t := vip.Assign(cands, vip.TableSize)
	seed := vip.Seed("test")
	var out []int
	for port := 20000; port < 60000 && len(out) < want; port++ {
		b := vip.Bucket("none", netip.AddrPortFrom(netip.MustParseAddr(testnet.ClientIP), uint16(port)), seed, vip.TableSize)
		if t.Owner(b) == victim {
			out = append(out, port)
		}
	}
	return out
}

type attempt struct {
	at time.Time
	ok bool
}

// prober opens a connection every 10 ms from the given ports until stop.
func prober(c *testnet.Client, ports []int, stop <-chan struct{}) []attempt {
	var mu sync.Mutex
	var out []attempt
	var wg sync.WaitGroup
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			sort.Slice(out, func(a, b int) bool { return out[a].at.Before(out[b].at) })
			return out
		case <-tk.C:
		}
		port := ports[i%len(ports)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			conn, err := dialFrom(ctx, c, port)
			ok := err == nil
			if ok {
				conn.(*net.TCPConn).SetLinger(0) // RST: no TIME_WAIT to block the port's reuse
				conn.Close()
			}
			mu.Lock()
			out = append(out, attempt{start, ok})
			mu.Unlock()
		}()
	}
}

func dialFrom(ctx context.Context, c *testnet.Client, port int) (net.Conn, error) {
	return c.DialFrom(ctx, "tcp4", vipAddr+":80", port)
}

// longestGap is the longest span between consecutive successes.
func longestGap(as []attempt) (time.Duration, int) {
	var last time.Time
	var worst time.Duration
	fails := 0
	for _, a := range as {
		if !a.ok {
			fails++
			continue
		}
		if !last.IsZero() && a.at.Sub(last) > worst {
			worst = a.at.Sub(last)
		}
		last = a.at
	}
	return worst, fails
}

func gap(p *testnet.Program, n *testnet.Net, runs int, fault string, stable time.Duration, profile string) {
	c := n.NewClient(time.Second)
	if stable > 0 {
		v := n.Nodes[1]
		ports := victimPorts(n, v.Name, 300)
		gen0 := generations(n)
		start := time.Now()
		stop := make(chan struct{})
		go func() { time.Sleep(stable); close(stop) }()
		as := prober(c, ports, stop)
		g, fails := longestGap(as)
		gen1 := generations(n)
		falseFail := 0
		for _, nd := range n.Nodes {
			ev, _ := nd.Events()
			for _, e := range ev {
				if e.Time.After(start) && e.Type == "node_failed" {
					falseFail++
					fmt.Fprintf(os.Stderr, "%s: %s %s %s\n", nd.Name, e.Type, e.Node, e.Detail)
				}
			}
		}
		fmt.Printf("profile=%s stable=%s node_failed=%d bucket_generation_changes=%v attempts=%d failed=%d longest_gap=%s\n",
			profile, stable, falseFail, diffGen(gen0, gen1), len(as), fails, g.Round(time.Millisecond))
		return
	}
	var gaps []time.Duration
	for r := 0; r < runs; r++ {
		v := n.Nodes[1+r%(len(n.Nodes)-1)]
		ports := victimPorts(n, v.Name, 300)
		stop := make(chan struct{})
		res := make(chan []attempt)
		go func() { res <- prober(c, ports, stop) }()
		time.Sleep(time.Second)
		switch fault {
		case "kill":
			v.Kill()
		case "cable":
			v.Cable(testnet.Private, false)
			v.Cable(testnet.Public, false)
		}
		time.Sleep(2 * time.Second)
		close(stop)
		as := <-res
		g, fails := longestGap(as)
		gaps = append(gaps, g)
		fmt.Fprintf(os.Stderr, "run %2d: %s %s: longest gap %s (%d of %d attempts failed)\n", r+1, fault, v.Name, g.Round(time.Millisecond), fails, len(as))
		if fault == "kill" {
			v.Start()
		} else {
			v.Cable(testnet.Private, true)
			v.Cable(testnet.Public, true)
		}
		n.WaitConverged(30 * time.Second)
		time.Sleep(time.Second) // the victim re-takes its buckets (settle)
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	fmt.Printf("nodes=%d fault=%s profile=%s runs=%d  p50=%s  max=%s  min=%s\n", len(n.Nodes), fault, profile, len(gaps),
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), gaps[0].Round(time.Millisecond))
}

var reqRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk alternates wrk runs through the VIP and straight to the node's own
// address and reports the median ratio.
func wrk(p *testnet.Program, n *testnet.Net, runs int) {
	if _, err := exec.LookPath("wrk"); err != nil {
		p.Fatalf("wrk is not installed (apt-get install wrk)")
	}
	one := func(target string) float64 {
		out, err := exec.Command("ip", "netns", "exec", n.Client, "wrk", "-t", "2", "-c", "32", "-d", "5s", "http://"+target+"/").CombinedOutput()
		if err != nil {
			p.Fatalf("wrk: %v\n%s", err, out)
		}
		m := reqRE.FindSubmatch(out)
		if m == nil {
			p.Fatalf("wrk output: %s", out)
		}
		f, _ := strconv.ParseFloat(string(m[1]), 64)
		return f
	}
	var ratios []float64
	for r := 0; r < runs; r++ {
		direct := one(n.Nodes[0].PubIP)
		via := one(vipAddr)
		ratios = append(ratios, via/direct)
		fmt.Fprintf(os.Stderr, "run %d: direct %.0f req/s, via VIP %.0f req/s, ratio %.3f\n", r+1, direct, via, via/direct)
	}
	sort.Float64s(ratios)
	fmt.Printf("wrk -t2 -c32 -d5s, %d alternating pairs: median ratio VIP/direct = %.3f (min %.3f, max %.3f)\n", runs, ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
}

// generations reads every node's VIP generation: it changes only when the
// bucket map does (a takeover).
func generations(n *testnet.Net) map[string]uint64 {
	out := map[string]uint64{}
	for _, nd := range n.Nodes {
		if s, err := nd.Status(); err == nil && len(s.VIPs) > 0 {
			out[nd.Name] = s.VIPs[0].Generation
		}
	}
	return out
}

func diffGen(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}
