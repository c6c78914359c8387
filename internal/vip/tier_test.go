package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/testenv"
	"github.com/clusterd/clusterd/internal/vocab"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// lockedMembers is a one-node membership safe for the tier's goroutines.
type lockedMembers struct {
	mu      sync.Mutex
	v       viewMembers
	healthy bool
	state   heartbeat.State
	set     bool // state was set
}

func (l *lockedMembers) SetExt(k, val string) { l.mu.Lock(); l.v.SetExt(k, val); l.mu.Unlock() }
func (l *lockedMembers) Members() []heartbeat.Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := l.v.Members()
	for i := range ms {
		if ms[i].Self && l.set {
			ms[i].State = l.state
		}
	}
	return ms
}
func (l *lockedMembers) SetState(s heartbeat.State) {
	l.mu.Lock()
	l.state, l.set = s, true
	l.mu.Unlock()
}
func (l *lockedMembers) SetHealthy(h bool) { l.mu.Lock(); l.healthy = h; l.mu.Unlock() }
func (l *lockedMembers) State() heartbeat.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.set {
		return heartbeat.StateActive
	}
	return l.state
}
func (l *lockedMembers) ext(k string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v.self().Ext[k]
}

// safeDP is fakeDP behind a lock, counting calls.
type safeDP struct {
	mu       sync.Mutex
	fake     fakeDP
	setup    []VIPPlan
	refresh  int
	stopped  bool
	closed   bool
	failWith error // Setup's error
}

func (d *safeDP) Setup(v []VIPPlan, _ time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setup = v
	return d.failWith
}
func (d *safeDP) Apply(o Ownership) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = false
	return d.fake.Apply(o)
}
func (d *safeDP) Stage(os ...Ownership) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fake.Stage(os...)
}
func (d *safeDP) Commit() error { d.mu.Lock(); defer d.mu.Unlock(); return d.fake.Commit() }
func (d *safeDP) StageAt(at time.Time, o Ownership) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fake.StageAt(at, o)
}
func (d *safeDP) Refresh() error { d.mu.Lock(); d.refresh++; d.mu.Unlock(); return nil }
func (d *safeDP) StopNew() error { d.mu.Lock(); d.stopped = true; d.mu.Unlock(); return nil }
func (d *safeDP) Counters() (map[int]Counters, error) {
	return map[int]Counters{0: {Accepted: 7, Dropped: 3}}, nil
}
func (d *safeDP) Connections() (int, error) { return 0, nil }
func (d *safeDP) Close() error              { d.mu.Lock(); d.closed = true; d.mu.Unlock(); return nil }
func (d *safeDP) owned(key [2]int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.fake.applied.Owned[key])
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) event(typ vocab.EventType, node, detail string) {
	r.mu.Lock()
	r.events = append(r.events, string(typ)+" "+node+" "+detail)
	r.mu.Unlock()
}

func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func oneNodeTier(t *testing.T, vips []config.VIPConfig, dp *safeDP, rec *recorder) (*Tier, *lockedMembers) {
	t.Helper()
	mem := &lockedMembers{v: viewMembers{name: "web1", list: []heartbeat.Member{
		{Name: "web1", Self: true, Priority: 1, State: heartbeat.StateActive, Proto: heartbeat.ProtocolVersion, Ext: map[string]string{}},
	}}}
	tr, err := New(Options{Cluster: "c", Node: "web1", Priority: 1, VIPs: vips, Members: mem, StateDir: testenv.TempDir(t),
		Settle: 50 * time.Millisecond, LiveTTL: 100 * time.Millisecond, Tick: 10 * time.Millisecond,
		ViewTimeout: 100 * time.Millisecond, Logger: quietLog(), Event: rec.event})
	if err != nil {
		t.Fatal(err)
	}
	tr.newDP = func(_ *slog.Logger, _ string) (datapath, error) { return dp, nil }
	tr.linkUp = func(string) (bool, string) { return true, "" }
	return tr, mem
}

