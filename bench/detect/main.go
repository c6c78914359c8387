//go:build linux

// Command detect is the failure-detection scenario benchmark.
//
//	detect -nodes 4 -runs 20 -fault kill     # kill -9 of one agent per run
//	detect -nodes 4 -runs 20 -fault cable    # pull every heartbeat cable of one node
//	detect -nodes 8 -stable 5m -burn 2       # false failures while 2 busy loops saturate the CPUs
//
// For each run it notes the time of the fault and reads every survivor's
// event log for its node_failed event: the run's figure is the time until
// the LAST survivor marked the victim failed. Needs root.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

func main() {
	nodes := flag.Int("nodes", 4, "cluster size")
	runs := flag.Int("runs", 20, "faults to inject")
	fault := flag.String("fault", "kill", "kill (kill -9 of the agent) or cable (pull every heartbeat cable)")
	profile := flag.String("profile", "lan", "heartbeat profile")
	realtime := flag.Bool("realtime", true, "agents under SCHED_RR (the product default)")
	stable := flag.Duration("stable", 0, "instead of faults: run this long and count false failures")
	burn := flag.Int("burn", 0, "busy loops at normal priority during the run")
	flag.Parse()

	p := &testnet.Program{Quiet: true}
	defer p.Done()
	p.HandleSignals()
	n := testnet.New(p, testnet.Options{Nodes: *nodes, Backup: true, Profile: *profile, Realtime: *realtime})
	fmt.Fprintf(os.Stderr, "starting %d nodes...\n", *nodes)
	n.Start()
	n.WaitConverged(60 * time.Second)
	for i := 0; i < *burn; i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.Start()
		p.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	if *stable > 0 {
		if !stableRun(n, *stable, *burn) {
			// Tear the cluster down before the exit status: os.Exit skips
			// the deferred Done and left 32 agents running once.
			p.Done()
			os.Exit(1)
		}
		return
	}
	var results []time.Duration
	for r := 0; r < *runs; r++ {
		v := n.Nodes[1+r%(len(n.Nodes)-1)]
		t0 := time.Now()
		switch *fault {
		case "kill":
			v.Kill()
		case "cable":
			// Both links at once, over netlink: t0 is when they went.
			t0 = v.Cables(false, testnet.Private, testnet.Public)
		default:
			p.Fatalf("unknown -fault %q", *fault)
		}
		n.WaitState(10*time.Second, v, "failed")
		worst := time.Duration(0)
		for _, s := range n.Nodes {
			if s == v {
				continue
			}
			ev, err := s.Events()
			if err != nil {
				p.Fatalf("events of %s: %v", s.Name, err)
			}
			var at time.Time
			for _, e := range ev {
				if e.Type == "node_failed" && e.Node == v.Name && !e.Time.Before(t0) {
					at = e.Time
				}
			}
			if at.IsZero() {
				p.Fatalf("%s has no node_failed event for %s", s.Name, v.Name)
			}
			worst = max(worst, at.Sub(t0))
		}
		results = append(results, worst)
		fmt.Fprintf(os.Stderr, "run %2d: %s failed on all %d survivors after %s\n", r+1, v.Name, len(n.Nodes)-1, worst.Round(time.Millisecond))
		if *fault == "kill" {
			v.Start()
		} else {
			v.Cables(true, testnet.Private, testnet.Public)
		}
		n.WaitConverged(30 * time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(results, func(i, j int) bool { return results[i] < results[j] })
	pct := func(q float64) time.Duration { return results[int(q*float64(len(results)-1)+0.5)] }
	fmt.Printf("nodes=%d fault=%s profile=%s runs=%d  p50=%s  p90=%s  max=%s  min=%s\n", *nodes, *fault, *profile, len(results),
		pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond), results[len(results)-1].Round(time.Millisecond), results[0].Round(time.Millisecond))
}

// stableRun reports false failures over d; false if there were any.
func stableRun(n *testnet.Net, d time.Duration, burn int) bool {
	fmt.Fprintf(os.Stderr, "running %s with %d busy loops...\n", d, burn)
	start := time.Now()
	cpu := startCPU(n)
	time.Sleep(d)
	usage := cpu.report(n)
	falses := 0
	var lines []string
	for _, s := range n.Nodes {
		ev, err := s.Events()
		if err != nil {
			fmt.Fprintf(os.Stderr, "events of %s: %v\n", s.Name, err)
			falses++
			continue
		}
		for _, e := range ev {
			if e.Time.After(start) && (e.Type == "node_failed" || e.Type == "path_down") {
				falses++
				lines = append(lines, fmt.Sprintf("%s: %s %s %s", s.Name, e.Type, e.Node, e.Detail))
			}
		}
	}
	for _, l := range lines {
		fmt.Fprintln(os.Stderr, l)
	}
	fmt.Printf("nodes=%d duration=%s busy_loops=%d false_failures_or_path_losses=%d %s\n", len(n.Nodes), d, burn, falses, usage)
	return falses == 0
}
