// Package agent wires clusterd's parts together: it is the only package
// that knows them all. Each part has New / Start / Close; the agent starts
// them in order and closes them in reverse.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/failover"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/snmp"
	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/clusterd/clusterd/internal/version"
	"github.com/clusterd/clusterd/internal/vip"
	"github.com/clusterd/clusterd/internal/vocab"
)

// Agent is one clusterd node.
type Agent struct {
	log *slog.Logger

	mu  sync.Mutex
	cfg *config.Config // replaced by Reload: read it through config()

	members    *heartbeat.Membership
	tier       *vip.Tier         // nil without load_balancing
	fo         *failover.Manager // nil without quorum and groups
	traps      *snmp.Trapper
	stopAgentX context.CancelFunc
	snmpAgt    *snmp.Agent
	start      time.Time
	events     *eventLog
	audit      *auditLog
	srv        *http.Server
	metricsSrv *http.Server
	uiSrv      *http.Server

	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
}

// New builds an agent from a validated config (config.Load, then
// CheckMetadata).
func New(cfg *config.Config, log *slog.Logger) (*Agent, error) {
	a := &Agent{log: log, cfg: cfg, events: newEventLog(1000), audit: newAuditLog(cfg.Node.StateDir), done: make(chan struct{}), start: time.Now()}
	prof, err := heartbeat.LookupProfile(cfg.Heartbeat.Profile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Node.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating node.state_dir: %w", err)
	}
	boot, err := statefile.NextIncarnation(cfg.Node.StateDir)
	if err != nil {
		// Still a valid incarnation (the current time); only a clock that
		// stepped back since the last run could make peers take it for
		// old. A full disk must not keep the node down for that.
		log.Warn("this run's incarnation is not recorded in node.state_dir; it is the current time", slog.Any("error", err))
	}
	a.members, err = heartbeat.New(heartbeat.Options{
		Cluster:        cfg.Cluster.Name,
		Name:           cfg.Node.Name,
		Priority:       cfg.Node.Priority,
		Version:        version.Short(),
		Boot:           boot,
		Keys:           cfg.Keys,
		Bind:           cfg.Heartbeat.Bind,
		Port:           cfg.Heartbeat.Port,
		ProbePort:      cfg.Heartbeat.ProbePort,
		BackupBind:     cfg.Heartbeat.BackupBind,
		Join:           cfg.Heartbeat.Join,
		Profile:        prof,
		ReapAfter:      cfg.Heartbeat.ReapAfter.D(),
		Config:         cfg.SharedHashes(),
		OptionalConfig: config.OptionalShared,
		Healthy:        true,
		Realtime:       cfg.Heartbeat.Realtime != nil && *cfg.Heartbeat.Realtime,
		Logger:         log.With(slog.String("component", "heartbeat")),
		OnEvent: func(e heartbeat.Event) {
			if a.tier != nil && (e.Type == vocab.NodeFailed || e.Type == vocab.NodeUnreachable || e.Type == vocab.NodeJoined) {
				// The tables follow at once, not at the next tick: a
				// member back (a mended split) takes the buckets this
				// node served for it, which it must drop now.
				a.tier.Wake()
			}
			a.record(api.Event{Time: e.Time, Type: e.Type, Node: e.Node, Detail: e.Detail})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("setting up membership: %w", err)
	}
	if len(cfg.LoadBalancing) > 0 {
		vipLog := log.With(slog.String("component", "vip"))
		a.tier, err = vip.New(vip.Options{
			Cluster: cfg.Cluster.Name, Node: cfg.Node.Name, Priority: cfg.Node.Priority,
			VIPs: cfg.LoadBalancing, StateDir: cfg.Node.StateDir, Members: a.members,
			// A peer learns of a change within one heartbeat interval.
			Settle: 2*prof.Interval + prof.Check,
			// Expires 2 intervals before the earliest moment a survivor
			// can declare this node failed (Timeout - Interval).
			LiveTTL:     prof.Timeout - 3*prof.Interval,
			Tick:        prof.Check,
			ViewTimeout: prof.Timeout,
			BackupBind:  cfg.Heartbeat.BackupBind,
			Logger:      vipLog,
			Event: func(typ vocab.EventType, node, detail string) {
				// Logged too: the journal then shows, to the millisecond,
				// when each node changed what it serves (the events
				// ring forgets, and dies with the agent).
				vipLog.Info(string(typ), slog.String("node", node), slog.String("detail", detail))
				a.record(api.Event{Time: time.Now(), Type: typ, Node: node, Detail: detail})
			},
		})
		if err != nil {
			return nil, fmt.Errorf("setting up the VIPs: %w", err)
		}
	}
	if cfg.Quorum != nil || len(cfg.Failover.Groups) > 0 {
		a.fo, err = failover.New(failover.Options{
			Node: cfg.Node.Name, Bind: cfg.Heartbeat.Bind, StateDir: cfg.Node.StateDir, Keys: cfg.Keys,
			Quorum: cfg.Quorum, Groups: cfg.Failover.Groups, Timing: failover.TimingFor(cfg.Heartbeat.Profile),
			Members: a.members, Logger: log.With(slog.String("component", "failover")),
			Event: a.record,
		})
		if err != nil {
			return nil, fmt.Errorf("setting up failover: %w", err)
		}
	}
	if len(cfg.SNMP.Traps) > 0 {
		a.traps, err = snmp.NewTrapper(cfg.Node.Name, cfg.SNMP.Traps, a.start, a.generation, log.With(slog.String("component", "snmp")))
		if err != nil {
			return nil, err
		}
	}
	a.members.Handle(vocab.MsgDrain, a.onDrainMsg)
	a.members.Handle(vocab.MsgResume, a.onResumeMsg)
	return a, nil
}

// Start brings the node up: state directory, control socket, membership.
// The socket opens first so that a second agent on the same host is
// refused before it touches the network.
func (a *Agent) Start(ctx context.Context) error {
	// ctx bounds start-up only: the parts run until Close, which stops them
	// in order. Tying them to main's context would stop the heartbeat the
	// moment SIGTERM arrives and peers would see a failure, not a leave.
	ctx = context.WithoutCancel(ctx)
	l, err := api.Listen(a.cfg.Control.Socket, a.cfg.Control.Group)
	if err != nil {
		return fmt.Errorf("opening the control endpoint: %w", err)
	}
	var ul net.Listener
	if a.cfg.UI.Listen != "" {
		if ul, err = a.listenConsole(); err != nil {
			l.Close()
			return err
		}
		defer func() {
			if ul != nil { // start failed before the console served
				ul.Close()
			}
		}()
	}
	// The listeners an operator configured open before anything starts:
	// one that cannot (a port in use, an address not on this host) fails
	// the start with the reason, rather than run without it unnoticed.
	var ml net.Listener
	if a.cfg.Metrics.Listen != "" {
		if ml, err = net.Listen("tcp", a.cfg.Metrics.Listen); err != nil {
			l.Close()
			return fmt.Errorf("metrics.listen %s: %w", a.cfg.Metrics.Listen, err)
		}
		defer func() {
			if ml != nil { // start failed before it served
				ml.Close()
			}
		}()
	}
	var snmpAgt *snmp.Agent
	if ag := a.cfg.SNMP.Agent; ag != nil && ag.Listen != "" {
		if snmpAgt, err = snmp.NewAgent(ag.Listen, ag.Community, a.Status, a.start, a.log.With(slog.String("component", "snmp"))); err != nil {
			l.Close()
			return fmt.Errorf("snmp.agent.listen %s: %w", ag.Listen, err)
		}
		defer func() {
			if snmpAgt != nil { // start failed before it served
				snmpAgt.Close()
			}
		}()
	}
	if err := a.members.Start(ctx); err != nil {
		l.Close()
		return err
	}
	if a.tier != nil {
		if err := a.tier.Start(ctx); err != nil {
			a.members.Close()
			l.Close()
			return err
		}
	}
	if a.fo != nil {
		if err := a.fo.Start(ctx); err != nil {
			if a.tier != nil {
				a.tier.Shutdown(0)
			}
			a.members.Close()
			l.Close()
			return fmt.Errorf("starting failover: %w", err)
		}
	}
	if a.traps != nil {
		a.traps.Start()
	}
	if ag := a.cfg.SNMP.Agent; ag != nil && ag.AgentX != "" {
		actx, cancel := context.WithCancel(ctx)
		a.stopAgentX = cancel
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.superviseAgentX(actx, ag.AgentX) }()
	}
	if snmpAgt != nil {
		a.snmpAgt, snmpAgt = snmpAgt, nil
		a.snmpAgt.Start()
	}
	if ml != nil {
		a.serveMetrics(ml)
		ml = nil
	}
	a.serveAPI(l)
	if ul != nil {
		a.serveConsole(ul)
		ul = nil
	}
	a.log.Info("clusterd started", slog.String("cluster", a.cfg.Cluster.Name), slog.String("node", a.cfg.Node.Name),
		slog.Int("priority", a.cfg.Node.Priority), slog.String("socket", a.cfg.Control.Socket))
	return nil
}

// Close leaves the cluster and stops every part. It is idempotent.
func (a *Agent) Close() error {
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	a.closeOnce.Do(func() {
		close(a.done)
		if a.tier != nil {
			a.tier.Shutdown(a.config().Node.ShutdownDrain.D())
		}
		if a.fo != nil {
			// Before membership: a primary's last report (it let go) must
			// reach the leader so the group moves at once.
			note("stopping failover", a.fo.Close())
			// The groups released their VIPs: no fence rule stays behind.
			note("removing the group fence", vip.CloseFence())
		}
		note("leaving the cluster", a.members.Close())
		if a.snmpAgt != nil {
			a.snmpAgt.Close()
		}
		if a.stopAgentX != nil {
			a.stopAgentX()
		}
		if a.traps != nil {
			a.traps.Close()
		}
		if a.metricsSrv != nil {
			note("closing the metrics endpoint", a.metricsSrv.Close())
		}
		if a.uiSrv != nil {
			note("closing the web console", a.uiSrv.Close())
		}
		if a.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			note("closing the control endpoint", a.srv.Shutdown(ctx))
			cancel()
		}
		a.wg.Wait()
	})
	return errors.Join(errs...)
}

