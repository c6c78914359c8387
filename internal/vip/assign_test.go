package vip

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

func equal(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{Name: fmt.Sprintf("web%d", i+1), Weight: 50}
	}
	return cs
}

func TestBalance(t *testing.T) {
	for _, n := range []int{2, 3, 4, 8, 16, 32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := Assign(equal(n), TableSize).Counts()
			mx, sum := 0, 0
			for _, v := range c {
				mx = max(mx, v)
				sum += v
			}
			if sum != TableSize || len(c) != n {
				t.Fatalf("table not full: %d buckets over %d owners", sum, len(c))
			}
			if r := float64(mx) / (float64(sum) / float64(n)); r > 1.01 {
				t.Errorf("max/mean = %.4f > 1.01", r)
			}
		})
	}
}

// TestDisruption: when one of N leaves, only its buckets move, plus at most
// 2% of the table between survivors.
func TestDisruption(t *testing.T) {
	for _, n := range []int{4, 8, 16, 32} {
		cs := equal(n)
		before := Assign(cs, TableSize)
		for leave := 0; leave < n; leave++ {
			rest := append(append([]Candidate{}, cs[:leave]...), cs[leave+1:]...)
			after := Assign(rest, TableSize)
			moved, between := 0, 0
			for b := 0; b < TableSize; b++ {
				if before.Owner(b) != after.Owner(b) {
					moved++
					if before.Owner(b) != cs[leave].Name {
						between++
					}
				}
			}
			limit := float64(TableSize)/float64(n) + 0.02*TableSize
			if float64(moved) > limit {
				t.Errorf("n=%d, %s leaves: %d buckets moved, limit %.0f", n, cs[leave].Name, moved, limit)
			}
			if float64(between) > 0.02*TableSize {
				t.Errorf("n=%d: %d buckets moved between survivors (> 2%%)", n, between)
			}
		}
	}
}

func TestWeights(t *testing.T) {
	cases := [][]int{{50, 50, 100}, {10, 20, 30, 40}, {1, 100}, {100, 0, 50}, {33, 33, 34, 1, 99}}
	for _, ws := range cases {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			var cs []Candidate
			total := 0
			for i, w := range ws {
				cs = append(cs, Candidate{Name: fmt.Sprintf("n%d", i), Weight: w})
				total += w
			}
			c := Assign(cs, TableSize).Counts()
			for i, w := range ws {
				got := float64(c[fmt.Sprintf("n%d", i)]) / TableSize * 100
				want := float64(w) / float64(total) * 100
				if got-want > 1 || want-got > 1 {
					t.Errorf("weight %d: share %.2f%%, want %.2f%% ±1", w, got, want)
				}
				if w == 0 && c[fmt.Sprintf("n%d", i)] != 0 {
					t.Errorf("weight 0 got buckets")
				}
			}
		})
	}
}

// TestOrderIndependent: every node computes the same table whatever order
// it learnt the members in.
func TestOrderIndependent(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	cs := equal(17)
	cs[3].Weight = 90
	want := Assign(cs, TableSize)
	for i := 0; i < 20; i++ {
		sh := append([]Candidate{}, cs...)
		r.Shuffle(len(sh), func(a, b int) { sh[a], sh[b] = sh[b], sh[a] })
		if got := Assign(sh, TableSize); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffle %d gives another table", i)
		}
	}
}

// TestProperties checks random member sets: full table, no owner outside
// the set, deterministic.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 50; i++ {
		n := 1 + r.Intn(32)
		var cs []Candidate
		in := map[string]bool{}
		for j := 0; j < n; j++ {
			c := Candidate{Name: fmt.Sprintf("h%d", r.Intn(1000)), Weight: r.Intn(101)}
			if in[c.Name] {
				continue
			}
			in[c.Name] = c.Weight > 0
			cs = append(cs, c)
		}
		tb := Assign(cs, 1021)
		any := false
		for _, ok := range in {
			any = any || ok
		}
		for b := 0; b < 1021; b++ {
			o := tb.Owner(b)
			if any && !in[o] {
				t.Fatalf("bucket %d owned by %q, not an eligible candidate", b, o)
			}
			if !any && o != "" {
				t.Fatalf("owner without candidates")
			}
		}
	}
}

func TestEmptyAndSingle(t *testing.T) {
	if c := Assign(nil, TableSize).Counts(); len(c) != 0 {
		t.Fatal(c)
	}
	if c := Single("web2", TableSize).Counts(); c["web2"] != TableSize {
		t.Fatal(c)
	}
}

func BenchmarkAssign32(b *testing.B) {
	cs := equal(32)
	for b.Loop() {
		Assign(cs, TableSize)
	}
}

func BenchmarkAssign4(b *testing.B) {
	cs := equal(4)
	for b.Loop() {
		Assign(cs, TableSize)
	}
}

// TestMoves: adding a fourth node moves buckets to it (and a few between
// the others, as Maglev does); the counts add up to every bucket whose
// owner differs, largest first; the same table is no move.
func TestMoves(t *testing.T) {
	three := Assign([]Candidate{{"a", 50}, {"b", 50}, {"c", 50}}, TableSize)
	four := Assign([]Candidate{{"a", 50}, {"b", 50}, {"c", 50}, {"d", 50}}, TableSize)
	m := Moves(three, four)
	diff := 0
	for b := 0; b < TableSize; b++ {
		if three.Owner(b) != four.Owner(b) {
			diff++
		}
	}
	sum, toD := 0, 0
	for i, x := range m {
		sum += x.Buckets
		if x.To == "d" {
			toD += x.Buckets
		}
		if i > 0 && m[i-1].Buckets < x.Buckets {
			t.Errorf("not largest first: %v", m)
		}
	}
	if sum != diff || toD != four.Counts()["d"] {
		t.Errorf("moves %v: sum %d, want %d; to d %d, want %d", m, sum, diff, toD, four.Counts()["d"])
	}
	if len(Moves(four, four)) != 0 {
		t.Error("the same table moved buckets")
	}
	none := Single("", TableSize)
	if m := Moves(none, four); len(m) != 4 || m[0].From != "" {
		t.Errorf("from nobody: %v", m)
	}
}
