//go:build linux

// Package chaos is clusterd's randomized fault campaign (Pacemaker's CTS,
// Jepsen's checkers): a cluster shaped like the hospital's, real
// workloads, a seeded random schedule of faults, and a checker that
// audits the cluster after every fault heals and at the end. The same
// seed gives the same schedule, so a failing run can be replayed.
//
// The cluster: node1 and node2 run the PostgreSQL failover group "db"
// (primary and synchronous standby) on VIP 10.77.1.201; node3, node4 and
// node5 serve the load-balanced VIP 10.77.1.100 with health checks;
// node1..node3 are the quorum voters; every node has a backup heartbeat
// path on its public NIC.
package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
	"github.com/clusterd/clusterd/internal/vocab"
)

// Addresses and tools.
const (
	PGBin  = testnet.PGBin
	NLBVIP = "10.77.1.100"
	DBVIP  = "10.77.1.201"
	nodes  = 5
)

func webConfig() string {
	return fmt.Sprintf(`load_balancing:
  - vip: %s/24
    interface: eth0
    mode: multicast
    rules:
      - ports: "80"
        protocol: tcp
    health:
      http: http://127.0.0.1:80/health
      interval: 200ms
      fall: 2
      rise: 2
`, NLBVIP)
}

func dbConfig(dir string, i int) string { return testnet.PostgresGroup("db", DBVIP+"/24", dir, i) }

// cluster is the campaign's cluster and what it knows of it.
type cluster struct {
	*testnet.Net
	dir      string
	web      []*testnet.Node
	db       []*testnet.Node
	backends map[*testnet.Node]*testnet.Backend
}

// isWeb says whether a node serves the load-balanced VIP (node3..node5).
func (c *cluster) isWeb(nd *testnet.Node) bool { return nd.Index >= 2 }

func newCluster(t testnet.TB, dir string) (*cluster, error) {
	if _, err := os.Stat(PGBin + "/postgres"); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
	}
	if err := os.WriteFile(filepath.Join(dir, "replication.pass"), []byte("repl-pass\n"), 0o600); err != nil {
		return nil, err
	}
	// Registered before the network so that it runs after it: a server
	// whose agent was killed outlives it.
	t.Cleanup(func() {
		for i := range nodes {
			testnet.KillServer(filepath.Join(dir, fmt.Sprintf("node%d", i+1), "pgdata"))
		}
	})
	n := testnet.New(t, testnet.Options{Nodes: nodes, Backup: true, Extra: func(i int) string {
		// Every node carries the shared quorum/failover sections; the web
		// nodes add the VIP. The group's resource runs on its owners only.
		cfg := dbConfig(dir, i) + "metrics:\n  listen: 0.0.0.0:9464\n"
		if i >= 2 {
			cfg += webConfig()
		}
		return cfg
	}})
	c := &cluster{Net: n, dir: dir, backends: map[*testnet.Node]*testnet.Backend{}}
	for _, nd := range n.Nodes {
		if c.isWeb(nd) {
			c.web = append(c.web, nd)
			c.backends[nd] = nd.Serve(80)
		} else {
			c.db = append(c.db, nd)
		}
	}
	return c, nil
}

// setup starts every node and waits until the cluster is whole, then
// creates the application's role and tables on the primary.
func (c *cluster) setup() error {
	c.Start()
	if d, problems, ok := c.waitWhole(120 * time.Second); !ok {
		return fmt.Errorf("the cluster did not come up whole in %s: %v", d, problems)
	}
	owner := c.groupOwner()
	if owner == nil {
		return fmt.Errorf("no group owner")
	}
	sock := filepath.Join(c.Dir, owner.Name+".state", "pg-db")
	out, err := exec.Command("ip", "netns", "exec", owner.NS, "runuser", "-u", "postgres", "--", PGBin+"/psql", "-X", "-h", sock, "-U", "postgres", "-d", "postgres",
		"-c", "CREATE ROLE app LOGIN PASSWORD 'app-pass'",
		"-c", "CREATE TABLE t (id int PRIMARY KEY, srv text)", "-c", "GRANT ALL ON t TO app", "-c", "GRANT pg_read_all_settings TO app",
		"-c", "CREATE TABLE l (node text, id int, PRIMARY KEY (node, id))", "-c", "GRANT SELECT ON l TO app").CombinedOutput()
	if err != nil {
		return fmt.Errorf("creating the application's tables: %v\n%s", err, out)
	}
	return nil
}

// groupOwner is the node that owns group db, as the first answering node
// says.
func (c *cluster) groupOwner() *testnet.Node {
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		s, err := nd.Status()
		if err != nil || len(s.Groups) == 0 {
			continue
		}
		for _, o := range c.Nodes {
			if o.Name == s.Groups[0].Owner {
				return o
			}
		}
		return nil
	}
	return nil
}

// whole lists why the cluster is not whole now (nil: it is): every agent
// runs and answers, every member is active on every node, every node
// computed the same bucket map (converged), group db is online with a
// synchronous standby, and the quorum has a leader.
func (c *cluster) whole() []string {
	var problems []string
	for _, nd := range c.Nodes {
		if !nd.Running() {
			problems = append(problems, nd.Name+" is not running")
			continue
		}
		s, err := nd.Status()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s does not answer: %v", nd.Name, err))
			continue
		}
		for _, m := range s.Members {
			if m.State != "active" {
				problems = append(problems, fmt.Sprintf("%s sees %s %s", nd.Name, m.Name, m.State))
			}
		}
		if len(s.Members) != nodes {
			problems = append(problems, fmt.Sprintf("%s lists %d members", nd.Name, len(s.Members)))
		}
		if !s.Converged {
			problems = append(problems, nd.Name+" is not converged")
		}
		if len(s.Groups) != 1 {
			problems = append(problems, fmt.Sprintf("%s shows %d groups", nd.Name, len(s.Groups)))
		} else if g := s.Groups[0]; g.State != vocab.GroupOnline || g.Replication != "sync" || g.Standby == "" {
			problems = append(problems, fmt.Sprintf("%s sees group db %s, replication %s, standby %q", nd.Name, g.State, g.Replication, g.Standby))
		}
		if s.Quorum == nil || !s.Quorum.HasQuorum || s.Quorum.Leader == "" {
			problems = append(problems, nd.Name+" sees no quorum leader")
		}
	}
	return problems
}

// waitWhole polls whole until it holds or within passes; it returns how
// long it took, the last problems seen before it held (what held the
// cluster up longest), and whether it held.
func (c *cluster) waitWhole(within time.Duration) (time.Duration, []string, bool) {
	start := time.Now()
	var last []string
	for time.Since(start) < within {
		p := c.whole()
		if len(p) == 0 {
			return time.Since(start), last, true
		}
		last = p
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), last, false
}

// pgDataDir is node nd's PostgreSQL data directory.
func (c *cluster) pgDataDir(nd *testnet.Node) string {
	return filepath.Join(c.dir, nd.Name, "pgdata")
}

// panics lists agents whose log shows a Go panic.
func (c *cluster) panics() []string {
	var out []string
	for _, nd := range c.Nodes {
		if l := nd.Log(); strings.Contains(l, "panic: ") || strings.Contains(l, "fatal error: ") {
			i := max(strings.Index(l, "panic: "), strings.Index(l, "fatal error: "))
			out = append(out, fmt.Sprintf("%s: %s", nd.Name, firstLines(l[i:], 8)))
		}
	}
	return out
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
