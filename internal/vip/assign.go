// Package vip is the NLB tier: which node owns which hash bucket of a
// load-balanced virtual IP (pure, assign.go), and the datapath that makes
// the kernel accept only the flows of owned buckets (nftables, ARP,
// addresses; Linux only).
package vip

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"

	"github.com/clusterd/clusterd/internal/api"
)

// TableSize is the number of hash buckets per rule: a prime, as Maglev's
// permutations need. 16381 gives max/mean load 1.0002 at 32 equal nodes and
// moves ~1/N + <1% of buckets when one of N nodes leaves; 4093 misses the
// disruption bound (1/N + 2%) at 32 nodes. Windows NLB uses 60 buckets
// (a 2:1 imbalance at 32 hosts).
const TableSize = 16381

// Candidate is a node that may own buckets of a rule.
type Candidate struct {
	Name   string
	Weight int // 0..100; 0 takes no new flows on this rule
}

// Table maps each bucket to an owner. Owners[Entry[b]] owns bucket b;
// Entry[b] is -1 when nobody does (no candidate with weight > 0).
type Table struct {
	Owners []string
	Entry  []int16
}

// Owner returns the owner of bucket b, or "".
func (t Table) Owner(b int) string {
	if b < 0 || b >= len(t.Entry) || t.Entry[b] < 0 {
		return ""
	}
	return t.Owners[t.Entry[b]]
}

// Counts returns each owner's number of buckets.
func (t Table) Counts() map[string]int {
	out := map[string]int{}
	n := make([]int, len(t.Owners))
	for _, e := range t.Entry {
		if e >= 0 {
			n[e]++
		}
	}
	for i, o := range t.Owners {
		if n[i] > 0 {
			out[o] = n[i]
		}
	}
	return out
}

// Buckets returns the buckets that name owns, ascending.
func (t Table) Buckets(name string) []uint32 {
	idx := -1
	for i, o := range t.Owners {
		if o == name {
			idx = i
		}
	}
	var out []uint32
	if idx < 0 {
		return out
	}
	for b, e := range t.Entry {
		if int(e) == idx {
			out = append(out, uint32(b))
		}
	}
	return out
}

// permutation returns a candidate's Maglev offset and skip. It depends on
// the name only, so every node computes the same table whatever order it
// learnt the members in, and a node keeps its preferences across changes.
func permutation(name string, size int) (offset, skip uint64) {
	h := sha256.Sum256([]byte("clusterd/maglev/" + name))
	offset = binary.BigEndian.Uint64(h[0:8]) % uint64(size)
	skip = binary.BigEndian.Uint64(h[8:16])%uint64(size-1) + 1
	return
}

// Assign computes the bucket table of one rule (Maglev, Eisenbud et al.,
// NSDI 2016, with weights): candidates take turns filling the table, each
// claiming its next preferred free bucket; a candidate with weight w takes
// w/maxWeight turns per round, so its share is w/Σw to within one bucket
// per round. The result depends only on the set of (name, weight).
func Assign(cands []Candidate, size int) Table {
	cs := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if c.Weight > 0 {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	t := Table{Entry: make([]int16, size)}
	for i := range t.Entry {
		t.Entry[i] = -1
	}
	for _, c := range cs {
		t.Owners = append(t.Owners, c.Name)
	}
	if len(cs) == 0 {
		return t
	}
	n := len(cs)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]int, n)
	maxW := 0
	for i, c := range cs {
		offset[i], skip[i] = permutation(c.Name, size)
		maxW = max(maxW, c.Weight)
	}
	filled := 0
	for filled < size {
		for i := 0; i < n && filled < size; i++ {
			credit[i] += cs[i].Weight
			for credit[i] >= maxW && filled < size {
				credit[i] -= maxW
				for {
					b := (offset[i] + next[i]*skip[i]) % uint64(size)
					next[i]++
					if t.Entry[b] < 0 {
						t.Entry[b] = int16(i)
						filled++
						break
					}
				}
			}
		}
	}
	return t
}

// Single gives every bucket to one owner (filtering: single), or to
// nobody if owner is "".
func Single(owner string, size int) Table {
	t := Table{Entry: make([]int16, size)}
	e := int16(-1)
	if owner != "" {
		t.Owners = []string{owner}
		e = 0
	}
	for i := range t.Entry {
		t.Entry[i] = e
	}
	return t
}

// Moves counts the buckets whose owner differs between prev and next, by
// (from, to), largest first (then by names); "" is nobody.
func Moves(prev, next Table) []api.BucketMove {
	n := len(next.Entry)
	if len(prev.Entry) != n {
		return nil
	}
	count := map[[2]string]int{}
	for b := 0; b < n; b++ {
		f, t := prev.Owner(b), next.Owner(b)
		if f != t {
			count[[2]string{f, t}]++
		}
	}
	out := make([]api.BucketMove, 0, len(count))
	for k, c := range count {
		out = append(out, api.BucketMove{From: k[0], To: k[1], Buckets: c})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Buckets != b.Buckets {
			return a.Buckets > b.Buckets
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	return out
}
