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
  status [--json] [--watch]    members, VIPs, buckets, groups, quorum
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
exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 agent unreachable
`

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
		fmt.Fprintf(stderr, "clusterctl: unknown command %q; run clusterctl help\n", verb)
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
