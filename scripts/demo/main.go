//go:build linux

// Command demo runs a local clusterd cluster in network namespaces on this
// machine, shows it working through a node failure, and tears it all down
// on Ctrl-C. Run it with scripts/demo.sh (as root).
package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

func main() {
	nodes := flag.Int("nodes", 3, "cluster size")
	once := flag.Bool("once", false, "run the walkthrough and exit instead of waiting for Ctrl-C")
	flag.Parse()

	p := &testnet.Program{Quiet: true}
	defer p.Done()
	p.HandleSignals()

	say := func(f string, a ...any) { fmt.Printf("\n\033[1m>>> "+f+"\033[0m\n", a...) }
	say("building clusterd and a %d-node network (public + private NIC per node, plus a client)", *nodes)
	n := testnet.New(p, testnet.Options{Nodes: *nodes, Backup: true})
	n.Start()
	n.WaitConverged(20 * time.Second)
	ctl := func(nd *testnet.Node, args ...string) {
		out, _ := nd.Ctl(args...)
		fmt.Print(out)
	}
	say("clusterctl status on %s", n.Nodes[0].Name)
	ctl(n.Nodes[0], "status")

	v := n.Nodes[len(n.Nodes)-1]
	say("pulling %s's private (heartbeat) cable: the backup path on the public NIC keeps it a member", v.Name)
	v.Cable(testnet.Private, false)
	time.Sleep(time.Second)
	ctl(n.Nodes[0], "status")
	v.Cable(testnet.Private, true)

	say("kill -9 of %s's agent", v.Name)
	start := time.Now()
	v.Kill()
	n.WaitState(5*time.Second, v, "failed")
	fmt.Printf("every survivor marked %s failed after %s\n", v.Name, time.Since(start).Round(time.Millisecond))
	ctl(n.Nodes[0], "status")

	say("restarting %s: it rejoins", v.Name)
	v.Start()
	n.WaitConverged(15 * time.Second)
	ctl(n.Nodes[0], "status")
	say("the event log (clusterctl events)")
	ctl(n.Nodes[0], "events")

	if *once {
		return
	}
	say("the cluster keeps running. Try, in another terminal:")
	for _, nd := range n.Nodes {
		fmt.Printf("  clusterctl --socket %s status      # %s (its namespace: %s)\n", nd.Socket, nd.Name, nd.NS)
	}
	fmt.Printf("  ip netns exec %s kill -9 $(pgrep -f %s)\n", v.NS, v.Config)
	fmt.Println("Press Ctrl-C to tear everything down.")
	select {}
}
