// Command balance reports the bucket assignment's balance and disruption
// at 4, 8 and 32 nodes from the pure code (no network), next to a
// 60-bucket table like Windows NLB's.
//
//	go run ./bench/balance
package main

import (
	"fmt"
	"time"

	"github.com/clusterd/clusterd/internal/vip"
)

func nodes(n int) []vip.Candidate {
	cs := make([]vip.Candidate, n)
	for i := range cs {
		cs[i] = vip.Candidate{Name: fmt.Sprintf("web%d", i+1), Weight: 50}
	}
	return cs
}

func main() {
	fmt.Println("| nodes | buckets | max/mean load | max/min load | worst moved when one leaves | of which between survivors | 1/N | assign time |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, size := range []int{vip.TableSize, 4093, 61} {
		for _, n := range []int{4, 8, 32} {
			cs := nodes(n)
			start := time.Now()
			t := vip.Assign(cs, size)
			took := time.Since(start)
			mx, mn := 0, size
			for _, c := range t.Counts() {
				mx, mn = max(mx, c), min(mn, c)
			}
			mean := float64(size) / float64(n)
			worst, worstBetween := 0, 0
			for leave := range cs {
				rest := append(append([]vip.Candidate{}, cs[:leave]...), cs[leave+1:]...)
				u := vip.Assign(rest, size)
				moved, between := 0, 0
				for b := 0; b < size; b++ {
					if t.Owner(b) != u.Owner(b) {
						moved++
						if t.Owner(b) != cs[leave].Name {
							between++
						}
					}
				}
				worst, worstBetween = max(worst, moved), max(worstBetween, between)
			}
			fmt.Printf("| %d | %d | %.4f | %.2f | %.2f%% | %.2f%% | %.2f%% | %s |\n", n, size, float64(mx)/mean, float64(mx)/float64(mn),
				100*float64(worst)/float64(size), 100*float64(worstBetween)/float64(size), 100/float64(n), took.Round(10*time.Microsecond))
		}
	}
}
