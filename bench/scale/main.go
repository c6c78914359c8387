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
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const vipAddr = "10.77.1.100"

func main() {
	role := flag.String("role", "driver", "driver; backend and client are the processes it starts")
	name := flag.String("name", "", "backend: the node's name")
	conns := flag.Int("conns", 0, "client: connections of this worker")
	rampFlag := flag.Duration("ramp", 20*time.Second, "time over which the connections open (terminals logging in)")
	hold := flag.Int("hold", 0, "hold this many connections across 4 nodes and count errors")
	curve := flag.String("curve", "", "comma-separated concurrencies for the response-time table")
	workers := flag.Int("workers", 16, "requests in service at once per node")
	service := flag.Duration("service", 4*time.Millisecond, "service time per request")
	think := flag.Duration("think", 10*time.Second, "pause between a terminal's requests")
	dur := flag.Duration("duration", 20*time.Second, "measurement time per point")
	nodesList := flag.String("nodes", "1,2,4", "cluster sizes for -curve")
	flag.Parse()
	switch *role {
	case "backend":
		backend(*name, *workers, *service)
		return
	case "client":
		clientWorker(*conns, *think, *dur, *rampFlag)
		return
	}

	p := &testnet.Program{Quiet: true}
	p.HandleSignals()
	defer p.Done()
	if *hold > 0 {
		n := cluster(p, 4, *workers, *service)
		r := run(p, n, *hold, *think, *dur, *rampFlag)
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
			r := run(sub, n, c, *think, *dur, *rampFlag)
			fmt.Printf("| %d | %d | %.0f | %s | %s | %d |\n", c, k, float64(r.requests)/dur.Seconds(), r.p50, r.p99, r.errors)
		}
		sub.Done()
	}
}

// cluster starts k nodes, each with a backend process of fixed capacity
// in its namespace (separate processes: one process holding both ends of
// 21,000 connections would pass the 20,000 open-file limit here).
func cluster(p *testnet.Program, k, workers int, service time.Duration) *testnet.Net {
	n := testnet.New(p, testnet.Options{Nodes: k, Backup: true, Realtime: true, Extra: func(int) string {
		return fmt.Sprintf("load_balancing:\n  - vip: %s/24\n    interface: eth0\n    rules:\n      - ports: \"80\"\n", vipAddr)
	}})
	// One client address opening 21,000 connections per point, point after
	// point, needs more than the default 28,000 ephemeral ports and the
	// reuse of its own TIME_WAIT ports.
	for _, kv := range []string{"net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"} {
		exec.Command("ip", "netns", "exec", n.Client, "sysctl", "-qw", kv).Run()
	}
	self, _ := os.Executable()
	for _, nd := range n.Nodes {
		cmd := exec.Command("ip", "netns", "exec", nd.NS, self, "-role", "backend", "-name", nd.Name,
			"-workers", strconv.Itoa(workers), "-service", service.String())
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			p.Fatalf("backend: %v", err)
		}
		p.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	n.Start()
	n.WaitConverged(60 * time.Second)
	time.Sleep(time.Second)
	return n
}

// backend serves HTTP on :80 with a fixed capacity: workers requests in
// service at once, each taking service (an app server's thread pool).
func backend(name string, workers int, service time.Duration) {
	pool := make(chan struct{}, workers)
	http.ListenAndServe(":80", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pool <- struct{}{}
		time.Sleep(service)
		<-pool
		fmt.Fprintln(w, name)
	}))
}

type result struct {
	opened, errors, requests int64
	p50, p99                 time.Duration
	perNode                  map[string]int64
}

// workerResult is what a client worker prints.
type workerResult struct {
	Opened, Errors int64
	LatencyUS      []int64
	PerNode        map[string]int64
}

// connsPerWorker keeps each client process well below the open-file limit.
const connsPerWorker = 6000

// run opens c keep-alive connections from client worker processes
// (ramping up over ramp, as terminals log in); each sends a request every
// think for d after the ramp.
func run(p *testnet.Program, n *testnet.Net, c int, think, d, ramp time.Duration) result {
	self, _ := os.Executable()
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for left := c; left > 0; left -= connsPerWorker {
		k := min(left, connsPerWorker)
		cmd := exec.Command("ip", "netns", "exec", n.Client, self, "-role", "client", "-conns", strconv.Itoa(k),
			"-think", think.String(), "-duration", d.String(), "-ramp", ramp.String())
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if err := cmd.Start(); err != nil {
			p.Fatalf("client worker: %v", err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	r := result{perNode: map[string]int64{}}
	var lat []int64
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			p.Fatalf("client worker: %v", err)
		}
		var w workerResult
		if err := json.Unmarshal([]byte(outs[i].String()), &w); err != nil {
			p.Fatalf("client worker output: %v", err)
		}
		r.opened += w.Opened
		r.errors += w.Errors
		lat = append(lat, w.LatencyUS...)
		for k, v := range w.PerNode {
			r.perNode[k] += v
		}
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	r.requests = int64(len(lat))
	if len(lat) > 0 {
		r.p50 = (time.Duration(lat[len(lat)/2]) * time.Microsecond).Round(100 * time.Microsecond)
		r.p99 = (time.Duration(lat[len(lat)*99/100]) * time.Microsecond).Round(100 * time.Microsecond)
	}
	return r
}

// clientWorker runs in the client namespace: c terminals, each a
// keep-alive connection sending one request per think.
func clientWorker(c int, think, d, ramp time.Duration) {
	var opened, errs atomic.Int64
	var mu sync.Mutex
	var lat []int64
	per := map[string]int64{}
	start := time.Now()
	measureFrom := start.Add(ramp + think)
	end := measureFrom.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(int64(ramp) * int64(i) / int64(c)))
			conn, err := net.DialTimeout("tcp4", vipAddr+":80", 10*time.Second)
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			opened.Add(1)
			br := bufio.NewReader(conn)
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
					mu.Lock()
					lat = append(lat, el.Microseconds())
					per[node]++
					mu.Unlock()
				}
				time.Sleep(think)
			}
		}()
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(workerResult{Opened: opened.Load(), Errors: errs.Load(), LatencyUS: lat, PerNode: per})
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
