//go:build linux

package testnet

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Program is a TB for programs (the demo, scenario benchmarks): Logf
// prints, Fatalf cleans up and exits 1.
type Program struct {
	mu      sync.Mutex
	cleanup []func()
	Quiet   bool
}

// Helper does nothing; it satisfies TB.
func (p *Program) Helper() {}

// Logf prints a line to stderr unless Quiet.
func (p *Program) Logf(format string, args ...any) {
	if !p.Quiet {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// Fatalf prints, runs the cleanups and exits 1.
func (p *Program) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
	p.Done()
	os.Exit(1)
}

// Cleanup registers f to run at Done.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanup = append(p.cleanup, f)
	p.mu.Unlock()
}

// Done runs the cleanups, last first (idempotent).
func (p *Program) Done() {
	p.mu.Lock()
	c := p.cleanup
	p.cleanup = nil
	p.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// HandleSignals makes SIGINT and SIGTERM run the cleanups before exiting,
// so an interrupted program leaves no namespace or process behind.
func (p *Program) HandleSignals() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-c
		fmt.Fprintln(os.Stderr, "interrupted: tearing down")
		p.Done()
		os.Exit(130)
	}()
}
