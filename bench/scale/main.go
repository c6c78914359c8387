//go:build linux

// Command scale holds many client connections through the VIP and
// measures response time against concurrency for 1, 2 and 4 nodes.
//
//	scale -hold 21000                      # 21,000 concurrent connections across 4 nodes, zero errors?
//	scale -curve 1000,5000,10000,21000     # response time vs concurrency for 1, 2, 4 nodes
//
// Each backend has a fixed capacity: a pool of -workers requests in service
// at once, each taking -service (defaults 16 x 4 ms = 4,000 requests/s per
// node), like an application server's thread pool; all nodes share this
// machine's two cores, so the point is what the cluster adds. Each client
// connection is a terminal: keep-alive, one request, -think, repeat.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const vipAddr = "10.77.1.100"

func main() {
	hold := flag.Int("hold", 0, "hold this many connections across 4 nodes and count errors")
	curve := flag.String("curve", "", "comma-separated concurrencies for the response-time table")
	workers := flag.Int("workers", 16, "requests in service at once per node")
	service := flag.Duration("service", 4*time.Millisecond, "service time per request")
	think := flag.Duration("think", 2*time.Second, "pause between a terminal's requests")
	dur := flag.Duration("duration", 20*time.Second, "measurement time per point")
	nodesList := flag.String("nodes", "1,2,4", "cluster sizes for -curve")
	flag.Parse()

	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = max(lim.Cur, 200000)
	lim.Max = max(lim.Max, lim.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "raising the open-file limit:", err)
	}
	p := &testnet.Program{Quiet: true}
	p.HandleSignals()
	defer p.Done()
	if *hold > 0 {
		n := cluster(p, 4, *workers, *service)
		r := run(n, *hold, *think, *dur)
		fmt.Printf("hold: %d connections through the VIP across 4 nodes for %s: %d opened, %d errors, %d requests, p50 %s, p99 %s, per node %v\n",
			*hold, *dur, r.opened, r.errors, r.requests, r.p50, r.p99, r.perNode)
		return
	}
	var points []int
	for _, s := range strings.Split(*curve, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			points = append(points, v)
		}
	}
	fmt.Printf("| concurrent terminals | nodes | requests/s | p50 | p99 | errors |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, ns := range strings.Split(*nodesList, ",") {
		k, _ := strconv.Atoi(ns)
		sub := &testnet.Program{Quiet: true}
		n := cluster(sub, k, *workers, *service)
		for _, c := range points {
			r := run(n, c, *think, *dur)
			fmt.Printf("| %d | %d | %.0f | %s | %s | %d |\n", c, k, float64(r.requests)/dur.Seconds(), r.p50, r.p99, r.errors)
		}
		sub.Done()
	}
}

func cluster(p *testnet.Program, k, workers int, service time.Duration) *testnet.Net {
	n := testnet.New(p, testnet.Options{Nodes: k, Backup: true, Realtime: true, Extra: func(int) string {
		return fmt.Sprintf("load_balancing:\n  - vip: %s/24\n    interface: eth0\n    rules:\n      - ports: \"80\"\n", vipAddr)
	}})
	for _, nd := range n.Nodes {
		nd.ServeCapacity(80, workers, service)
	}
	n.Start()
	n.WaitConverged(60 * time.Second)
	time.Sleep(time.Second)
	return n
}

type result struct {
	opened, errors, requests int64
	p50, p99                 time.Duration
	perNode                  map[string]int64
}

// run opens c keep-alive connections (ramping up over a few seconds, as
// terminals log in), then each sends a request every think for d.
func run(n *testnet.Net, c int, think, d time.Duration) result {
	cl := n.NewClient(10 * time.Second)
	var opened, errs, reqs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	per := map[string]int64{}
	ramp := 5 * time.Second
	start := time.Now()
	measureFrom := start.Add(ramp + think)
	end := measureFrom.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(int64(ramp) * int64(i) / int64(c)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := cl.Dial(ctx, "tcp4", vipAddr+":80")
			cancel()
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			opened.Add(1)
			br := bufio.NewReader(conn)
			// Spread the first requests over one think time.
			time.Sleep(time.Duration(int64(think) * int64(i%1000) / 1000))
			for time.Now().Before(end) {
				t0 := time.Now()
				conn.SetDeadline(t0.Add(10 * time.Second))
				if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")); err != nil {
					errs.Add(1)
					return
				}
				node, err := readResponse(br)
				if err != nil {
					errs.Add(1)
					return
				}
				if t0.After(measureFrom) {
					el := time.Since(t0)
					reqs.Add(1)
					mu.Lock()
					lat = append(lat, el)
					per[node]++
					mu.Unlock()
				}
				time.Sleep(think)
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	r := result{opened: opened.Load(), errors: errs.Load(), requests: reqs.Load(), perNode: per}
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2].Round(100 * time.Microsecond)
		r.p99 = lat[len(lat)*99/100].Round(100 * time.Microsecond)
	}
	return r
}

// readResponse reads one small HTTP/1.1 response and returns its body
// (the node's name).
func readResponse(br *bufio.Reader) (string, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.Contains(status, " 200 ") {
		return "", fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	length := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		l = strings.TrimSpace(l)
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}
