package ui

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/api"
)

type fakeSource struct {
	mu      sync.Mutex
	past    []api.Event
	next    chan api.Event
	stopped int
}

func (f *fakeSource) Status() api.Status {
	return api.Status{Cluster: "his", Node: "web1", Members: []api.Member{{Name: "web1", State: "active"}}}
}

func (f *fakeSource) Follow() ([]api.Event, <-chan api.Event, func()) {
	return f.past, f.next, func() { f.mu.Lock(); f.stopped++; f.mu.Unlock() }
}

// control records what the console sent to the agent's control handler.
type control struct {
	mu   sync.Mutex
	path string
	body string
	who  Operator
}

func (c *control) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.path, c.body = r.URL.Path, string(b)
	c.who, _ = OperatorFrom(r.Context())
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, struct{}{})
}

const aliceToken = "0123456789abcdef0123456789abcdef"

func newServer(t *testing.T, actions bool) (*httptest.Server, *fakeSource, *control, chan struct{}) {
	src := &fakeSource{next: make(chan api.Event, 8)}
	ctl := &control{}
	done := make(chan struct{})
	h := Handler(src, Options{Actions: actions, Control: ctl, Done: done, Node: "web1", Version: "1.0",
		Tokens: func() map[string]string { return map[string]string{aliceToken: "alice"} }})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			close(done)
		}
		srv.Close()
	})
	return srv, src, ctl, done
}

func TestPageAssetsAndHeaders(t *testing.T) {
	srv, _, _, _ := newServer(t, false)
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/app.css": "text/css", "/api/status": "application/json", "/api/info": "application/json"} {
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), ctype) || len(b) == 0 {
			t.Errorf("%s: %d %q (%d bytes)", path, r.StatusCode, r.Header.Get("Content-Type"), len(b))
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || r.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers missing: %v", path, r.Header)
		}
	}
	// No external asset: nothing in the page names another origin.
	for _, f := range []string{"assets/index.html", "assets/app.js", "assets/app.css"} {
		b, _ := assets.ReadFile(f)
		if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
			t.Errorf("%s refers to another origin", f)
		}
	}
	r, _ := http.Get(srv.URL + "/nope")
	if r.StatusCode != 404 {
		t.Errorf("unknown path: %d", r.StatusCode)
	}
}

func TestEventStream(t *testing.T) {
	srv, src, _, done := newServer(t, false)
	src.past = []api.Event{{Time: time.Now(), Type: "member_failed", Node: "web3", Detail: "no heartbeat"}}
	r, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", r.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(r.Body)
	read := func() (string, string) {
		var ev, data string
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			l = strings.TrimRight(l, "\n")
			switch {
			case l == "":
				return ev, data
			case strings.HasPrefix(l, "event: "):
				ev = l[7:]
			case strings.HasPrefix(l, "data: "):
				data = l[6:]
			}
		}
	}
	if ev, data := read(); ev != "clusterd" || !strings.Contains(data, `"member_failed"`) {
		t.Fatalf("backlog: %s %s", ev, data)
	}
	if ev, _ := read(); ev != "ready" {
		t.Fatalf("after the backlog: %s", ev)
	}
	src.next <- api.Event{Time: time.Now(), Type: "group_failover", Node: "db2", Group: "db", From: "db1", Detail: "moved"}
	ev, data := read()
	var e api.Event
	if ev != "clusterd" || json.Unmarshal([]byte(data), &e) != nil || e.Group != "db" || e.From != "db1" {
		t.Fatalf("live event: %s %s", ev, data)
	}
	close(done)
	if _, err := io.ReadAll(rd); err != nil {
		t.Fatalf("the stream did not end cleanly when the agent stopped: %v", err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.stopped != 1 {
		t.Errorf("follower stopped %d times", src.stopped)
	}
}

func TestEventStreamsBounded(t *testing.T) {
	srv, _, _, _ := newServer(t, false)
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for i := 0; i < MaxStreams; i++ {
		r, err := http.Get(srv.URL + "/api/events")
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, err, r)
		}
		open = append(open, r)
	}
	r, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream %d: %d, want 503", MaxStreams+1, r.StatusCode)
	}
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func TestActions(t *testing.T) {
	ro, _, _, _ := newServer(t, false)
	if code, body := post(t, ro.URL+"/api/drain", aliceToken, `{"node":"web2"}`); code != 403 || !strings.Contains(body, "read-only") {
		t.Errorf("read-only console: %d %s", code, body)
	}
	srv, _, ctl, _ := newServer(t, true)
	for _, tok := range []string{"", "wrong", aliceToken[:31], aliceToken + "x"} {
		if code, _ := post(t, srv.URL+"/api/drain", tok, `{"node":"web2"}`); code != 401 {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	if ctl.path != "" {
		t.Fatalf("a refused action reached the agent: %s", ctl.path)
	}
	if code, body := post(t, srv.URL+"/api/drain", aliceToken, `{"node":"web2"}`); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	var d api.DrainRequest
	if ctl.path != "/v1/drain" || json.Unmarshal([]byte(ctl.body), &d) != nil || d.Node != "web2" || ctl.who.Name != "alice" || ctl.who.Remote != "127.0.0.1" {
		t.Errorf("sent %s %s as %+v", ctl.path, ctl.body, ctl.who)
	}
	post(t, srv.URL+"/api/move", aliceToken, `{"group":"db","node":"db2"}`)
	var m api.MoveRequest
	if ctl.path != "/v1/move" || json.Unmarshal([]byte(ctl.body), &m) != nil || m.Group != "db" || m.Node != "db2" {
		t.Errorf("move sent %s %s", ctl.path, ctl.body)
	}
	if code, _ := post(t, srv.URL+"/api/move", aliceToken, `{"node":"db2"}`); code != 400 {
		t.Errorf("move without a group: %d", code)
	}
	if code, _ := post(t, srv.URL+"/api/resume", aliceToken, `{"node":`); code != 400 {
		t.Errorf("malformed body: %d", code)
	}
	if code, _ := post(t, srv.URL+"/api/resume", aliceToken, `{"node":"`+strings.Repeat("x", 10000)+`"}`); code != 400 {
		t.Errorf("oversized body: %d", code)
	}
}
