//go:build linux

// Command chaos runs clusterd's randomized fault campaign (internal/chaos)
// on a 5-node namespace cluster shaped like the hospital's and prints the
// report; it exits 1 if the checker found a violation.
//
//	chaos -seed 7 -duration 1h            # the long run of docs/benchmarks.md
//	chaos -seed 7 -duration 2m -faults kill,stop,cable
//
// The seed and every fault with its time are in the report: the same seed
// and flags replay the same schedule.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/clusterd/clusterd/internal/chaos"
	"github.com/clusterd/clusterd/internal/testnet"
)

func main() {
	seed := flag.Int64("seed", time.Now().UnixNano()%1e6, "schedule seed (printed in the report)")
	duration := flag.Duration("duration", 10*time.Minute, "inject faults for this long")
	faults := flag.String("faults", "all", "comma-separated fault kinds, or all: "+fmt.Sprint(chaos.AllKinds))
	maxHold := flag.Duration("max-hold", 20*time.Second, "longest a fault lasts")
	double := flag.Float64("double", 0.25, "chance that a second fault overlaps the first")
	whole := flag.Duration("whole-within", 30*time.Second, "bound on convergence after a heal")
	flag.Parse()
	kinds, err := chaos.ParseKinds(*faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	p := &testnet.Program{}
	p.HandleSignals()
	dir, err := os.MkdirTemp("", "clusterd-chaos-")
	if err != nil {
		p.Fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // the postgres user reaches its data directory
	rep, err := chaos.Run(p, chaos.Options{Seed: *seed, Duration: *duration, Kinds: kinds, MaxHold: *maxHold,
		Double: *double, WholeWithin: *whole, Dir: dir})
	if err != nil {
		p.Fatalf("%v", err)
	}
	p.Done()
	fmt.Print(rep)
	fmt.Printf("replay: chaos -seed %d -duration %s -faults %s -max-hold %s -double %g -whole-within %s\n",
		*seed, *duration, *faults, *maxHold, *double, *whole)
	if len(rep.Violations) > 0 {
		os.Exit(1)
	}
}
