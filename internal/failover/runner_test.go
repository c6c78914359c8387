package failover

import (
	"testing"
	"time"
)

// The owner's lease runs from when it sent its report, less a tenth, so
// it always ends before the leader's; stale and non-leader answers do not
// extend it.
func TestLeaseCountsFromTheReport(t *testing.T) {
	r := &runner{m: &Manager{name: "db1"}, sent: map[uint64]time.Time{}, wake: make(chan struct{}, 1)}
	sent := time.Now().Add(-300 * time.Millisecond)
	r.sent[1], r.sent[2] = sent, sent.Add(100*time.Millisecond)

	r.onVerdict(verdict{Group: "db", Seq: 2, Owner: "db1", Epoch: 3, LeaseMS: 1000})
	if want := sent.Add(100*time.Millisecond + 900*time.Millisecond); !r.leaseUntil.Equal(want) || r.leaseEpoch != 3 {
		t.Fatalf("lease until %v epoch %d, want %v epoch 3", r.leaseUntil, r.leaseEpoch, want)
	}
	until := r.leaseUntil
	r.onVerdict(verdict{Group: "db", Seq: 1, Owner: "db1", Epoch: 3, LeaseMS: 1000}) // older report
	r.onVerdict(verdict{Group: "db", Seq: 2, NotLeader: true})
	r.onVerdict(verdict{Group: "db", Seq: 9, Owner: "db1", Epoch: 3, LeaseMS: 1000}) // never sent
	if !r.leaseUntil.Equal(until) {
		t.Fatalf("lease moved to %v by a stale, non-leader or unknown answer", r.leaseUntil)
	}
	// A verdict for another owner grants nothing, and the state says so.
	r.sent[3] = time.Now()
	r.onVerdict(verdict{Group: "db", Seq: 3, Owner: "db2", Epoch: 4})
	if _, _, ok, _, _ := r.state(); ok {
		t.Fatal("lease still valid after the record moved to db2")
	}
}
