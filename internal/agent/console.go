package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/ui"
	"github.com/clusterd/clusterd/internal/version"
)

// maxConsoleConns bounds the console's connections: a page holds two
// (status polls and the event stream); more wait in the kernel's backlog.
const maxConsoleConns = 64

// consoleSource is what the console shows: the agent's status and events.
type consoleSource struct{ a *Agent }

func (s consoleSource) Status() api.Status { return s.a.Status() }

func (s consoleSource) Follow() ([]api.Event, <-chan api.Event, func()) {
	past, ch := s.a.events.snapshot(true)
	return past, ch, func() { s.a.events.unfollow(ch) }
}

// listenConsole opens ui.listen (TLS with ui.cert_file): done before the
// agent joins, so that a console that cannot listen stops the start.
func (a *Agent) listenConsole() (net.Listener, error) {
	u := a.cfg.UI
	l, err := net.Listen("tcp", u.Listen)
	if err != nil {
		return nil, fmt.Errorf("opening the web console on %s: %w", u.Listen, err)
	}
	if u.CertFile != "" {
		rel := func(p string) string {
			if !filepath.IsAbs(p) && a.cfg.Path != "" {
				return filepath.Join(filepath.Dir(a.cfg.Path), p)
			}
			return p
		}
		cert, err := tls.LoadX509KeyPair(rel(u.CertFile), rel(u.KeyFile))
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("loading the web console's certificate: %w", err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return api.LimitListener(l, maxConsoleConns), nil
}

// serveConsole serves the web console on l until the agent closes.
func (a *Agent) serveConsole(l net.Listener) {
	cfg := a.config()
	h := ui.Handler(consoleSource{a}, ui.Options{
		Actions: cfg.UI.Actions,
		Tokens:  func() map[string]string { return a.config().UI.Tokens },
		Control: a.handler(),
		Done:    a.done,
		Log:     a.log.With(slog.String("component", "ui")),
		Node:    cfg.Node.Name,
		Version: version.Short(),
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	a.uiSrv = srv
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("web console stopped", slog.Any("error", err))
		}
	}()
}