func webVIP(addr string, h *config.HealthCheck) config.VIPConfig {
	w := 50
	return config.VIPConfig{VIP: addr, Interface: "eth0", Mode: "multicast", Health: h,
		Rules: []config.RuleConfig{{Ports: "80", Protocol: "tcp", Filtering: "multiple", Affinity: "none", Weight: &w}}}
}

// TestTierLifecycle: Start sets the datapath up and arms liveness; a lone
// node takes every bucket; Status, Owner and Generation read what
// converged; Reload takes new weights and refuses what needs a restart;
// Shutdown stops new flows and closes the datapath.
func TestTierLifecycle(t *testing.T) {
	dp, rec := &safeDP{}, &recorder{}
	tr, mem := oneNodeTier(t, []config.VIPConfig{webVIP("10.0.0.100/24", nil)}, dp, rec)
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "all buckets owned", func() bool { return dp.owned([2]int{0, 0}) == TableSize })
	if len(dp.setup) != 1 || dp.setup[0].Addr.String() != "10.0.0.100/24" {
		t.Errorf("Setup got %+v", dp.setup)
	}
	waitFor(t, time.Second, "liveness refreshed", func() bool { dp.mu.Lock(); defer dp.mu.Unlock(); return dp.refresh > 1 })
	vips, buckets := tr.Status()
	if len(vips) != 1 || buckets["web1"] != TableSize || vips[0].PacketsAccepted != 7 || vips[0].Rules[0].Owners["web1"] != TableSize {
		t.Errorf("status %+v, buckets %v", vips, buckets)
	}
	if tr.Generation() == 0 {
		t.Error("generation 0 after converging")
	}
	if !tr.Converged(mem.Members()) {
		t.Error("a lone node is not converged")
	}
	if !rec.has(string(vocab.Converged)) {
		t.Errorf("no converged event: %v", rec.events)
	}
	vip := netip.MustParseAddrPort("10.0.0.100:80")
	if o, err := tr.Owner(vip, netip.MustParseAddrPort("10.0.0.5:40000"), "tcp"); err != nil || o.Node != "web1" || o.Bucket < 0 {
		t.Errorf("owner %+v, %v", o, err)
	}
	if o, err := tr.Owner(netip.MustParseAddrPort("10.0.0.100:443"), netip.MustParseAddrPort("10.0.0.5:1"), "tcp"); err != nil || o.Rule != "none" || o.Bucket != -1 {
		t.Errorf("unmatched port: %+v, %v", o, err)
	}
	if _, err := tr.Owner(netip.MustParseAddrPort("10.0.0.9:80"), netip.MustParseAddrPort("10.0.0.5:1"), "tcp"); err == nil {
		t.Error("Owner of a foreign VIP succeeded")
	}

	// Reload: a new weight is published; a new address needs a restart.
	nv := webVIP("10.0.0.100/24", nil)
	w := 80
	nv.Rules[0].Weight = &w
	before := mem.ext(extRules)
	if err := tr.Reload([]config.VIPConfig{nv}); err != nil {
		t.Fatal(err)
	}
	if mem.ext(extRules) == before {
		t.Errorf("reload did not publish the new weight: %q", before)
	}
	for _, bad := range []config.VIPConfig{webVIP("10.0.0.101/24", nil), func() config.VIPConfig {
		v := webVIP("10.0.0.100/24", nil)
		v.Rules[0].Ports = "8080"
		return v
	}()} {
		if err := tr.Reload([]config.VIPConfig{bad}); !errors.Is(err, ErrRestartNeeded) {
			t.Errorf("reload of %+v: %v, want ErrRestartNeeded", bad, err)
		}
	}
	if err := tr.Reload(nil); !errors.Is(err, ErrRestartNeeded) {
		t.Errorf("reload without the VIP: %v", err)
	}

	start := time.Now()
	tr.Shutdown(time.Second)
	if !dp.stopped || !dp.closed {
		t.Errorf("after Shutdown: stopped %v closed %v", dp.stopped, dp.closed)
	}
	if mem.State() != heartbeat.StateDraining {
		t.Errorf("state %s while shutting down, want draining", mem.State())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %s with no connection left", d)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestTierStartFails: a datapath that cannot be set up fails Start with
// the reason and is closed again; a tier without VIPs starts nothing.
func TestTierStartFails(t *testing.T) {
	dp := &safeDP{failWith: errors.New("no such interface")}
	tr, _ := oneNodeTier(t, []config.VIPConfig{webVIP("10.0.0.100/24", nil)}, dp, &recorder{})
	err := tr.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no such interface") || !dp.closed {
		t.Errorf("Start: %v (closed %v)", err, dp.closed)
	}
	tr.newDP = func(*slog.Logger, string) (datapath, error) { return nil, errors.New("no netlink") }
	if err := tr.Start(context.Background()); err == nil {
		t.Error("Start without a datapath succeeded")
	}
	empty, _ := oneNodeTier(t, nil, &safeDP{}, &recorder{})
	if err := empty.Start(context.Background()); err != nil {
		t.Errorf("a tier without VIPs: %v", err)
	}
	empty.Shutdown(time.Second)
	if err := empty.Close(); err != nil {
		t.Error(err)
	}
}

