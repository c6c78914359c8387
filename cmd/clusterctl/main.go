// Command clusterctl is the operator CLI of clusterd. It talks to the local
// agent's control endpoint; any node's clusterctl can act on any node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/cli"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/version"
)

// commands is clusterctl's one description of itself: usage, --help,
// the man page and the completion scripts all come from it (the flags
// from each command's own flag set, see describe).
var commands = []cli.Command{
	{Name: "status", Summary: "members, VIPs, buckets, groups, quorum, problems; --check for monitoring (exit 0/1/2/3)",
		Examples: `  clusterctl status                    # the table; PROBLEMS at the end
  clusterctl status --watch            # refresh every second
  clusterctl status --json | jq '.members[] | select(.state != "active")'
  clusterctl status --check            # for NRPE / the Icinga agent`},
	{Name: "events", Summary: "the event log, newest last",
		Examples: `  clusterctl events                    # the last events, newest last
  clusterctl events --follow           # and then new ones as they happen
  clusterctl events --json | jq 'select(.type == "group_failover")'`},
	{Name: "drain", Args: "[NODE]", Summary: "take no new flows; established ones go on", Dynamic: "nodes",
		Examples: `  clusterctl drain                     # this node takes no new flows
  clusterctl drain web3 --wait --timeout 5m
  clusterctl drain --rule 443          # only the rule for port 443`},
	{Name: "resume", Args: "[NODE]", Summary: "undo drain", Dynamic: "nodes", Examples: `  clusterctl resume web3`},
	{Name: "owner", Args: "VIP:PORT CLIENT_IP:CLIENT_PORT", Summary: "which node and bucket serve a flow",
		Examples: `  clusterctl owner 172.16.1.1:80 10.0.5.17:51234    # which node serves this client's flow`},
	{Name: "move", Args: "GROUP [NODE]", Summary: "planned switchover of a failover group", Dynamic: "groups",
		Examples: `  clusterctl move db                   # to the synchronous standby
  clusterctl move db db2 --timeout 60s`},
	{Name: "forget", Args: "NODE", Summary: "drop a failed or left member from the list", Dynamic: "nodes",
		Examples: `  clusterctl forget web4               # a member that is gone for good`},
	{Name: "version", Summary: "versions of clusterctl and the agent",
		Examples: `  clusterctl version                   # this program's and the agent's version
  clusterctl version --json`},
	{Name: "completion", Args: "SHELL", Summary: "print the completion script for bash, zsh, fish or powershell", Values: cli.Shells,
		Examples: `  clusterctl completion bash > /etc/bash_completion.d/clusterctl
  clusterctl completion zsh > "${fpath[1]}/_clusterctl"
  clusterctl completion fish > ~/.config/fish/completions/clusterctl.fish
  clusterctl completion powershell | Out-String | Invoke-Expression`},
}

const usageTail = `
--socket may come before or after the command; otherwise $CLUSTERD_SOCKET,
then %s.
clusterctl COMMAND --help shows a command's flags and examples.
exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 agent unreachable
(status --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
`

// program is clusterctl described, with every command's flags.
func program() cli.Program {
	cmds := make([]cli.Command, len(commands))
	copy(cmds, commands)
	for i := range cmds {
		cmds[i].Flags = describe(cmds[i].Name)
	}
	return cli.Program{
		Name: "clusterctl", Section: "1", Summary: "operate a clusterd cluster",
		Description: `clusterctl talks to the local clusterd agent over its control socket; any node's clusterctl shows the whole cluster and can drain, resume or forget any node and move any failover group.

Run it as root, or as a member of the group named in the agent's control.group.`,
		Global:   []cli.Flag{{Name: "socket", Arg: "PATH", Usage: "the agent's control socket", Files: true}},
		Commands: cmds,
		ExitStatus: `0 ok; 1 the operation failed; 2 usage error; 3 the agent is unreachable or does not answer.

status --check follows the monitoring-plugin conventions: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.`,
		Environment: "CLUSTERD_SOCKET\n    the control socket, when --socket is not given.",
		Files:       config.DefaultSocket() + "\n    the default control socket.",
		SeeAlso:     []string{"clusterd(8)"},
	}
}

// describe returns a command's flags, read from the flag set the command
// itself defines (it is run with -h and no agent).
func describe(verb string) []cli.Flag {
	e := &env{stdout: io.Discard, stderr: io.Discard, client: api.NewClient("")}
	e.dispatch(context.Background(), verb, []string{"-h"})
	if e.fs == nil {
		return nil
	}
	return cli.FlagsOf(e.fs)
}

