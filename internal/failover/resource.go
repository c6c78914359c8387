package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/config"
)

// Health is what a resource's monitor found.
type Health int

const (
	NotRunning Health = iota // stopped cleanly
	Standby                  // running, not accepting writes (or running, for a resource without roles)
	Primary                  // running and promoted
	Failed                   // broken: needs a stop before anything else
)

func (h Health) String() string {
	return [...]string{"not_running", "standby", "primary", "failed"}[h]
}

// Params tell a resource which activation it is part of.
type Params struct {
	Epoch       uint64 // the lease epoch (primary) or the epoch being followed (standby)
	Primary     string // the owner's node name
	PrimaryAddr string // the owner's heartbeat address (standbys replicate from it)
	// SyncWith (Promote only): the synchronous standby the quorum's
	// record of this epoch names, or may yet name; a failover would go to
	// it, so the new primary's commits must wait for it.
	SyncWith string
}

// Resource is what a group runs, in the shape of an OCF resource agent.
// A resource with roles (Roles true) runs as a standby on the other owners
// and is promoted on the owner; one without runs on the owner only.
type Resource interface {
	Roles() bool
	Start(ctx context.Context, p Params) error
	Stop(ctx context.Context) error
	// Promote makes this node primary from whatever state it is in: a
	// running standby, a stopped one, or nothing yet (a new cluster).
	Promote(ctx context.Context, p Params) error
	// Demote is a planned step down: it returns once nothing written on
	// this node as primary is missing on the standby.
	Demote(ctx context.Context, p Params) error
	Monitor(ctx context.Context) (Health, error)
}

// Fencer is a resource that can be fenced in place: Fence makes it stop
// acknowledging anything at once while keeping its state, and Promote for
// the same epoch resumes it. A primary whose lease runs out only because
// the quorum is electing a new leader (the leader's node died) then costs
// its clients the rest of the election, not a stop and a restart of its
// server (2.7 s in TestPostgresQuorumLeaderDeath). Stop ends a fenced
// resource the hard way (it must not acknowledge anything on its way down).
type Fencer interface {
	Fence(ctx context.Context) error
	Fenced() bool
}

// ErrPrimaryNotReady is what Start returns (wrapped) when the primary it
// must follow is still on its way (promoting): the runner retries soon
// rather than backing off as from a real failure.
var ErrPrimaryNotReady = errors.New("the primary is not ready yet")

// Replicator is a resource that replicates: it reports how far it is and
// whether the standby may be promoted without losing acknowledged writes.
type Replicator interface {
	// Replication describes a primary (h is what Monitor just found): the
	// mode in force (sync, async, none), the standby's lag and which
	// standby is synchronous. recorded is the quorum's record of the
	// synchronous standby: a primary may stop waiting for a standby only
	// once the record no longer names it.
	Replication(ctx context.Context, h Health, recorded string) (ReplicationInfo, error)
}

// ReplicationInfo is one node's view of replication.
type ReplicationInfo struct {
	Mode     string // sync | async | none
	LagBytes uint64
	SyncWith string // primary: the standby that acknowledges commits, if any
}

// NewResource builds the resource of a group config.
// down (may be nil) reports whether membership says a node is gone.
func NewResource(g config.GroupConfig, node, stateDir string, log *slog.Logger, down func(string) bool) (Resource, error) {
	switch g.Resource.Type {
	case config.ResourceExec:
		return &execResource{cfg: g.Resource, group: g.Name, node: node}, nil
	case config.ResourcePostgreSQL:
		return newPostgres(g, node, stateDir, log, down)
	case config.ResourceService:
		return newService(g.Resource)
	}
	return nil, fmt.Errorf("group %s: unknown resource type %q", g.Name, g.Resource.Type)
}

// execResource runs the operator's commands with OCF exit codes.
type execResource struct {
	cfg         config.ResourceConfig
	group, node string
	notRunning  []int // monitor exit codes that also mean "not running" (systemctl's 3)
}

// OCF exit codes (Open Cluster Framework resource agent API).
const (
	ocfSuccess       = 0
	ocfNotRunning    = 7
	ocfRunningMaster = 8
	ocfFailedMaster  = 9
)

func (r *execResource) Roles() bool { return len(r.cfg.Promote) > 0 }

// pipeWait: how long a command's output is read after it exited (or was
// killed at its deadline); a background child it left holding the output
// open must not hold up the agent.
const pipeWait = 2 * time.Second

func (r *execResource) run(ctx context.Context, what string, argv []string, p Params) (int, error) {
	if len(argv) == 0 {
		return ocfSuccess, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"CLUSTERD_ACTION="+what,
		"CLUSTERD_GROUP="+r.group,
		"CLUSTERD_NODE="+r.node,
		"CLUSTERD_EPOCH="+strconv.FormatUint(p.Epoch, 10),
		"CLUSTERD_PRIMARY="+p.Primary,
		"CLUSTERD_PRIMARY_ADDR="+p.PrimaryAddr,
	)
	// A start script that leaves a daemon behind with its output still
	// open would otherwise hold this call until the daemon exits.
	cmd.WaitDelay = pipeWait
	out, err := cmd.CombinedOutput()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // the command itself exited 0; a child of it kept the output open
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), fmt.Errorf("%s %s: exit %d: %s", what, argv[0], ee.ExitCode(), strings.TrimSpace(string(out)))
	}
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", what, argv[0], err)
	}
	return ocfSuccess, nil
}

func (r *execResource) Start(ctx context.Context, p Params) error {
	_, err := r.run(ctx, "start", r.cfg.Start, p)
	return err
}

func (r *execResource) Stop(ctx context.Context) error {
	_, err := r.run(ctx, "stop", r.cfg.Stop, Params{})
	return err
}

func (r *execResource) Promote(ctx context.Context, p Params) error {
	if !r.Roles() {
		return r.Start(ctx, p)
	}
	if h, _ := r.Monitor(ctx); h == NotRunning {
		if err := r.Start(ctx, p); err != nil {
			return err
		}
	}
	_, err := r.run(ctx, "promote", r.cfg.Promote, p)
	return err
}

func (r *execResource) Demote(ctx context.Context, p Params) error {
	if !r.Roles() {
		return r.Stop(ctx)
	}
	_, err := r.run(ctx, "demote", r.cfg.Demote, p)
	return err
}

func (r *execResource) Monitor(ctx context.Context) (Health, error) {
	code, err := r.run(ctx, "monitor", r.cfg.Monitor, Params{})
	if slices.Contains(r.notRunning, code) {
		return NotRunning, nil
	}
	switch code {
	case ocfSuccess:
		return Standby, nil
	case ocfRunningMaster:
		return Primary, nil
	case ocfNotRunning:
		return NotRunning, nil
	case ocfFailedMaster:
		return Failed, err
	}
	return Failed, err
}
