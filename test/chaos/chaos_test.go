//go:build linux

// Package chaos_test runs clusterd's fault campaign (internal/chaos) in CI:
// short campaigns on fixed seeds. A seed that once found a defect stays in
// the list after the fix, as its regression test.
package chaos_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/chaos"
	"github.com/clusterd/clusterd/internal/testnet"
)

// ciKinds are the fault kinds CI injects: every kind the cluster passes
// today (docs/benchmarks.md lists the ones still open). Loss is back in:
// the acknowledged writes it lost (seeds 1 and 2) came from a primary
// that waited for no standby after regaining its lease, fixed and covered
// by TestPostgresRegainedLeaseKeepsWaiting. OneWay is in since
// reachability is mutual (heartbeat/reach.go; seed 2 draws two). Flap
// and Storm are in since a campaign aimed at them (seed 21) and seeds 1
// and 2 with them passed. Partition is not: the heal of a switch split
// resets a few new connections (design.md, "Partitions").
var ciKinds = []chaos.Kind{chaos.Kill, chaos.Stop, chaos.Term, chaos.PGKill, chaos.WebKill, chaos.Cable, chaos.Loss, chaos.Move, chaos.Drain, chaos.OneWay, chaos.Flap, chaos.Storm}

// ciSeeds: each runs 90 s of faults. Seed 2 last failed (stop 24's CI,
// two resets at the heal of a one-way fault) when a view that had left out
// every serving member for a moment took their buckets at once; fixed and
// covered by TestHealLossyGossip.
var ciSeeds = []int64{1, 2}

func TestChaosCampaign(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := os.Stat(chaos.PGBin + "/postgres"); err != nil {
		t.Skip("skipping: PostgreSQL 15 is not installed (apt-get install postgresql-15)")
	}
	for _, seed := range ciSeeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rep, err := chaos.Run(t, chaos.Options{Seed: seed, Duration: 90 * time.Second, Kinds: ciKinds,
				MaxHold: 6 * time.Second, Double: 0.25, WholeWithin: 30 * time.Second, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", rep)
			if len(rep.Violations) > 0 {
				t.Errorf("%d violations; replay with: go run ./bench/chaos -seed %d -duration 90s -max-hold 6s -faults %s",
					len(rep.Violations), seed, kindList(ciKinds))
			}
		})
	}
}

func kindList(ks []chaos.Kind) string {
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ","
		}
		s += string(k)
	}
	return s
}
