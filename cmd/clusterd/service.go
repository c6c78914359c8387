package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/kardianos/service"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/packaging/systemd"
)

// program adapts the agent to kardianos/service (systemd, Windows SCM).
// An agent that cannot start or stops on its own ends the process with
// its exit code, so that the service manager sees the failure and
// restarts it (systemd Restart=, the SCM's recovery actions); only a stop
// the manager asked for ends with 0.
type program struct {
	cfgPath string
	cfg     *config.Config // loaded by the caller (runService); read from cfgPath if nil
	log     *slog.Logger
	exit    func(code int) // os.Exit; a test replaces it
	cancel  context.CancelFunc
	done    chan struct{}
	stopped atomic.Bool
	code    int
}

func (p *program) Start(s service.Service) error {
	cfg := p.cfg
	if cfg == nil {
		var err error
		if cfg, err = loadConfig(p.cfgPath); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		p.code = runAgent(ctx, cfg, p.log, p.cfgPath)
		if !p.stopped.Load() {
			code := p.code
			if code == exitOK {
				code = exitFailed // it was not asked to stop
			}
			p.log.Error("the agent stopped on its own: exiting so that the service manager restarts it", slog.Int("exit", code))
			p.exit(code)
		}
	}()
	return nil
}

func (p *program) Stop(s service.Service) error {
	p.stopped.Store(true)
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	if p.code != exitOK {
		return fmt.Errorf("the agent did not stop cleanly (exit %d)", p.code)
	}
	return nil
}

func serviceConfig(cfgPath string) *service.Config {
	exe, err := os.Executable()
	if err != nil {
		exe = systemd.PackagedBinary
	}
	return &service.Config{
		Name:        "clusterd",
		DisplayName: "clusterd cluster agent",
		Description: "Shared virtual IP, failover groups and SNMP for this cluster node.",
		Arguments:   []string{"run", "--config", cfgPath},
		Option: service.KeyValue{
			// systemd: the shipped unit (packaging/systemd), with this
			// binary's and this config's paths. kardianos renders it as a
			// template; it holds no template actions.
			"SystemdScript": systemd.Unit(exe, cfgPath),
			// Windows SCM: restart after a failure (exit code != 0).
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "2s",
			"OnFailureResetPeriod":   120,
		},
	}
}

// serviceLogger is where a service's logs go: on Windows the Event Log
// (kardianos' logger), elsewhere stderr, which journald reads with the
// priority prefixes of journalHandler.
func serviceLogger(s service.Service, format, level string) (*slog.Logger, error) {
	if service.Platform() == "windows-service" {
		if el, err := s.Logger(nil); err == nil {
			return newEventLogLogger(el, level)
		}
	}
	return newLogger(logWriter(), format, level)
}

func cmdService(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "clusterd service: usage: clusterd service install|uninstall|start|stop|status --config FILE")
		return exitUsage
	}
	action := args[0]
	fs := newFlags("service "+action, stderr)
	path := fs.String("config", "", "the config `FILE` the service runs with")
	if fs.Parse(args[1:]) != nil || fs.NArg() > 0 {
		return exitUsage
	}
	if *path == "" && action == "install" {
		fmt.Fprintln(stderr, "clusterd service install: --config FILE is required")
		return exitUsage
	}
	abs, _ := filepath.Abs(*path)
	if action == "install" {
		if _, err := loadConfig(abs); err != nil {
			fmt.Fprintln(stderr, err)
			fmt.Fprintln(stderr, "clusterd service install: not installing a service with a bad config")
			return exitFailed
		}
	}
	s, err := service.New(&program{cfgPath: abs}, serviceConfig(abs))
	if err != nil {
		fmt.Fprintln(stderr, "clusterd service:", err)
		return exitFailed
	}
	switch action {
	case "status":
		st, err := s.Status()
		if err != nil {
			fmt.Fprintln(stderr, "clusterd service status:", err)
			return exitFailed
		}
		names := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}
		n := names[st]
		if n == "" {
			n = "unknown"
		}
		fmt.Fprintln(stdout, n)
		return exitOK
	case "install", "uninstall", "start", "stop":
		if err := service.Control(s, action); err != nil {
			fmt.Fprintf(stderr, "clusterd service %s: %v\n", action, err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "clusterd service: %s done\n", action)
		return exitOK
	}
	fmt.Fprintf(stderr, "clusterd service: unknown action %q (install, uninstall, start, stop, status)\n", action)
	return exitUsage
}
