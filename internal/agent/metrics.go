package agent

import (
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clusterd/clusterd/internal/api"
)

// collector exposes the node's status as Prometheus metrics, read at
// scrape time so they always agree with clusterctl status and SNMP.
type collector struct {
	status func() api.Status

	member, buckets, healthy, changes, converged, generation *prometheus.Desc
	accepted, dropped, hbSent, hbRecv, hbDropped, hbStale    *prometheus.Desc
}

func newCollector(status func() api.Status) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("clusterd_"+name, help, labels, nil)
	}
	return &collector{
		status:     status,
		member:     d("member_state", "1 for the member's current state.", "member", "state"),
		buckets:    d("member_buckets", "Hash buckets the member owns over all VIP rules.", "member"),
		healthy:    d("member_healthy", "1 if all the member's health checks pass.", "member"),
		changes:    d("member_state_changes_total", "State changes of the member seen by this node.", "member"),
		converged:  d("converged", "1 if every member computed the same bucket map and shared config."),
		generation: d("vip_generation", "Bucket map generation on this node.", "vip"),
		accepted:   d("vip_packets_accepted_total", "Packets to the VIP this node accepted.", "vip"),
		dropped:    d("vip_packets_dropped_total", "Packets to the VIP this node dropped (other nodes' flows).", "vip"),
		hbSent:     d("heartbeats_sent_total", "Fast heartbeats sent."),
		hbRecv:     d("heartbeats_received_total", "Fast heartbeats received and accepted."),
		hbDropped:  d("heartbeats_dropped_total", "Heartbeats dropped: malformed, wrong key, unknown sender or address."),
		hbStale:    d("heartbeats_stale_total", "Authentic heartbeats dropped as not fresh: replayed, duplicated or of an earlier incarnation."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.member, c.buckets, c.healthy, c.changes, c.converged, c.generation, c.accepted, c.dropped, c.hbSent, c.hbRecv, c.hbDropped, c.hbStale} {
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
	for _, m := range s.Members {
		ch <- prometheus.MustNewConstMetric(c.member, prometheus.GaugeValue, 1, m.Name, m.State)
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
	ch <- prometheus.MustNewConstMetric(c.hbSent, prometheus.CounterValue, float64(s.Heartbeat.Sent))
	ch <- prometheus.MustNewConstMetric(c.hbRecv, prometheus.CounterValue, float64(s.Heartbeat.Received))
	ch <- prometheus.MustNewConstMetric(c.hbDropped, prometheus.CounterValue, float64(s.Heartbeat.Dropped))
	ch <- prometheus.MustNewConstMetric(c.hbStale, prometheus.CounterValue, float64(s.Heartbeat.Stale))
}

// serveMetrics serves /metrics on metrics.listen until the agent closes.
func (a *Agent) serveMetrics(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
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
	return nil
}
