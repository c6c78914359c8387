//go:build linux

package testnet

import (
	"fmt"
	"os"
	"path/filepath"
)

const markerScript = `#!/bin/sh
f="%s/$CLUSTERD_NODE.running"
case "$1" in
start) echo "$CLUSTERD_EPOCH" > "$f" ;;
stop) rm -f "$f" ;;
monitor) [ -f "$f" ] && exit 0; exit 7 ;;
esac
`

// MarkerResource is an exec resource for tests, the demo and benchmarks:
// while it runs on a node, the file DIR/NODE.running exists. It writes
// its script into dir and returns the resource's YAML (a flow map).
func MarkerResource(dir string) (string, error) {
	script := filepath.Join(dir, "resource.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(markerScript, dir)), 0o755); err != nil {
		return "", err
	}
	return fmt.Sprintf("{ type: exec, start: [%[1]s, start], stop: [%[1]s, stop], monitor: [%[1]s, monitor] }", script), nil
}

// FailoverGroup is the YAML of a quorum of node1..node3 and one failover
// group owned by node1 then node2, with vip (address/prefix) on eth0.
// resource is the group's resource YAML: a flow map, or a block whose
// lines are indented by 8 spaces.
func FailoverGroup(name, vip, resource string) string {
	return fmt.Sprintf(`quorum:
  voters: [node1, node2, node3]
failover:
  groups:
    - name: %s
      owners: [node1, node2]
      vip: { address: %s, interface: eth0 }
      resource: %s
`, name, vip, resource)
}

// PGBin is where Debian's PostgreSQL 15 keeps its programs.
const PGBin = "/usr/lib/postgresql/15/bin"

// PostgresGroup is FailoverGroup with a postgresql resource for node i
// (0-based): data under dir/nodeN/pgdata, the replication password in
// dir/replication.pass, synchronous replication, and access for the
// application user "app" from anywhere.
func PostgresGroup(name, vip, dir string, i int) string {
	return FailoverGroup(name, vip, fmt.Sprintf(`
        type: postgresql
        bin_dir: %s
        data_dir: %s/node%d/pgdata
        port: 5432
        password_file: %s/replication.pass
        synchronous: true
        hba: ["host all app all scram-sha-256"]`, PGBin, dir, i+1, dir))
}
