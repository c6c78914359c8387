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
	"github.com/clusterd/clusterd/internal/cli"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/version"
)

// commands is clusterd's one description of itself: usage, the man page
// and the completion scripts come from it (the flags from each command's
// own flag set, see describe).
var commands = []cli.Command{
	{Name: "run", Summary: "run the agent in the foreground (what the service runs)",
		Examples: `  clusterd run --config /etc/clusterd/clusterd.yaml
  clusterd run --config clusterd.yaml --log-format json --log-level debug`},
	{Name: "validate", Summary: "check a config file; FILE:LINE errors, exit 1 if any",
		Examples: `  clusterd validate --config /etc/clusterd/clusterd.yaml`},
	{Name: "keygen", Summary: "make a new cluster key",
		Examples: `  clusterd keygen --out /etc/clusterd/cluster.key   # then copy it to every node`},
	{Name: "service", Args: "install|uninstall|start|stop|status", Summary: "manage the system service (systemd unit or Windows service)",
		Values:   []string{"install", "uninstall", "start", "stop", "status"},
		Examples: `  clusterd service install --config /etc/clusterd/clusterd.yaml`},
	{Name: "cleanup", Summary: "remove what a dead agent left in the kernel (addresses, nftables tables, settings)",
		Examples: `  clusterd cleanup --config /etc/clusterd/clusterd.yaml   # after kill -9; the unit's ExecStopPost`},
	{Name: "version", Summary: "print the version and commit", Examples: `  clusterd version`},
	{Name: "completion", Args: "SHELL", Summary: "print the completion script for bash, zsh, fish or powershell", Values: cli.Shells,
		Examples: `  clusterd completion bash > /etc/bash_completion.d/clusterd`},
}

// describeProgram is clusterd described, with every command's flags.
func describeProgram() cli.Program {
	cmds := make([]cli.Command, len(commands))
	copy(cmds, commands)
	for i := range cmds {
		cmds[i].Flags = describe(cmds[i].Name)
	}
	return cli.Program{
		Name: "clusterd", Section: "8", Summary: "the clusterd node agent",
		Description: `clusterd is the agent that runs on every node of a clusterd cluster: membership with fast failure detection over a private and a backup network, load-balanced virtual IPs whose flows are hashed across the nodes in the kernel (NLB style), failover groups that move on their own under a quorum's lease (MSCS style), SNMP notifications and polling, Prometheus metrics and a web console.

It is normally run by the system service (systemctl start clusterd); operators use clusterctl(1). Configuration: docs/configuration.md and the example config shipped with the package.`,
		Commands:   cmds,
		ExitStatus: `0 ok; 1 the operation failed (run: the agent could not start or stopped on its own, so the service manager restarts it); 2 usage error or an invalid config (the service manager does not restart it).`,
		Files: `/etc/clusterd/clusterd.yaml
    the config (a conffile: an upgrade keeps your edits).
/etc/clusterd/cluster.key
    the cluster key, mode 0600.
/var/lib/clusterd
    node.state_dir: drain state, quorum data, audit.log.
/run/clusterd/clusterd.sock
    the control socket.`,
		SeeAlso: []string{"clusterctl(1)", "systemctl(1)", "nft(8)"},
	}
}

// describe returns a command's flags, read from the flag set the command
// itself defines (run with -h; every command parses its flags first).
func describe(verb string) []cli.Flag {
	if verb == "version" {
		return nil // no flags, and it would print
	}
	lastFlags = nil
	args := []string{verb, "-h"}
	if verb == "service" {
		args = []string{verb, "install", "-h"}
	}
	realMain(args, io.Discard, io.Discard)
	if lastFlags == nil {
		return nil
	}
	return cli.FlagsOf(lastFlags)
}

// lastFlags is the flag set the running command made (see describe).
var lastFlags *flag.FlagSet

func printUsage(w io.Writer) { describeProgram().Usage(w) }

// manDate is the man page's date: fixed per release, so package builds
// are reproducible.
const manDate = "2026-12-01"

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
		printUsage(stderr)
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
	case "completion":
		fs := newFlags("completion", stderr)
		if fs.Parse(rest) != nil || fs.NArg() != 1 {
			fmt.Fprintln(stderr, "clusterd completion: usage: clusterd completion bash|zsh|fish|powershell")
			return exitUsage
		}
		if err := describeProgram().Completion(stdout, fs.Arg(0)); err != nil {
			fmt.Fprintln(stderr, "clusterd completion:", err)
			return exitUsage
		}
		return exitOK
	case "__man":
		describeProgram().Man(stdout, version.Short(), manDate)
		return exitOK
	case "help", "-h", "--help":
		printUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "clusterd: unknown command %q; run clusterd help\n", verb)
	return exitUsage
}

// newFlags returns a flag set whose errors are usage errors (exit 2).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("clusterd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "flags:\n")
		cli.PrintFlags(stderr, cli.FlagsOf(fs))
	}
	lastFlags = fs
	return fs
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	path := fs.String("config", "", "the config `FILE` to check")
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
	out := fs.String("out", "", "write the key to this `FILE` (mode 0600) instead of stdout")
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
	// Readable by the owner only (Unix: 0600 from the open above; Windows:
	// an access list of SYSTEM and Administrators), before the key is in it.
	if err := config.Restrict(*out); err != nil {
		fmt.Fprintf(stderr, "clusterd keygen: restricting who may read %s: %v\n", *out, err)
		os.Remove(*out)
		return exitFailed
	}
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