// TestHealthChecksRunApart: a check that hangs until its timeout delays
// neither the other VIP's check nor its verdict: the fast check turns the
// node unhealthy for its VIP after fall failures and healthy again after
// rise successes, with events, while the slow one is still waiting.
func TestHealthChecksRunApart(t *testing.T) {
	var fail atomic.Bool
	var probes atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probes.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer fast.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)

	dur := func(d time.Duration) config.Duration { return config.Duration(d) }
	vips := []config.VIPConfig{
		webVIP("10.0.0.100/24", &config.HealthCheck{HTTP: slow.URL, Interval: dur(100 * time.Millisecond), Timeout: dur(5 * time.Second), Fall: 2, Rise: 2}),
		webVIP("10.0.0.101/24", &config.HealthCheck{HTTP: fast.URL, Interval: dur(20 * time.Millisecond), Timeout: dur(time.Second), Fall: 2, Rise: 2}),
	}
	dp, rec := &safeDP{}, &recorder{}
	tr, mem := oneNodeTier(t, vips, dp, rec)
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	waitFor(t, time.Second, "10 probes of the fast check while the slow one hangs", func() bool { return probes.Load() >= 10 })
	fail.Store(true)
	waitFor(t, time.Second, "unhealthy for the second VIP", func() bool { return mem.ext(extHealth) == "10" })
	if !rec.has(string(vocab.NodeUnhealthy) + " web1 health check of 10.0.0.101/24 failed 2 times in a row") {
		t.Errorf("events: %v", rec.events)
	}
	mem.mu.Lock()
	healthy := mem.healthy
	mem.mu.Unlock()
	if healthy {
		t.Error("SetHealthy(true) with a failing check")
	}
	fail.Store(false)
	waitFor(t, time.Second, "healthy again", func() bool { return mem.ext(extHealth) == "11" })
	if !rec.has(string(vocab.NodeHealthy) + " web1 health check of 10.0.0.101/24 passes 2 times in a row") {
		t.Errorf("events: %v", rec.events)
	}
}

// TestCheckerKinds: the TCP, exec and HTTP checks, and what each calls a
// failure.
func TestCheckerKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/down":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	to := config.Duration(time.Second)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	cases := []struct {
		name string
		hc   config.HealthCheck
		ok   bool
	}{
		{"http 200", config.HealthCheck{HTTP: srv.URL + "/"}, true},
		{"http redirect is not followed, and passes", config.HealthCheck{HTTP: srv.URL + "/redirect"}, true},
		{"http 500", config.HealthCheck{HTTP: srv.URL + "/down"}, false},
		{"http refused", config.HealthCheck{HTTP: "http://127.0.0.1:1/"}, false},
		{"http bad url", config.HealthCheck{HTTP: "http://[::1"}, false},
		{"tcp open", config.HealthCheck{TCP: hostPort}, true},
		{"tcp refused", config.HealthCheck{TCP: "127.0.0.1:1"}, false},
		{"nothing configured", config.HealthCheck{}, true},
	}
	if _, err := exec.LookPath("true"); err == nil {
		cases = append(cases,
			struct {
				name string
				hc   config.HealthCheck
				ok   bool
			}{"exec true", config.HealthCheck{Exec: []string{"true"}}, true},
			struct {
				name string
				hc   config.HealthCheck
				ok   bool
			}{"exec false", config.HealthCheck{Exec: []string{"sh", "-c", "echo " + strings.Repeat("x", 300) + "; exit 3"}}, false})
	}
	for _, c := range cases {
		c.hc.Timeout = to
		err := newChecker(c.hc).probe(context.Background())
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && len(err.Error()) > 400 {
			t.Errorf("%s: error not truncated: %d bytes", c.name, len(err.Error()))
		}
	}
}

