package config

import (
	"strings"
	"time"
)

// Defaults of what the file lists (VIPs, port rules, health checks, groups
// and their resources, trap targets): DefaultConfig cannot hold them, as
// the list comes from the file. fillDefaults sets them after decoding and
// before validate, which only checks.
const (
	// multicast: NLB's default mode; switches flood the cluster MAC, no
	// IGMP snooping or unicast flooding needed (design.md).
	defaultVIPMode = "multicast"
	// tcp, multiple, none: a rule balances TCP flows over every node
	// with no client affinity, NLB's defaults for a web farm.
	defaultProtocol  = "tcp"
	defaultFiltering = "multiple"
	defaultAffinity  = "none"
	// 50: NLB's default load weight; equal weights share equally.
	defaultWeight = 50
	// A health check every second that fails after 2 misses and recovers
	// after 2 passes: a node is withdrawn within ~2 s, and one slow answer
	// does not flap it.
	defaultCheckInterval = time.Second
	defaultFall          = 2
	defaultRise          = 2
	// 7947: next to the heartbeat ports (7946 memberlist, 7948 probes).
	defaultQuorumPort = 7947
	// never: a group stays where it failed over to until an operator
	// moves it (MSCS's default; an automatic failback is a second outage).
	defaultFailback = "never"
	// PostgreSQL's own defaults, and synchronous replication: a failover
	// must never lose an acknowledged commit.
	defaultPGPort          = 5432
	defaultPGOSUser        = "postgres"
	defaultReplicationUser = "replicator"
	// SNMP traps: v2c to port 162, what Cacti and net-snmp expect.
	defaultTrapVersion = "v2c"
	defaultTrapPort    = "162"
)

func (c *Config) fillDefaults() {
	for i := range c.LoadBalancing {
		lb := &c.LoadBalancing[i]
		if lb.Mode == "" {
			lb.Mode = defaultVIPMode
		}
		for j := range lb.Rules {
			r := &lb.Rules[j]
			if r.Protocol == "" {
				r.Protocol = defaultProtocol
			}
			if r.Filtering == "" {
				r.Filtering = defaultFiltering
			}
			if r.Affinity == "" {
				r.Affinity = defaultAffinity
			}
			if r.Weight == nil {
				w := defaultWeight
				r.Weight = &w
			}
			if r.HandlingPriority == 0 {
				// The node's own priority: the default host of a
				// single-host rule is the node that is default host
				// anyway.
				r.HandlingPriority = c.Node.Priority
			}
		}
		if h := lb.Health; h != nil {
			if h.Interval == 0 {
				h.Interval = Duration(defaultCheckInterval)
			}
			if h.Timeout == 0 {
				h.Timeout = h.Interval
			}
			if h.Fall == 0 {
				h.Fall = defaultFall
			}
			if h.Rise == 0 {
				h.Rise = defaultRise
			}
		}
	}
	if q := c.Quorum; q != nil && q.Port == 0 {
		q.Port = defaultQuorumPort
	}
	for i := range c.Failover.Groups {
		g := &c.Failover.Groups[i]
		if g.Failback == "" {
			g.Failback = defaultFailback
		}
		if r := &g.Resource; r.Type == ResourcePostgreSQL {
			if r.Port == 0 {
				r.Port = defaultPGPort
			}
			if r.Synchronous == nil {
				t := true
				r.Synchronous = &t
			}
			if r.OSUser == "" {
				r.OSUser = defaultPGOSUser
			}
			if r.ReplicationUser == "" {
				r.ReplicationUser = defaultReplicationUser
			}
		}
	}
	for i := range c.SNMP.Traps {
		t := &c.SNMP.Traps[i]
		if t.Target != "" && !strings.Contains(t.Target, ":") {
			t.Target += ":" + defaultTrapPort
		}
		if t.Version == "" {
			t.Version = defaultTrapVersion
		}
	}
}
