package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/kardianos/service"

	"github.com/clusterd/clusterd/internal/agent"
	"github.com/clusterd/clusterd/internal/config"
)

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format != "text" && format != "json" {
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	if w == os.Stderr && underJournald() {
		// journald files each line under its priority (journalctl -p err).
		return newJournalLogger(w, format, opts), nil
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	path := fs.String("config", "", "the config `FILE`")
	format := fs.String("log-format", "text", "`FORMAT` of the log: text or json")
	level := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error")
	if fs.Parse(args) != nil || *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "clusterd run: usage: clusterd run --config FILE")
		return exitUsage
	}
	log, err := newLogger(stderr, *format, *level)
	if err != nil {
		fmt.Fprintln(stderr, "clusterd run:", err)
		return exitUsage
	}

	if !service.Interactive() {
		// Started by the service manager (Windows SCM, systemd): let it
		// drive start and stop.
		return runService(*path, *format, *level, log, stderr)
	}
	return runForeground(*path, log, stderr)
}

func runForeground(path string, log *slog.Logger, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		badConfig(stderr, path, err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runAgent(ctx, cfg, log, path)
}

func badConfig(stderr io.Writer, path string, err error) {
	fmt.Fprintln(stderr, err)
	fmt.Fprintln(stderr, "clusterd run: refusing to start on a bad config; fix the lines above (check with: clusterd validate --config", path+")")
}

// runService runs the agent under kardianos/service: the log flags apply
// (on Windows the records go to the Event Log); a bad config is exit 2
// (the unit's RestartPreventExitStatus), an agent that cannot start or
// stops on its own is exit 1, a stop the manager asked for 0.
func runService(path, format, level string, log *slog.Logger, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		badConfig(stderr, path, err)
		return exitUsage
	}
	p := &program{cfgPath: path, cfg: cfg, log: log, exit: os.Exit}
	s, err := service.New(p, serviceConfig(path))
	if err != nil {
		log.Error("cannot run as a service", slog.Any("error", err))
		return exitFailed
	}
	if l, err := serviceLogger(s, format, level); err == nil {
		p.log = l
	}
	if err := s.Run(); err != nil {
		p.log.Error("service run", slog.Any("error", err))
		return exitFailed
	}
	return p.code
}

// runAgent runs until ctx ends (SIGTERM/SIGINT, or the service manager),
// reloading on SIGHUP.
func runAgent(ctx context.Context, cfg *config.Config, log *slog.Logger, path string) int {
	// CLUSTERD_CPUPROFILE=FILE writes a CPU profile until the agent stops
	// (for the developers; see docs/benchmarks.md).
	if f := os.Getenv("CLUSTERD_CPUPROFILE"); f != "" {
		if w, err := os.Create(fmt.Sprintf("%s.%d", f, os.Getpid())); err == nil {
			pprof.StartCPUProfile(w)
			defer func() { pprof.StopCPUProfile(); w.Close() }()
		}
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		log.Error("cannot start", slog.Any("error", err))
		return exitFailed
	}
	if err := a.Start(ctx); err != nil {
		attrs := []any{slog.Any("error", err)}
		if errors.Is(err, os.ErrPermission) {
			attrs = append(attrs, slog.String("hint", "run clusterd as root: VIPs (addresses, nftables, raw ARP socket) need CAP_NET_ADMIN and CAP_NET_RAW, and the control socket's directory must be writable"))
		}
		log.Error("cannot start", attrs...)
		a.Close()
		return exitFailed
	}
	hup := make(chan os.Signal, 1)
	notifyHUP(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping: leaving the cluster")
			if err := a.Close(); err != nil {
				log.Error("stopped, but not cleanly", slog.Any("error", err))
				return exitFailed
			}
			log.Info("stopped")
			return exitOK
		case <-hup:
			next, err := loadConfig(path)
			if err != nil {
				log.Error("reload refused: the config has errors; the running config stays", slog.String("errors", err.Error()))
				continue
			}
			if err := a.Reload(next); err != nil {
				log.Error("reload failed", slog.Any("error", err))
			}
		}
	}
}
