package vip

import (
	"math/rand"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// fakeMembers is a Membership that returns a fixed list.
type fakeMembers struct{ list []heartbeat.Member }

func (f *fakeMembers) Members() []heartbeat.Member { return append([]heartbeat.Member(nil), f.list...) }
func (f *fakeMembers) SetExt(string, string)       {}
func (f *fakeMembers) SetState(heartbeat.State)    {}
func (f *fakeMembers) SetHealthy(bool)             {}
func (f *fakeMembers) State() heartbeat.State      { return heartbeat.StateActive }

// resynced decides when a node back from a pause or a cut takes new flows
// again: table over member lists, each run with the members shuffled.
func TestResynced(t *testing.T) {
	since := time.Unix(1000, 0)
	after, before := since.Add(100*time.Millisecond), since.Add(-time.Second)
	web := func(name string, metaAt time.Time, sig string, st heartbeat.State) heartbeat.Member {
		return heartbeat.Member{Name: name, State: st, MetaAt: metaAt, Ext: map[string]string{extRules: "50/1", extInputs: sig}}
	}
	self := heartbeat.Member{Name: "web1", Self: true, State: heartbeat.StateActive, Ext: map[string]string{extRules: "50/1", extInputs: "S"}}
	lost := web("web3", before, "T", heartbeat.StateFailed)
	lost.Since = since.Add(200 * time.Millisecond)
	db := heartbeat.Member{Name: "db1", State: heartbeat.StateActive, MetaAt: after, Ext: map[string]string{}}
	for _, tc := range []struct {
		name    string
		members []heartbeat.Member
		now     time.Time
		pending bool
		cut     bool
		want    bool
	}{
		{"all fresh, same map", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "S", heartbeat.StateActive), db}, since.Add(time.Second), false, false, true},
		{"within a heartbeat timeout", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(300 * time.Millisecond), false, false, false},
		{"a peer's metadata is from before the pause", []heartbeat.Member{self, web("web2", before, "S", heartbeat.StateActive), web("web3", after, "S", heartbeat.StateActive)}, since.Add(time.Second), false, false, false},
		{"a database node's metadata is stale", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), {Name: "db1", State: heartbeat.StateActive, MetaAt: before}}, since.Add(time.Second), false, false, false},
		{"a peer computed another map", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "T", heartbeat.StateActive)}, since.Add(time.Second), false, false, false},
		{"a failed peer's old metadata does not count", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", before, "T", heartbeat.StateFailed)}, since.Add(time.Second), false, false, true},
		{"a joining peer's map does not count", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), web("web3", after, "", heartbeat.StateJoining)}, since.Add(time.Second), false, false, true},
		{"alone", []heartbeat.Member{self}, since.Add(time.Second), false, false, true},
		{"a hand-off of its own is pending", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(time.Second), true, false, false},
		{"a peer lost during the cut, not heard again yet", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), lost}, since.Add(time.Second), false, false, false},
		{"a peer lost during the cut, past the grace", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive), lost}, since.Add(lostGrace), false, false, true},
		{"a VIP NIC is still cut", []heartbeat.Member{self, web("web2", after, "S", heartbeat.StateActive)}, since.Add(time.Second), false, true, false},
	} {
		for run := range 5 {
			ms := append([]heartbeat.Member(nil), tc.members...)
			rand.New(rand.NewSource(int64(run))).Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
			tr := &Tier{o: Options{Members: &fakeMembers{ms}, Settle: 110 * time.Millisecond, ViewTimeout: 400 * time.Millisecond},
				plans: []VIPPlan{{}}, sig: "S", pubSig: "S", linkCut: tc.cut}
			if tc.pending {
				tr.pending = &Ownership{}
			}
			tr.publishView()
			if got := tr.resynced(since, since, tc.now); got != tc.want {
				t.Errorf("%s (run %d): resynced %v, want %v", tc.name, run, got, tc.want)
			}
		}
	}
}