// Reload applies what can change without a restart: the cluster keys (key
// rotation) and the shared-config hashes other nodes compare against.
// Anything else that differs is logged as needing a restart.
func (a *Agent) Reload(next *config.Config) error {
	a.mu.Lock()
	cur := a.cfg
	a.mu.Unlock()
	if next.Node.Name != cur.Node.Name || next.Node.Priority != cur.Node.Priority ||
		next.Heartbeat.Bind != cur.Heartbeat.Bind || next.Heartbeat.BackupBind != cur.Heartbeat.BackupBind ||
		next.Heartbeat.Port != cur.Heartbeat.Port || next.Heartbeat.Profile != cur.Heartbeat.Profile ||
		next.Control.Socket != cur.Control.Socket {
		a.log.Warn("node, heartbeat and control settings change only on restart; keeping the running ones")
	}
	if !reflect.DeepEqual(next.Failover, cur.Failover) || !reflect.DeepEqual(next.Quorum, cur.Quorum) {
		a.log.Warn("quorum and failover groups change only on restart; keeping the running ones")
	}
	if err := a.members.SetKeys(next.Keys); err != nil {
		return fmt.Errorf("installing cluster keys: %w", err)
	}
	if a.fo != nil {
		if err := a.fo.SetKeys(next.Keys); err != nil {
			return fmt.Errorf("installing cluster keys in the quorum: %w", err)
		}
	}
	a.members.SetConfig(next.SharedHashes())
	lb := next.LoadBalancing
	if a.tier != nil {
		if err := a.tier.Reload(next.LoadBalancing); err != nil {
			a.log.Warn("load_balancing not reloaded; keeping the running VIPs", slog.Any("reason", err))
			lb = cur.LoadBalancing
		} else {
			a.log.Info("load weights and handling priorities reloaded")
		}
	}
	a.mu.Lock()
	kept := *cur
	kept.Keys = next.Keys
	// Groups and quorum change only on restart (a running voter set or a
	// resource cannot be swapped under a live lease).
	kept.LoadBalancing, kept.SNMP = lb, next.SNMP
	// The console's tokens are re-read (a token is revoked by removing
	// its line); where and how it listens changes only on restart.
	kept.UI.Tokens = next.UI.Tokens
	if next.UI.Listen != cur.UI.Listen || next.UI.Actions != cur.UI.Actions || next.UI.CertFile != cur.UI.CertFile || next.UI.KeyFile != cur.UI.KeyFile {
		a.log.Warn("ui.listen, ui.actions and the console's certificate change only on restart; the tokens were reloaded")
	}
	a.cfg = &kept
	a.mu.Unlock()
	a.log.Info("configuration reloaded", slog.Int("keys", len(next.Keys)))
	return nil
}