// TestObserveFallAndRise: fall failures in a row turn a check unhealthy,
// rise successes healthy again; a lone contrary result resets nothing.
func TestObserveFallAndRise(t *testing.T) {
	c := newChecker(config.HealthCheck{Fall: 3, Rise: 2})
	bad := fmt.Errorf("down")
	steps := []struct {
		err     error
		changed bool
		healthy bool
	}{
		{bad, false, true}, {nil, false, true}, {bad, false, true}, {bad, false, true}, {bad, true, false},
		{nil, false, false}, {bad, false, false}, {nil, false, false}, {nil, true, true},
	}
	for i, s := range steps {
		if ch := c.observe(s.err); ch != s.changed || c.healthy != s.healthy {
			t.Fatalf("step %d: changed %v healthy %v, want %v %v", i, ch, c.healthy, s.changed, s.healthy)
		}
	}
}

// blockingDP is a datapath whose Apply hangs until released (a netlink
// call stuck behind a busy kernel).
type blockingDP struct {
	safeDP
	entered chan struct{}
	release chan struct{}
}

func (d *blockingDP) Apply(o Ownership) error {
	select {
	case d.entered <- struct{}{}:
	default:
	}
	<-d.release
	return d.safeDP.Apply(o)
}

// TestStatusDoesNotWaitForTheDatapath: while a convergence step waits in
// the datapath (holding the tier's lock), every status reader answers at
// once from the last published view.
func TestStatusDoesNotWaitForTheDatapath(t *testing.T) {
	dp := &blockingDP{entered: make(chan struct{}, 1), release: make(chan struct{})}
	rec := &recorder{}
	mem := &lockedMembers{v: viewMembers{name: "web1", list: []heartbeat.Member{
		{Name: "web1", Self: true, Priority: 1, State: heartbeat.StateActive, Proto: heartbeat.ProtocolVersion, Ext: map[string]string{}},
	}}}
	tr, err := New(Options{Cluster: "c", Node: "web1", Priority: 1, VIPs: []config.VIPConfig{webVIP("10.0.0.100/24", nil)}, Members: mem,
		StateDir: testenv.TempDir(t), Settle: 50 * time.Millisecond, LiveTTL: 100 * time.Millisecond, Tick: 10 * time.Millisecond,
		ViewTimeout: 100 * time.Millisecond, Logger: quietLog(), Event: rec.event})
	if err != nil {
		t.Fatal(err)
	}
	tr.newDP = func(*slog.Logger, string) (datapath, error) { return dp, nil }
	tr.linkUp = func(string) (bool, string) { return true, "" }
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dp.entered:
	case <-time.After(2 * time.Second):
		t.Fatal("convergence never reached the datapath")
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		tr.Status()
		tr.Owner(netip.MustParseAddrPort("10.0.0.100:80"), netip.MustParseAddrPort("10.0.0.5:1"), "tcp")
		tr.Generation()
		tr.Converged(mem.Members())
		tr.Problems()
	}()
	select {
	case <-answered:
	case <-time.After(time.Second):
		t.Error("a status reader waited for the datapath")
	}
	close(dp.release)
	waitFor(t, 2*time.Second, "converged after the datapath answered", func() bool { return tr.Generation() > 0 })
	if vips, _ := tr.Status(); vips[0].Rules[0].Owners["web1"] != TableSize {
		t.Errorf("status after converging: %+v", vips[0].Rules[0])
	}
	tr.Close()
}
