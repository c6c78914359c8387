package heartbeat

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// The fast path reads what json.Marshal writes for a liveness heartbeat,
// and refuses (ok false) anything else, which encoding/json then reads.
func TestDecodeLiveness(t *testing.T) {
	for _, hb := range []heartbeat{
		{Name: "web1", Boot: 1764600000123, Seq: 1, Interval: 50, V: 3},
		{Name: "his-db-node.2_a", Boot: math.MaxInt64, Seq: math.MaxUint64 >> 1, Interval: 20, V: 0},
		{Name: "x", Boot: -5, Seq: 7},
		{Name: "web2", Boot: 9, Seq: 8, Interval: 50, V: 1, Unheard: []string{"web1"}},
		{Name: "web2", Boot: 9, Seq: 8, Interval: 50, V: 1, Down: []string{"db1", "web-3.a_b"}},
		{Name: "web2", Boot: 9, Seq: 8, Interval: 50, V: 1, Unheard: []string{"a", "b"}, Down: []string{"c"}},
	} {
		b, _ := json.Marshal(hb)
		got, ok := decodeLiveness(b)
		if !ok || !reflect.DeepEqual(got, hb) {
			t.Errorf("%s: %+v %v", b, got, ok)
		}
	}
	withMeta, _ := json.Marshal(heartbeat{Name: "web1", Boot: 1, Seq: 2, Meta: &Meta{}})
	for _, b := range [][]byte{withMeta, []byte(`{"n":"a\u0041","b":1,"q":2,"i":3,"v":4}`), []byte(`{"n":"a","b":1,"q":2,"i":3,"v":4} `), []byte(`{"b":1,"n":"a","q":2,"i":3,"v":4}`), []byte(`{"n":"a","b":1,"q":-2,"i":3,"v":4}`),
		[]byte(`{"n":"a","b":1,"q":2,"i":3,"v":4,"u":[]}`), []byte(`{"n":"a","b":1,"q":2,"i":3,"v":4,"d":["x"],"u":["y"]}`),
		[]byte(`{"n":"a","b":1,"q":2,"i":3,"v":4,"u":["x",]}`), []byte(`{"n":"a","b":1,"q":2,"i":3,"v":4,"u":["x\"y"]}`)} {
		if _, ok := decodeLiveness(b); ok {
			t.Errorf("%s: taken by the fast path", b)
		}
	}
}

// Whatever the fast path accepts, encoding/json reads the same way.
func FuzzDecodeLiveness(f *testing.F) {
	b, _ := json.Marshal(heartbeat{Name: "web1", Boot: 17, Seq: 2, Interval: 50, V: 1})
	f.Add(b)
	f.Add([]byte(`{"n":"a","b":-0,"q":00,"i":3,"v":4}`))
	f.Add([]byte(`{"n":"a","b":1,"q":2,"i":3,"v":4,"u":["b","c"],"d":["e"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeLiveness(b)
		if !ok {
			return
		}
		var want heartbeat
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, json %+v", b, got, want)
		}
	})
}

func BenchmarkDecodeLiveness(b *testing.B) {
	pkt, _ := json.Marshal(heartbeat{Name: "his-web-01", Boot: 1764600000123, Seq: 123456, Interval: 50, V: 12})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			decodeLiveness(pkt)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			var hb heartbeat
			json.Unmarshal(pkt, &hb)
		}
	})
}
