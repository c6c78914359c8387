package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kardianos/service"
)

// program adapts the agent to kardianos/service (systemd, Windows SCM).
type program struct {
	cfgPath string
	cancel  context.CancelFunc
	done    chan struct{}
}

func (p *program) Start(s service.Service) error {
	cfg, err := loadConfig(p.cfgPath)
	if err != nil {
		return err
	}
	log, _ := newLogger(logWriter(), "text", "info")
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		runAgent(ctx, cfg, log, p.cfgPath)
	}()
	return nil
}

func (p *program) Stop(s service.Service) error {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	return nil
}

func serviceConfig(cfgPath string) *service.Config {
	return &service.Config{
		Name:        "clusterd",
		DisplayName: "clusterd cluster agent",
		Description: "Shared virtual IP, failover groups and SNMP for this cluster node.",
		Arguments:   []string{"run", "--config", cfgPath},
		Option: service.KeyValue{
			// systemd: restart on crash, but a bad config (exit 2) is not
			// retried in a loop.
			"Restart":           "on-failure",
			"SuccessExitStatus": "0",
		},
	}
}

func cmdService(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "clusterd service: usage: clusterd service install|uninstall|start|stop|status --config FILE")
		return exitUsage
	}
	action := args[0]
	fs := newFlags("service "+action, stderr)
	path := fs.String("config", "", "config file the service runs with")
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
