//go:build linux

// Command failover measures the failover tier on a 3-voter namespace
// cluster (node1, node2 own group db; node3 is a witness):
//
//	failover -fault kill  -runs 10    # kill -9 of the owner's agent
//	failover -fault cable -runs 10    # both cables of the owner pulled
//	failover -fault move  -runs 10    # clusterctl move db (planned)
//	failover -fault partition -runs 10  # the owner cut off from the other nodes on both
//	                                    # networks, the client still reaching it
//
// A client in its own namespace makes a new HTTP request to the group VIP
// every 10 ms, each with a 200 ms timeout; the figure is the time from the
// fault to the first answer from the new owner. Any answer from the old
// owner after that counts as a split-brain answer (there should be none).
// Between runs the old owner is brought back (restart / cables in) and
// the group is online with a standby again.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const vip = "10.77.1.200"

func main() {
	fault := flag.String("fault", "kill", "kill, cable, partition or move")
	runs := flag.Int("runs", 10, "repetitions")
	profile := flag.String("profile", "lan", "heartbeat profile")
	flag.Parse()

	p := &testnet.Program{Quiet: true}
	p.HandleSignals()
	defer p.Done()
	dir, err := os.MkdirTemp("", "clusterd-failover-")
	if err != nil {
		p.Fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	res, err := testnet.MarkerResource(dir)
	if err != nil {
		p.Fatalf("%v", err)
	}
	cfg := testnet.FailoverGroup("db", vip+"/24", res)
	n := testnet.New(p, testnet.Options{Nodes: 3, Backup: true, Profile: *profile, Realtime: true, Extra: func(int) string { return cfg }})
	for _, nd := range n.Nodes[:2] {
		nd.Serve(80)
	}
	n.Start()
	c := n.NewClient(200 * time.Millisecond)
	get := func() testnet.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		return c.Get(ctx, "http://"+vip+"/")
	}
	online := func(withStandby bool) string {
		owner := ""
		n.WaitFor(30*time.Second, "group db online", func() bool {
			s, err := n.Nodes[2].Status()
			if err != nil || len(s.Groups) == 0 {
				return false
			}
			g := s.Groups[0]
			owner = g.Owner
			return g.State == "online" || (!withStandby && g.State == "degraded")
		})
		return owner
	}
	byName := map[string]*testnet.Node{}
	for _, nd := range n.Nodes {
		byName[nd.Name] = nd
	}

	var gaps []time.Duration
	split := 0
	for run := 0; run < *runs; run++ {
		owner := online(true)
		n.WaitFor(5*time.Second, "the VIP answered by "+owner, func() bool { return get().Node == owner })
		var mu sync.Mutex
		var results []testnet.Result
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				go func() {
					r := get()
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}()
			}
		}()
		time.Sleep(200 * time.Millisecond)
		at := time.Now()
		victim := byName[owner]
		switch *fault {
		case "kill":
			victim.Kill()
		case "cable":
			victim.Cable(testnet.Public, false)
			victim.Cable(testnet.Private, false)
		case "partition":
			var others []*testnet.Node
			for _, nd := range n.Nodes {
				if nd != victim {
					others = append(others, nd)
				}
			}
			n.Partition([]*testnet.Node{victim}, others)
		case "move":
			if out, code := n.Nodes[2].Ctl("move", "db"); code != 0 {
				p.Fatalf("move: %s", out)
			}
		default:
			p.Fatalf("unknown -fault %q", *fault)
		}
		var first time.Time
		n.WaitFor(10*time.Second, "the VIP answered by the new owner", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range results {
				if r.Err == nil && r.Node != owner && r.At.After(at) && (first.IsZero() || r.At.Before(first)) {
					first = r.At
				}
			}
			return !first.IsZero()
		})
		time.Sleep(time.Second)
		close(stop)
		<-done
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		for _, r := range results {
			// r.At is when the request began: count only requests begun
			// after the new owner had already answered.
			if r.Err == nil && r.Node == owner && r.At.After(first) {
				split++
			}
		}
		mu.Unlock()
		gap := first.Sub(at)
		gaps = append(gaps, gap)
		fmt.Printf("run %d: %s of %s: new owner answers after %v\n", run+1, *fault, owner, gap.Round(time.Millisecond))
		switch *fault {
		case "kill":
			victim.Start()
		case "cable":
			victim.Cable(testnet.Public, true)
			victim.Cable(testnet.Private, true)
		case "partition":
			n.Heal()
		}
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	fmt.Printf("%s, %d runs, profile %s: p50 %v, max %v, answers from the old owner after the new one answered: %d\n",
		*fault, len(gaps), *profile, gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), split)
}
