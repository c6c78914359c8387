//go:build linux

// Command demo runs a local clusterd cluster in network namespaces on this
// machine, shows it working through a node failure, and tears it all down
// on Ctrl-C. Run it with scripts/demo.sh (as root).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
	"github.com/clusterd/clusterd/internal/vocab"
)

const (
	vip      = "10.77.1.100" // the load-balanced VIP, shared by every node
	groupVIP = "10.77.1.200" // the failover group's VIP, held by its owner
)

func main() {
	nodes := flag.Int("nodes", 3, "cluster size")
	once := flag.Bool("once", false, "run the walkthrough and exit instead of waiting for Ctrl-C")
	flag.Parse()

	p := &testnet.Program{Quiet: true}
	defer p.Done()
	p.HandleSignals()

	// Bold only on a terminal: a log file or a pipe gets plain text.
	bold, plain := "", ""
	if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb" {
		bold, plain = "\033[1m", "\033[0m"
	}
	say := func(f string, a ...any) { fmt.Printf("\n"+bold+">>> "+f+plain+"\n", a...) }
	say("building clusterd and a %d-node network (public + private NIC per node, plus a client)", *nodes)
	dir, err := os.MkdirTemp("", "clusterd-demo-")
	if err != nil {
		p.Fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	group := ""
	if *nodes >= 3 {
		// node1 and node2 own group "app"; node3 is the third voter. A
		// marker file per node says where it runs (a real group would run
		// PostgreSQL or a service).
		res, err := testnet.MarkerResource(dir)
		if err != nil {
			p.Fatalf("%v", err)
		}
		group = testnet.FailoverGroup("app", groupVIP+"/24", res)
	}
	n := testnet.New(p, testnet.Options{Nodes: *nodes, Backup: true, Extra: func(int) string {
		return "load_balancing:\n  - vip: " + vip + "/24\n    interface: eth0\n    rules:\n      - ports: \"80\"\n" + group
	}})
	for _, nd := range n.Nodes {
		nd.Serve(80) // a small web server in each node's namespace
	}
	n.Start()
	n.WaitConverged(20 * time.Second)
	// What the first status shows must be true: every node converged on
	// one bucket map and the group online with its standby.
	n.WaitFor(30*time.Second, "bucket maps converged and the group online", func() bool {
		s, err := n.Nodes[0].Status()
		if err != nil || !s.Converged {
			return false
		}
		return group == "" || len(s.Groups) == 1 && s.Groups[0].State == vocab.GroupOnline && s.Groups[0].Standby != ""
	})
	client := n.NewClient(2 * time.Second)
	spread := func(k int) {
		count := map[string]int{}
		for i := 0; i < k; i++ {
			r := client.Get(context.Background(), "http://"+vip+"/")
			if r.Err != nil {
				count["errors"]++
			} else {
				count[r.Node]++
			}
		}
		fmt.Printf("%d requests from the client namespace to http://%s/, each on a new connection: %v\n", k, vip, count)
	}
	ctl := func(nd *testnet.Node, args ...string) {
		out, _ := nd.Ctl(args...)
		fmt.Print(out)
	}
	say("clusterctl status on %s", n.Nodes[0].Name)
	ctl(n.Nodes[0], "status")

	say("the shared VIP %s: every node holds it, each accepts only the flows whose bucket it owns", vip)
	spread(120)
	d := n.Nodes[1]
	say("clusterctl drain %s: no new flows for it, established ones go on", d.Name)
	ctl(n.Nodes[0], "drain", d.Name)
	time.Sleep(300 * time.Millisecond)
	spread(120)
	ctl(n.Nodes[0], "resume", d.Name)
	time.Sleep(500 * time.Millisecond)

	v := n.Nodes[len(n.Nodes)-1]
	say("pulling %s's private (heartbeat) cable: the backup path on the public NIC keeps it a member", v.Name)
	v.Cable(testnet.Private, false)
	pathIs := func(up bool) func() bool {
		return func() bool {
			s, err := n.Nodes[0].Status()
			if err != nil {
				return false
			}
			for _, m := range s.Members {
				if m.Name == v.Name {
					return m.State == vocab.Active && m.Paths["private"] == up
				}
			}
			return false
		}
	}
	n.WaitFor(5*time.Second, v.Name+"'s private path down, still active", pathIs(false))
	ctl(n.Nodes[0], "status")
	v.Cable(testnet.Private, true)
	n.WaitFor(5*time.Second, v.Name+"'s private path up again", pathIs(true))

	say("kill -9 of %s's agent", v.Name)
	start := time.Now()
	v.Kill()
	n.WaitState(5*time.Second, v, "failed")
	fmt.Printf("every survivor marked %s failed after %s; its buckets moved to the survivors\n", v.Name, time.Since(start).Round(time.Millisecond))
	ctl(n.Nodes[0], "status")
	spread(60)

	say("restarting %s: it rejoins", v.Name)
	v.Start()
	n.WaitConverged(15 * time.Second)
	n.WaitFor(15*time.Second, "bucket maps converged", func() bool {
		s, err := n.Nodes[0].Status()
		return err == nil && s.Converged
	})
	ctl(n.Nodes[0], "status")
	if group != "" {
		quick := n.NewClient(200 * time.Millisecond) // fine-grained: a fenced VIP drops, it does not refuse
		owner := func() string {
			r := quick.Get(context.Background(), "http://"+groupVIP+"/")
			if r.Err != nil {
				return "no answer"
			}
			return r.Node
		}
		n.WaitFor(20*time.Second, "group app online with a standby", func() bool {
			s, err := n.Nodes[0].Status()
			return err == nil && len(s.Groups) == 1 && s.Groups[0].State == vocab.GroupOnline && owner() == "node1"
		})
		say("failover group app (MSCS style): one owner at a time holds its VIP %s; the quorum (3 voters) decides who", groupVIP)
		fmt.Printf("http://%s/ is answered by %s\n", groupVIP, owner())
		say("clusterctl move app: a planned switchover to the other owner")
		if out, code := n.Nodes[2].Ctl("move", "app"); code != 0 {
			p.Fatalf("clusterctl move app: exit %d: %s", code, out)
		} else {
			fmt.Print(out)
		}
		fmt.Printf("http://%s/ is answered by %s\n", groupVIP, owner())
		o := n.Nodes[1]
		say("kill -9 of the owner %s's agent: its lease runs out, the kernel fences its VIP, node1 takes over", o.Name)
		if s, err := n.Nodes[0].Status(); err == nil && s.Quorum != nil {
			fmt.Printf("quorum leader before the kill: %s\n", s.Quorum.Leader)
		}
		start := time.Now()
		o.Kill()
		n.WaitFor(10*time.Second, "node1 answering the group VIP", func() bool { return owner() == "node1" })
		fmt.Printf("http://%s/ answered by node1 %s after the kill\n", groupVIP, time.Since(start).Round(10*time.Millisecond))
		o.Start()
		n.WaitFor(20*time.Second, o.Name+" back as standby", func() bool {
			s, err := n.Nodes[0].Status()
			return err == nil && len(s.Groups) == 1 && s.Groups[0].State == vocab.GroupOnline && s.Groups[0].Standby == o.Name
		})
		// The last status shows every member active and converged.
		n.WaitConverged(15 * time.Second)
		n.WaitFor(15*time.Second, "bucket maps converged", func() bool {
			s, err := n.Nodes[0].Status()
			return err == nil && s.Converged
		})
		ctl(n.Nodes[0], "status")
	}
	say("the event log (clusterctl events)")
	ctl(n.Nodes[0], "events")

	if *once {
		return
	}
	say("the cluster keeps running. Try, in another terminal (as root):")
	ctlBin := filepath.Join(n.Bin, "clusterctl")
	for _, nd := range n.Nodes {
		fmt.Printf("  %s --socket %s status      # %s (its namespace: %s)\n", ctlBin, nd.Socket, nd.Name, nd.NS)
	}
	fmt.Printf("  %s --socket %s events --follow\n", ctlBin, n.Nodes[0].Socket)
	fmt.Printf("  ip netns exec %s kill -9 $(pgrep -f %s)\n", v.NS, v.Config)
	fmt.Printf("(the binaries are in %s; Ctrl-C removes them, the namespaces and %s)\n", n.Bin, n.Dir)
	fmt.Println("Press Ctrl-C to tear everything down.")
	select {}
}
