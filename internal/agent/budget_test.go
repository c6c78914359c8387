package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/testenv"
)

// groupsConfig is a three-voter cluster with k failover groups of
// realistic names.
func groupsConfig(t *testing.T, k int) (*config.Config, error) {
	t.Helper()
	dir := testenv.TempDir(t)
	key, _ := config.NewKey()
	kf := filepath.Join(dir, "cluster.key")
	os.WriteFile(kf, []byte(key), 0o600)
	var b strings.Builder
	fmt.Fprintf(&b, `cluster: { name: his, key_file: %s }
node: { name: his-db-node1, priority: 1, state_dir: %s }
heartbeat: { bind: 192.168.1.2, backup_bind: 172.16.1.2, join: [192.168.1.3] }
quorum: { voters: [his-db-node1, his-db-node2, his-witness3] }
failover:
  groups:
`, kf, dir)
	for i := range k {
		fmt.Fprintf(&b, "    - { name: his-database-%02d, owners: [his-db-node1, his-db-node2], resource: { type: exec, start: [/bin/true], stop: [/bin/true], monitor: [/bin/true] } }\n", i)
	}
	cfg, err := config.Parse(filepath.Join(dir, "c.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, CheckMetadata(cfg)
}

// The budget check accepts a realistic cluster, refuses one whose leader's
// summaries would not fit, points at failover.groups, and what it accepts
// fits: the largest config it accepts has a worst case within the limit.
func TestMetadataBudget(t *testing.T) {
	largest := 0
	for k := 1; k <= 20; k++ {
		_, err := groupsConfig(t, k)
		if err != nil {
			if !strings.Contains(err.Error(), "failover.groups:") || !strings.Contains(err.Error(), "over the 512") {
				t.Fatalf("refusal of %d groups does not say why: %v", k, err)
			}
			if !strings.Contains(err.Error(), "c.yaml:6:") {
				t.Errorf("refusal of %d groups is not located at the groups line: %v", k, err)
			}
			break
		}
		largest = k
	}
	t.Logf("largest accepted: %d groups with names like his-database-01", largest)
	if largest < 2 || largest >= 20 {
		t.Fatalf("largest accepted group count %d: the budget is off", largest)
	}
}
