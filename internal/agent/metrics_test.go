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
		Members: []api.Member{{Name: "web1", State: "active", Healthy: true, Buckets: 10, Since: time.Now(), Paths: map[string]bool{"private": true}},
			{Name: "web2", State: "failed", StateChanges: 2, Paths: map[string]bool{"private": false, "backup": false}}},
		VIPs:   []api.VIP{{Address: "172.16.1.1/27", Generation: 7, PacketsAccepted: 5, PacketsDropped: 9}},
		Groups: []api.Group{{Name: "db", Owner: "db1", State: "online", LagBytes: 42, Failovers: 3, Epoch: 4}},
		Quorum: &api.Quorum{Voters: 3, Alive: 2, HasQuorum: true, Leader: "web1"},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(func() api.Status { return st }))
	want := `
# HELP clusterd_member_state 1 for the member's current state, 0 for the others.
# TYPE clusterd_member_state gauge
clusterd_member_state{member="web1",state="active"} 1
clusterd_member_state{member="web1",state="drained"} 0
clusterd_member_state{member="web1",state="draining"} 0
clusterd_member_state{member="web1",state="failed"} 0
clusterd_member_state{member="web1",state="joining"} 0
clusterd_member_state{member="web1",state="left"} 0
clusterd_member_state{member="web2",state="active"} 0
clusterd_member_state{member="web2",state="drained"} 0
clusterd_member_state{member="web2",state="draining"} 0
clusterd_member_state{member="web2",state="failed"} 1
clusterd_member_state{member="web2",state="joining"} 0
clusterd_member_state{member="web2",state="left"} 0
# HELP clusterd_group_state 1 for the group's current state, 0 for the others.
# TYPE clusterd_group_state gauge
clusterd_group_state{group="db",state="degraded"} 0
clusterd_group_state{group="db",state="failing_over"} 0
clusterd_group_state{group="db",state="offline"} 0
clusterd_group_state{group="db",state="online"} 1
# HELP clusterd_group_failovers_total Owner changes of the group (failovers and planned moves).
# TYPE clusterd_group_failovers_total counter
clusterd_group_failovers_total{group="db"} 3
# HELP clusterd_quorum_voters_alive Voters this node sees alive.
# TYPE clusterd_quorum_voters_alive gauge
clusterd_quorum_voters_alive 2
# HELP clusterd_member_path_up 1 if the heartbeat path reaches the member (for this node: hears anyone).
# TYPE clusterd_member_path_up gauge
clusterd_member_path_up{member="web1",path="private"} 1
clusterd_member_path_up{member="web2",path="backup"} 0
clusterd_member_path_up{member="web2",path="private"} 0
# HELP clusterd_vip_packets_dropped_total Packets to the VIP this node dropped (other nodes' flows).
# TYPE clusterd_vip_packets_dropped_total counter
clusterd_vip_packets_dropped_total{vip="172.16.1.1/27"} 9
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "clusterd_member_state", "clusterd_vip_packets_dropped_total",
		"clusterd_group_state", "clusterd_group_failovers_total", "clusterd_quorum_voters_alive", "clusterd_member_path_up"); err != nil {
		t.Fatal(err)
	}
	// The exposition passes Prometheus' own lint (what promtool check
	// metrics runs).
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(reg, "clusterd_build_info"); err != nil || n != 1 {
		t.Errorf("build_info: %d series, %v", n, err)
	}
}
