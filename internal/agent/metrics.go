package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/version"
	"github.com/clusterd/clusterd/internal/vocab"
)

// collector exposes the node's status as Prometheus metrics, read at
// scrape time so they always agree with clusterctl status and SNMP.
type collector struct {
	status func() api.Status

	member, buckets, healthy, changes, converged, generation *prometheus.Desc
	accepted, dropped, hbSent, hbRecv, hbDropped, hbStale    *prometheus.Desc
	hbUnsent                                                 *prometheus.Desc
	path, build                                              *prometheus.Desc
	groupState, groupOwner, groupLag, groupFailovers         *prometheus.Desc
	groupEpoch, quorumVoters, quorumAlive, quorumHas         *prometheus.Desc
	quorumLeader                                             *prometheus.Desc
}

// The states a member and a group can be in (SPEC.md): each gets its
// series, 1 for the current one and 0 for the others, as Prometheus
// exporters do for an enum (a state that is not there still has a series,
// so an alert on "failed == 1" sees the change from 0).
var (
	memberStates = vocab.MemberStates
	groupStates  = vocab.GroupStates
)

func newCollector(status func() api.Status) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("clusterd_"+name, help, labels, nil)
	}
	return &collector{
		status:         status,
		member:         d("member_state", "1 for the member's current state, 0 for the others.", "member", "state"),
		buckets:        d("member_buckets", "Hash buckets the member owns over all VIP rules.", "member"),
		healthy:        d("member_healthy", "1 if all the member's health checks pass.", "member"),
		changes:        d("member_state_changes_total", "State changes of the member seen by this node.", "member"),
		converged:      d("converged", "1 if every member computed the same bucket map and shared config."),
		generation:     d("vip_generation", "Bucket map generation on this node.", "vip"),
		accepted:       d("vip_packets_accepted_total", "Packets to the VIP this node accepted.", "vip"),
		dropped:        d("vip_packets_dropped_total", "Packets to the VIP this node dropped (other nodes' flows).", "vip"),
		hbSent:         d("heartbeats_sent_total", "Fast heartbeats sent."),
		hbRecv:         d("heartbeats_received_total", "Fast heartbeats received and accepted."),
		hbDropped:      d("heartbeats_dropped_total", "Heartbeats dropped: malformed, wrong key, unknown sender or address."),
		hbStale:        d("heartbeats_stale_total", "Authentic heartbeats dropped as not fresh: replayed, duplicated or of an earlier incarnation."),
		hbUnsent:       d("heartbeats_unsent_total", "Heartbeats this node could not send: a peer unreachable, or a path whose socket stayed full for an interval."),
		path:           d("member_path_up", "1 if the heartbeat path reaches the member (for this node: hears anyone).", "member", "path"),
		build:          d("build_info", "1, labelled with this build's version, Go version and cluster protocol.", "version", "goversion", "protocol"),
		groupState:     d("group_state", "1 for the group's current state, 0 for the others.", "group", "state"),
		groupOwner:     d("group_owner_info", "1, labelled with the group's owner.", "group", "owner"),
		groupLag:       d("group_lag_bytes", "Replication lag of the group's standby, in bytes.", "group"),
		groupFailovers: d("group_failovers_total", "Owner changes of the group (failovers and planned moves).", "group"),
		groupEpoch:     d("group_epoch", "The group's lease epoch (raised at every owner change).", "group"),
		quorumVoters:   d("quorum_voters", "Configured voters."),
		quorumAlive:    d("quorum_voters_alive", "Voters this node sees alive."),
		quorumHas:      d("quorum_has_quorum", "1 if a majority of voters is alive and a leader is elected."),
		quorumLeader:   d("quorum_leader_info", "1, labelled with the quorum leader as this node sees it.", "leader"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.member, c.buckets, c.healthy, c.changes, c.converged, c.generation, c.accepted, c.dropped, c.hbSent, c.hbRecv, c.hbDropped, c.hbStale, c.hbUnsent,
		c.path, c.build, c.groupState, c.groupOwner, c.groupLag, c.groupFailovers, c.groupEpoch, c.quorumVoters, c.quorumAlive, c.quorumHas, c.quorumLeader} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, version.Short(), runtime.Version(), strconv.Itoa(heartbeat.ProtocolVersion))
	for _, m := range s.Members {
		for _, st := range memberStates {
			ch <- prometheus.MustNewConstMetric(c.member, prometheus.GaugeValue, b2f(m.State == st), m.Name, string(st))
		}
		for p, up := range m.Paths {
			ch <- prometheus.MustNewConstMetric(c.path, prometheus.GaugeValue, b2f(up), m.Name, p)
		}
		ch <- prometheus.MustNewConstMetric(c.buckets, prometheus.GaugeValue, float64(m.Buckets), m.Name)
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, b2f(m.Healthy), m.Name)
		ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(m.StateChanges), m.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.converged, prometheus.GaugeValue, b2f(s.Converged))
	for _, v := range s.VIPs {
		ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(v.Generation), v.Address)
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(v.PacketsAccepted), v.Address)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(v.PacketsDropped), v.Address)
	}
	for _, g := range s.Groups {
		for _, st := range groupStates {
			ch <- prometheus.MustNewConstMetric(c.groupState, prometheus.GaugeValue, b2f(g.State == st), g.Name, string(st))
		}
		if g.Owner != "" {
			ch <- prometheus.MustNewConstMetric(c.groupOwner, prometheus.GaugeValue, 1, g.Name, g.Owner)
		}
		ch <- prometheus.MustNewConstMetric(c.groupLag, prometheus.GaugeValue, float64(g.LagBytes), g.Name)
		ch <- prometheus.MustNewConstMetric(c.groupFailovers, prometheus.CounterValue, float64(g.Failovers), g.Name)
		ch <- prometheus.MustNewConstMetric(c.groupEpoch, prometheus.GaugeValue, float64(g.Epoch), g.Name)
	}
	if q := s.Quorum; q != nil {
		ch <- prometheus.MustNewConstMetric(c.quorumVoters, prometheus.GaugeValue, float64(q.Voters))
		ch <- prometheus.MustNewConstMetric(c.quorumAlive, prometheus.GaugeValue, float64(q.Alive))
		ch <- prometheus.MustNewConstMetric(c.quorumHas, prometheus.GaugeValue, b2f(q.HasQuorum))
		if q.Leader != "" {
			ch <- prometheus.MustNewConstMetric(c.quorumLeader, prometheus.GaugeValue, 1, q.Leader)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.hbSent, prometheus.CounterValue, float64(s.Heartbeat.Sent))
	ch <- prometheus.MustNewConstMetric(c.hbRecv, prometheus.CounterValue, float64(s.Heartbeat.Received))
	ch <- prometheus.MustNewConstMetric(c.hbDropped, prometheus.CounterValue, float64(s.Heartbeat.Dropped))
	ch <- prometheus.MustNewConstMetric(c.hbStale, prometheus.CounterValue, float64(s.Heartbeat.Stale))
	ch <- prometheus.MustNewConstMetric(c.hbUnsent, prometheus.CounterValue, float64(s.Heartbeat.Unsent))
}

// serveMetrics serves /metrics on l (metrics.listen) until the agent
// closes.
func (a *Agent) serveMetrics(l net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(a.Status))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l = api.LimitListener(l, maxMetricsConns)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	a.metricsSrv = srv
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics endpoint stopped", slog.Any("error", err))
		}
	}()
}