func printUsage(w io.Writer) {
	program().Usage(w)
	fmt.Fprintf(w, usageTail, config.DefaultSocket())
}

// wantsHelp: the command's arguments ask for its help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

// Exit codes, as SPEC.md.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

type env struct {
	client *api.Client
	stdout io.Writer
	stderr io.Writer
	fs     *flag.FlagSet // the running command's flags (see describe)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// splitSocket takes --socket PATH / --socket=PATH from anywhere in args.
func splitSocket(args []string) (socket string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--socket" || a == "-socket":
			if i+1 >= len(args) {
				return "", nil, errors.New("--socket needs a path")
			}
			socket = args[i+1]
			i++
		case strings.HasPrefix(a, "--socket=") || strings.HasPrefix(a, "-socket="):
			socket = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return socket, rest, nil
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	socket, args, err := splitSocket(args)
	if err != nil {
		fmt.Fprintln(stderr, "clusterctl:", err)
		return exitUsage
	}
	if socket == "" {
		socket = os.Getenv("CLUSTERD_SOCKET")
	}
	if socket == "" {
		socket = config.DefaultSocket()
	}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	e := &env{client: api.NewClient(socket), stdout: stdout, stderr: stderr}
	verb, rest := args[0], args[1:]
	if c, ok := (cli.Program{Commands: commands}).Command(verb); ok && wantsHelp(rest) {
		// The command's own flag set prints its flags; exit 0, as a
		// request for help is not a usage error.
		e.stderr = stdout
		fmt.Fprintf(stdout, "clusterctl %s — %s\n\n", strings.TrimSpace(verb+" "+c.Args), c.Summary)
		e.dispatch(ctx, verb, []string{"-h"})
		fmt.Fprintf(stdout, "\nexamples:\n%s\n", c.Examples)
		return exitOK
	}
	return e.dispatch(ctx, verb, rest)
}

func (e *env) dispatch(ctx context.Context, verb string, rest []string) int {
	stdout := e.stdout
	var code int
	switch verb {
	case "status":
		code = e.status(ctx, rest)
	case "events":
		code = e.events(ctx, rest)
	case "move":
		code = e.move(ctx, rest)
	case "forget":
		code = e.forget(ctx, rest)
	case "drain":
		code = e.drain(ctx, rest)
	case "resume":
		code = e.resume(ctx, rest)
	case "owner":
		code = e.owner(ctx, rest)
	case "version", "--version":
		code = e.version(ctx, rest)
	case "completion":
		code = e.completion(rest)
	case "__complete":
		code = e.complete(ctx, rest)
	case "__man":
		program().Man(stdout, version.Short(), manDate)
		return exitOK
	case "help", "-h", "--help":
		printUsage(stdout)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "clusterctl: unknown command %q; run clusterctl help\n", verb)
		return exitUsage
	}
	return code
}

func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("clusterctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "flags:\n")
		cli.PrintFlags(e.stderr, cli.FlagsOf(fs))
	}
	e.fs = fs
	return fs
}

// serviceHint is how an operator looks at the service on this OS.
func serviceHint() string {
	if runtime.GOOS == "windows" {
		return "sc query clusterd, and the Windows Event Log, source clusterd"
	}
	return "systemctl status clusterd; journalctl -u clusterd"
}

// fail prints one line that says what is wrong and what to do, and picks
// the exit code.
func (e *env) fail(err error) int {
	if errors.Is(err, api.ErrNoAnswer) {
		fmt.Fprintf(e.stderr, "clusterctl: %v; look at its log and state (%s)\n", err, serviceHint())
		return exitUnreachable
	}
	if errors.Is(err, api.ErrPermission) {
		who := "as root, or as a member of the group named in control.group"
		if runtime.GOOS == "windows" {
			who = "as an Administrator (an elevated prompt)"
		}
		fmt.Fprintf(e.stderr, "clusterctl: %v: run clusterctl %s\n", err, who)
		return exitUnreachable
	}
	if errors.Is(err, api.ErrUnreachable) {
		fmt.Fprintf(e.stderr, "clusterctl: %v; is clusterd running on this node? (%s, or pass --socket)\n", err, serviceHint())
		return exitUnreachable
	}
	if errors.Is(err, context.Canceled) {
		return exitOK
	}
	fmt.Fprintln(e.stderr, "clusterctl:", err)
	return exitFailed
}