func (a *Agent) record(e api.Event) {
	a.events.add(e)
	if a.traps != nil && a.shouldTrap(e) {
		a.traps.Notify(e)
	}
}

// shouldTrap: a cluster-wide event is trapped once, by the live member with
// the lowest priority number; a node's own health and operator events by
// that node (only it knows them).
func (a *Agent) shouldTrap(e api.Event) bool {
	self := a.config().Node.Name
	switch e.Type {
	case vocab.NodeUnhealthy, vocab.NodeHealthy:
		return e.Node == self
	case vocab.Operator:
		return true
	}
	lowest, prio := "", 1<<30
	for _, m := range a.members.Members() {
		if !m.State.Down() && m.Priority < prio {
			lowest, prio = m.Name, m.Priority
		}
	}
	return lowest == self
}

func (a *Agent) generation() uint {
	if a.tier == nil {
		return 0
	}
	return uint(a.tier.Generation())
}

// config is the running config (Reload replaces it under a.mu).
func (a *Agent) config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Status is the cluster as this node sees it.
func (a *Agent) Status() api.Status {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	s := api.Status{
		Cluster:   cfg.Cluster.Name,
		Node:      cfg.Node.Name,
		Converged: true,
		Members:   []api.Member{},
		VIPs:      []api.VIP{},
		Groups:    []api.Group{},
		Problems:  a.members.Problems(),
		Heartbeat: api.HeartbeatStats{Profile: cfg.Heartbeat.Profile},
	}
	if s.Problems == nil {
		s.Problems = []string{}
	}
	if a.tier != nil {
		s.Problems = append(s.Problems, a.tier.Problems()...)
	}
	hb := a.members.Stats()
	s.Heartbeat.Sent, s.Heartbeat.Received, s.Heartbeat.Dropped, s.Heartbeat.Stale = hb.Sent, hb.Received, hb.Dropped, hb.Stale
	s.Heartbeat.Unsent = hb.Unsent
	members := a.members.Members()
	buckets := map[string]int{}
	if a.tier != nil {
		s.VIPs, buckets = a.tier.Status()
		s.Converged = a.tier.Converged(members)
		if cfg.Heartbeat.BackupBind == "" {
			s.Problems = append(s.Problems, "no heartbeat.backup_bind: if the private network splits, both sides answer the VIP; set a backup path on the public NIC")
		}
	}
	if a.fo != nil {
		s.Groups, s.Quorum = a.fo.Status()
	}
	for _, m := range members {
		mm := m.Mismatch
		if mm == nil {
			mm = []string{}
		}
		if len(mm) > 0 && !m.State.Down() {
			s.Converged = false
		}
		s.Members = append(s.Members, api.Member{
			Name: m.Name, Priority: m.Priority, Address: m.Addr, State: vocab.MemberState(m.State.String()),
			Healthy: m.Healthy, Paths: m.Paths, ConfigMismatch: mm, Buckets: buckets[m.Name],
			Version: m.Version, Protocol: m.Proto,
			Connections: atoiOr0(m.Ext["cn"]),
			Since:       m.Since, StateChanges: m.Changes, Self: m.Self,
			Unheard: m.Unheard, Cut: m.Cut,
		})
		for p, up := range m.Paths {
			if !up && !m.Self && !m.State.Down() && !m.Unheard {
				s.Problems = append(s.Problems, fmt.Sprintf("%s: the %s heartbeat path is down; the node is reached over its other path", m.Name, p))
			}
		}
	}
	return s
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
