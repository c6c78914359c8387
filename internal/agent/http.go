package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/failover"
	"github.com/clusterd/clusterd/internal/heartbeat"
)

type ctxKey int

const uidKey ctxKey = 0

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	p := "/" + api.Version
	mux.HandleFunc("GET "+p+"/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("GET "+p+"/events", a.serveEvents)
	mux.HandleFunc("POST "+p+"/forget", func(w http.ResponseWriter, r *http.Request) {
		var req api.ForgetRequest
		if !readJSON(w, r, &req) {
			return
		}
		done := a.operator(r, "forget "+req.Node)
		err := a.members.Forget(req.Node)
		done(err)
		if err != nil {
			code := http.StatusConflict
			if errors.Is(err, heartbeat.ErrUnknownNode) {
				code = http.StatusNotFound
			}
			writeErr(w, code, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	a.nlbRoutes(mux, p)
	mux.HandleFunc("POST "+p+"/move", func(w http.ResponseWriter, r *http.Request) {
		var req api.MoveRequest
		if !readJSON(w, r, &req) {
			return
		}
		done := a.operator(r, strings.TrimSpace("move "+req.Group+" "+req.Node))
		if a.fo == nil {
			err := fmt.Errorf("%w %q: this cluster has no failover groups", failover.ErrUnknownGroup, req.Group)
			done(err)
			writeErr(w, http.StatusNotFound, err)
			return
		}
		target, err := a.fo.Move(r.Context(), req.Group, req.Node)
		done(err)
		if err != nil {
			code := http.StatusConflict
			if errors.Is(err, failover.ErrUnknownGroup) {
				code = http.StatusNotFound
			}
			writeErr(w, code, err)
			return
		}
		writeJSON(w, http.StatusOK, api.MoveResponse{Target: target})
	})
	return mux
}

func (a *Agent) serveEvents(w http.ResponseWriter, r *http.Request) {
	follow := r.URL.Query().Get("follow") != ""
	past, ch := a.events.snapshot(follow)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, e := range past {
		enc.Encode(e)
	}
	if ch == nil {
		return
	}
	defer a.events.unfollow(ch)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	keep := time.NewTicker(api.EventKeepAlive)
	defer keep.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-a.done:
			return
		case <-keep.C:
			_, err = w.Write([]byte("\n"))
		case e := <-ch:
			err = enc.Encode(e)
		}
		if err != nil {
			return // the client went away
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// Bounds on what a client can make a listener hold: connections at once
// (more wait in the kernel's backlog, costing the agent nothing) and how
// long an idle or slow one may stay.
const (
	maxControlConns = 128 // operators, scripts and `events --follow` streams
	maxMetricsConns = 32  // a few Prometheus servers
	headerTimeout   = 5 * time.Second
	// Idle kept-alive connections hold a slot: short on the control socket
	// (clients there are one-shot), a scrape interval's worth on metrics.
	controlIdle = 5 * time.Second
	idleTimeout = 30 * time.Second
)

func (a *Agent) serveAPI(l net.Listener) {
	l = api.LimitListener(l, maxControlConns)
	a.srv = &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       controlIdle,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, uidKey, api.PeerUID(c))
		},
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("control endpoint stopped", slog.Any("error", err))
		}
	}()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorResponse{Error: err.Error()})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("malformed request: %w", err))
		return false
	}
	return true
}
