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
	"strings"
	"syscall"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
)

const usage = `clusterctl — operate a clusterd cluster

usage: clusterctl [--socket PATH] COMMAND [flags]

commands:
  status [--json] [--watch]    members, VIPs, buckets, groups, quorum, problems
  status --check [--lag-warn B] [--lag-crit B]
                               monitoring plugin (Nagios/Icinga): one line, exit 0/1/2/3
  events [--follow] [--json]   the event log, newest last
  drain [NODE] [--rule PORTS] [--wait] [--timeout DUR]
                               take no new flows; established ones go on
  resume [NODE]                undo drain
  owner VIP:PORT CLIENT_IP:CLIENT_PORT [--proto tcp|udp]
                               which node and bucket serve a flow
  move GROUP [NODE] [--timeout DUR]
                               planned switchover of a failover group
  forget NODE                  drop a failed or left member from the list
  version                      versions of clusterctl and the agent

--socket may come before or after the command; otherwise $CLUSTERD_SOCKET,
then ` + "%s" + `.
clusterctl COMMAND --help shows a command's flags and examples.
exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 agent unreachable
(status --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
`

// examples of each command, for COMMAND --help.
var examples = map[string]string{
	"status": `  clusterctl status                    # the table; PROBLEMS at the end
  clusterctl status --watch            # refresh every second
  clusterctl status --json | jq '.members[] | select(.state != "active")'
  clusterctl status --check            # for NRPE / the Icinga agent`,
	"events": `  clusterctl events                    # the last events, newest last
  clusterctl events --follow           # and then new ones as they happen
  clusterctl events --json | jq 'select(.type == "group_failover")'`,
	"drain": `  clusterctl drain                     # this node takes no new flows
  clusterctl drain web3 --wait --timeout 5m
  clusterctl drain --rule 443          # only the rule for port 443`,
	"resume": `  clusterctl resume web3`,
	"owner":  `  clusterctl owner 172.16.1.1:80 10.0.5.17:51234    # which node serves this client's flow`,
	"move": `  clusterctl move db                   # to the synchronous standby
  clusterctl move db db2 --timeout 60s`,
	"forget":  `  clusterctl forget web4               # a member that is gone for good`,
	"version": `  clusterctl version                   # this program's and the agent's version`,
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
		fmt.Fprintf(stderr, usage, config.DefaultSocket())
		return exitUsage
	}
	e := &env{client: api.NewClient(socket), stdout: stdout, stderr: stderr}
	verb, rest := args[0], args[1:]
	if ex, ok := examples[verb]; ok && wantsHelp(rest) {
		// The command's own flag set prints its flags; exit 0, as a
		// request for help is not a usage error.
		e.stderr = stdout
		e.dispatch(ctx, verb, []string{"-h"})
		fmt.Fprintf(stdout, "\nexamples:\n%s\n", ex)
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
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usage, config.DefaultSocket())
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
	return fs
}

// fail prints one line that says what is wrong and what to do, and picks
// the exit code.
func (e *env) fail(err error) int {
	if errors.Is(err, api.ErrNoAnswer) {
		fmt.Fprintf(e.stderr, "clusterctl: %v; look at its log and state (systemctl status clusterd; on Windows: sc query clusterd)\n", err)
		return exitUnreachable
	}
	if errors.Is(err, api.ErrPermission) {
		fmt.Fprintf(e.stderr, "clusterctl: %v: run clusterctl as root, or as a member of the group named in control.group\n", err)
		return exitUnreachable
	}
	if errors.Is(err, api.ErrUnreachable) {
		fmt.Fprintf(e.stderr, "clusterctl: %v; is clusterd running on this node? (systemctl status clusterd, or pass --socket)\n", err)
		return exitUnreachable
	}
	if errors.Is(err, context.Canceled) {
		return exitOK
	}
	fmt.Fprintln(e.stderr, "clusterctl:", err)
	return exitFailed
}
