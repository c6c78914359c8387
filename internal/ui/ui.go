// Package ui is the web console: one page, served by the agent on
// ui.listen, that shows what `clusterctl status` and `clusterctl events`
// show and follows the events live (server-sent events). With ui.actions
// on, holders of a token can drain, resume and move from the page; the
// console sends those through the agent's control handler, so they do
// exactly what the CLI does and are recorded as operator events naming
// the token's holder. Every asset is embedded: the page works on a
// network with no way out.
package ui

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/api"
)

//go:embed assets
var assets embed.FS

// Source is what the console shows; the agent implements it.
type Source interface {
	Status() api.Status
	// Follow returns the recent events and a channel of every later one
	// until stop is called.
	Follow() (past []api.Event, next <-chan api.Event, stop func())
}

// Options configure the console's handler.
type Options struct {
	// Actions enables drain, resume and move for token holders.
	Actions bool
	// Tokens returns the operators' names by token (read again on
	// reload, so a token can be revoked without a restart).
	Tokens func() map[string]string
	// Control is the agent's control handler; actions are sent to its
	// /v1 routes with the operator in the request's context.
	Control http.Handler
	// Done closes when the agent stops: event streams end.
	Done <-chan struct{}
	Log  *slog.Logger
	// Node and Version head the page.
	Node, Version string
}

// MaxStreams bounds the live event streams one agent serves at once; a
// stranger opening more gets 503, not a goroutine each.
const MaxStreams = 32

// KeepAlive is how often an idle event stream gets a comment line, so
// proxies and the browser see it alive.
const KeepAlive = 15 * time.Second

type operatorKey struct{}

// Operator is who asked for an action from the console.
type Operator struct {
	Name   string // from the tokens file
	Remote string // the browser's address
}

// OperatorFrom returns the console operator a control request came from.
func OperatorFrom(ctx context.Context) (Operator, bool) {
	o, ok := ctx.Value(operatorKey{}).(Operator)
	return o, ok
}

type server struct {
	src     Source
	o       Options
	streams chan struct{}
}

// Handler serves the console.
func Handler(src Source, o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{src: src, o: o, streams: make(chan struct{}, MaxStreams)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.asset("assets/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /app.js", s.asset("assets/app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /app.css", s.asset("assets/app.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /api/info", s.info)
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, src.Status())
	})
	mux.HandleFunc("GET /api/events", s.events)
	for _, a := range []string{"drain", "resume", "move"} {
		mux.HandleFunc("POST /api/"+a, s.action(a))
	}
	return secure(mux)
}

// secure adds the headers that keep the page from being framed, sniffed
// or made to load anything from elsewhere.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *server) asset(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := assets.ReadFile(name)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Write(b)
	}
}

// Info is /api/info: what the page needs before the first status.
type Info struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	Actions bool   `json:"actions"`
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Info{Node: s.o.Node, Version: s.o.Version, Actions: s.o.Actions})
}

// events streams the event log as server-sent events: the recent ones,
// then each new one as it happens.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		http.Error(w, fmt.Sprintf("too many event streams (%d)", MaxStreams), http.StatusServiceUnavailable)
		return
	}
	past, next, stop := s.src.Follow()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	send := func(e api.Event) error {
		buf.Reset()
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf.WriteString("event: clusterd\ndata: ")
		buf.Write(b)
		buf.WriteString("\n\n")
		_, err = w.Write(buf.Bytes())
		return err
	}
	// The page shows the last 200; older ones are in clusterctl events.
	if len(past) > 200 {
		past = past[len(past)-200:]
	}
	for _, e := range past {
		if send(e) != nil {
			return
		}
	}
	// "ready" tells the page the backlog is done (the test waits on it).
	if _, err := io.WriteString(w, "event: ready\ndata: {}\n\n"); err != nil {
		return
	}
	fl.Flush()
	keep := time.NewTicker(KeepAlive)
	defer keep.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.o.Done:
			return
		case <-keep.C:
			_, err = io.WriteString(w, ": keep-alive\n\n")
		case e, ok := <-next:
			if !ok {
				return
			}
			err = send(e)
		}
		if err != nil {
			return
		}
		fl.Flush()
	}
}

// ActionRequest is the body of POST /api/drain, /api/resume, /api/move.
type ActionRequest struct {
	Node  string `json:"node"`
	Group string `json:"group,omitempty"`
}

// action authenticates the operator, then sends the request to the
// agent's control handler as clusterctl would.
func (s *server) action(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.o.Actions {
			writeErr(w, http.StatusForbidden, "this console is read-only (ui.actions is off)")
			return
		}
		who, ok := s.authenticate(r)
		if !ok {
			s.o.Log.Warn("console action refused: no valid token", slog.String("action", name), slog.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="clusterd"`)
			writeErr(w, http.StatusUnauthorized, "a valid token is needed (Authorization: Bearer TOKEN, from ui.tokens_file)")
			return
		}
		var req ActionRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeErr(w, http.StatusBadRequest, "malformed request: "+err.Error())
			return
		}
		var body any
		switch name {
		case "drain":
			body = api.DrainRequest{Node: req.Node}
		case "resume":
			body = api.NodeRequest{Node: req.Node}
		case "move":
			if req.Group == "" {
				writeErr(w, http.StatusBadRequest, "move needs a group")
				return
			}
			body = api.MoveRequest{Group: req.Group, Node: req.Node}
		}
		b, _ := json.Marshal(body)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		ctx := context.WithValue(r.Context(), operatorKey{}, Operator{Name: who, Remote: host})
		cr, err := http.NewRequestWithContext(ctx, http.MethodPost, "/"+api.Version+"/"+name, bytes.NewReader(b))
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err.Error())
			return
		}
		cr.Header.Set("Content-Type", "application/json")
		s.o.Control.ServeHTTP(w, cr)
	}
}

// authenticate finds the holder of the request's bearer token, comparing
// in constant time against every token.
func (s *server) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" || s.o.Tokens == nil {
		return "", false
	}
	who := ""
	for t, name := range s.o.Tokens() {
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			who = name
		}
	}
	return who, who != ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorResponse{Error: msg})
}
