package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clusterd/clusterd/internal/api"
)

func TestCollector(t *testing.T) {
	st := api.Status{Cluster: "his", Node: "web1", Converged: true,
		Members: []api.Member{{Name: "web1", State: "active", Healthy: true, Buckets: 10, Since: time.Now()}, {Name: "web2", State: "failed", StateChanges: 2}},
		VIPs:    []api.VIP{{Address: "172.16.1.1/27", Generation: 7, PacketsAccepted: 5, PacketsDropped: 9}},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(func() api.Status { return st }))
	want := `
# HELP clusterd_member_state 1 for the member's current state.
# TYPE clusterd_member_state gauge
clusterd_member_state{member="web1",state="active"} 1
clusterd_member_state{member="web2",state="failed"} 1
# HELP clusterd_vip_packets_dropped_total Packets to the VIP this node dropped (other nodes' flows).
# TYPE clusterd_vip_packets_dropped_total counter
clusterd_vip_packets_dropped_total{vip="172.16.1.1/27"} 9
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "clusterd_member_state", "clusterd_vip_packets_dropped_total"); err != nil {
		t.Fatal(err)
	}
}
