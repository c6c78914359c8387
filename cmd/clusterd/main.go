// Command clusterd is the clusterd node agent.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/clusterd/clusterd/internal/agent"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/version"
)

const usage = `clusterd — the clusterd node agent

usage:
  clusterd run --config FILE [--log-format text|json] [--log-level debug|info|warn|error]
  clusterd validate --config FILE
  clusterd keygen [--out FILE]
  clusterd service install|uninstall|start|stop|status --config FILE
  clusterd cleanup [--config FILE]
  clusterd version
`

// Exit codes, as SPEC.md.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	verb, rest := args[0], args[1:]
	switch verb {
	case "run":
		return cmdRun(rest, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "keygen":
		return cmdKeygen(rest, stdout, stderr)
	case "service":
		return cmdService(rest, stdout, stderr)
	case "cleanup":
		return cmdCleanup(rest, stdout, stderr)
	case "agentx":
		return cmdAgentX(rest, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "clusterd", version.String())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "clusterd: unknown command %q; run clusterd help\n", verb)
	return exitUsage
}

// newFlags returns a flag set whose errors are usage errors (exit 2).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("clusterd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	path := fs.String("config", "", "config file to check")
	if fs.Parse(args) != nil || *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "clusterd validate: usage: clusterd validate --config FILE")
		return exitUsage
	}
	if _, err := loadConfig(*path); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return exitOK
}

func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keygen", stderr)
	out := fs.String("out", "", "write the key to this file (mode 0600) instead of stdout")
	if fs.Parse(args) != nil || fs.NArg() > 0 {
		return exitUsage
	}
	k, err := config.NewKey()
	if err != nil {
		fmt.Fprintln(stderr, "clusterd keygen:", err)
		return exitFailed
	}
	if *out == "" {
		fmt.Fprint(stdout, k)
		return exitOK
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(stderr, "clusterd keygen:", err)
		return exitFailed
	}
	// O_EXCL: never overwrite a key a running cluster depends on.
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			fmt.Fprintf(stderr, "clusterd keygen: %s already exists; remove it first or choose another --out (to rotate keys, see docs/operations.md)\n", *out)
		} else {
			fmt.Fprintln(stderr, "clusterd keygen:", err)
		}
		return exitFailed
	}
	defer f.Close()
	if _, err := f.WriteString(k); err != nil {
		fmt.Fprintln(stderr, "clusterd keygen:", err)
		return exitFailed
	}
	return exitOK
}

// loadConfig reads and checks a config file: what config validates, and
// what only the agent's parts can tell (the node metadata budget). Every
// command that takes a config (validate, run, reload, service) goes
// through it.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := agent.CheckMetadata(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
