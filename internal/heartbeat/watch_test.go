package heartbeat

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// TestWatchersOf: the ring is by name whatever order the view lists the
// members in; it wraps; small clusters are watched by everyone.
func TestWatchersOf(t *testing.T) {
	names := func(n int) []string {
		var out []string
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("web%02d", i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		live []string
		w    int
		want []string
	}{
		{"web01", names(12), 3, []string{"web02", "web03", "web04"}},
		{"web11", names(12), 3, []string{"web01", "web02", "web12"}},
		{"web12", names(12), 3, []string{"web01", "web02", "web03"}},
		{"web02", names(3), 3, []string{"web01", "web03"}},
		{"web01", names(1), 3, nil},
		{"gone", names(12), 3, nil},
	} {
		for run := range 5 {
			live := slices.Clone(tc.live)
			rand.New(rand.NewSource(int64(run))).Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
			var got []string
			for n := range watchersOf(tc.name, live, tc.w) {
				got = append(got, n)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("watchers of %s among %d (run %d): %v, want %v", tc.name, len(tc.live), run, got, tc.want)
			}
		}
	}
}

// recordConn records the heartbeats a sender writes.
type recordConn struct {
	mu   sync.Mutex
	sent map[string][]heartbeat // by destination address
	open func([]byte) ([]byte, error)
}

func (c *recordConn) ReadBatch([]ipv4.Message, int) (int, error) { select {} }
func (c *recordConn) SetWriteDeadline(time.Time) error           { return nil }
func (c *recordConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		plain, err := c.open(m.Buffers[0])
		if err != nil {
			return 0, err
		}
		var hb heartbeat
		if err := json.Unmarshal(plain, &hb); err != nil {
			return 0, err
		}
		a := m.Addr.(*net.UDPAddr).IP.String()
		c.sent[a] = append(c.sent[a], hb)
	}
	return len(ms), nil
}

// watchRig is a membership of n members (this node n01 and peers n02..),
// its private path's sends recorded.
func watchRig(t *testing.T, n int) (*Membership, *recordConn) {
	t.Helper()
	ev := &eventLog{}
	m, err := New(Options{Cluster: "test", Name: "n01", Priority: 1, Keys: [][]byte{make([]byte, 32)},
		Bind: "127.0.0.1", Profile: ProfileLAN, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 2; i <= n; i++ {
		name := fmt.Sprintf("n%02d", i)
		p := &peer{name: name, addr: netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), state: StateActive, since: now,
			seen: [2]time.Time{now, now}, pathUp: [2]bool{true, true}, interval: ProfileLAN.Interval}
		p.setMeta(Meta{Priority: i, State: StateActive, Boot: 7, ProbePort: 1})
		m.peers[name] = p
	}
	rec := &recordConn{sent: map[string][]heartbeat{}, open: m.sealer.open}
	m.senders[pathPrivate] = newSender(rec)
	m.conns[pathPrivate] = new(net.UDPConn) // the path exists (hasPath); nothing reads it
	return m, rec
}

// TestRoundsAboveScaleAbove: with 13 members a node sends every round to
// its 3 watchers, announcing Interval, and every 2nd to the others,
// announcing twice that; a verdict or fresh metadata goes to everyone in
// every round. Up to ScaleAbove members everyone gets every round.
func TestRoundsAboveScaleAbove(t *testing.T) {
	m, rec := watchRig(t, 13)
	m.metaChanged = time.Now().Add(-time.Hour)
	now := time.Now()
	for i := 0; i < 10; i++ {
		m.sendHeartbeats(now.Add(time.Duration(i) * ProfileLAN.Interval))
	}
	for i := 2; i <= 13; i++ {
		got := rec.sent[fmt.Sprintf("127.0.0.%d", i)]
		watcher := i <= 4
		want, iv := 5, int64(100)
		if watcher {
			want, iv = 10, 50
		}
		if len(got) != want {
			t.Errorf("n%02d (watcher %v) got %d heartbeats of 10 rounds, want %d", i, watcher, len(got), want)
			continue
		}
		for _, hb := range got {
			if hb.Interval != iv {
				t.Errorf("n%02d got interval %d, want %d", i, hb.Interval, iv)
				break
			}
		}
	}

	// A verdict goes to everyone, every round, for verdictFor.
	rec.sent = map[string][]heartbeat{}
	m.verdicts = []verdict{{Name: "n05", Boot: 7, Seq: 3, Age: 400, until: now.Add(time.Hour)}}
	m.sendHeartbeats(now.Add(11 * ProfileLAN.Interval)) // an odd round
	for i := 2; i <= 13; i++ {
		got := rec.sent[fmt.Sprintf("127.0.0.%d", i)]
		if len(got) != 1 || len(got[0].Failed) != 1 || got[0].Failed[0].Name != "n05" {
			t.Errorf("n%02d: %+v, want the verdict on n05", i, got)
		}
	}
	rec.sent = map[string][]heartbeat{}
	m.verdicts[0].until = now
	m.sendHeartbeats(now.Add(time.Minute))
	if len(m.verdicts) != 0 {
		t.Errorf("verdict kept after its time: %+v", m.verdicts)
	}

	small, rec2 := watchRig(t, ProfileLAN.ScaleAbove)
	for i := 0; i < 4; i++ {
		small.sendHeartbeats(time.Now())
	}
	for i := 2; i <= ProfileLAN.ScaleAbove; i++ {
		if got := rec2.sent[fmt.Sprintf("127.0.0.%d", i)]; len(got) != 4 || got[0].Interval != 50 {
			t.Errorf("%d members: n%02d got %d heartbeats", ProfileLAN.ScaleAbove, i, len(got))
		}
	}
}

// TestVerdicts: a watcher's verdict fails a member this node has not heard
// since the watcher last did; a member this node heard later (only the
// watcher lost it: a one-way fault) stays; so does a member that restarted
// since, or one the verdict is replayed for.
func TestVerdicts(t *testing.T) {
	deliver := func(m *Membership, seq uint64, v verdict) error {
		b, _ := json.Marshal(heartbeat{Name: "n02", Boot: 7, Seq: seq, Interval: 50, Failed: []verdict{v}})
		return m.handleHeartbeat(pathPrivate, m.sealer.seal(b), netip.MustParseAddr("127.0.0.2"), time.Now())
	}
	for _, tc := range []struct {
		name    string
		heard   uint64 // this node's newest heartbeat of n05
		v       verdict
		failed  bool
		already bool
	}{
		{"not heard since", 40, verdict{Name: "n05", Boot: 7, Seq: 40, Age: 402}, true, false},
		{"heard less", 38, verdict{Name: "n05", Boot: 7, Seq: 40, Age: 402}, true, false},
		{"heard since (one-way fault)", 44, verdict{Name: "n05", Boot: 7, Seq: 40, Age: 402}, false, false},
		{"restarted since", 2, verdict{Name: "n05", Boot: 6, Seq: 40, Age: 402}, false, false},
		{"unknown member", 40, verdict{Name: "n99", Boot: 7, Seq: 40}, false, false},
	} {
		m, _ := watchRig(t, 13)
		m.peers["n05"].maxSeq = tc.heard
		if err := deliver(m, 100, tc.v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := m.peers["n05"].state == StateFailed; got != tc.failed {
			t.Errorf("%s: failed %v, want %v", tc.name, got, tc.failed)
		}
		if tc.failed {
			select {
			case e := <-m.events:
				if e.Type != EventFailed || e.Node != "n05" || !strings.Contains(e.Detail, "seen by n02") {
					t.Errorf("%s: event %+v, want n05 failed, seen by n02", tc.name, e)
				}
			default:
				t.Errorf("%s: no node_failed event", tc.name)
			}
		}
		// The same packet again (a replay) is refused before its verdict
		// is read.
		m.peers["n05"].state = StateActive
		if err := deliver(m, 100, tc.v); err == nil {
			t.Errorf("%s: a replayed verdict packet was taken", tc.name)
		}
		if m.peers["n05"].state != StateActive {
			t.Errorf("%s: a replayed verdict failed the member", tc.name)
		}
	}
}

// TestWatcherTellsOthers: a watcher that times a member out (it sent to
// this node every Interval while this node, in a large cluster, sends to
// most others less often) records a verdict with the last sequence number
// it took; a member that announced the slow interval (this node does not
// watch it) is failed without a verdict, by the slow timeout.
func TestWatcherTellsOthers(t *testing.T) {
	m, _ := watchRig(t, 13)
	now := time.Now()
	m.sendHeartbeats(now) // sets this node's interval for 13 members
	m.peers["n05"].maxSeq = 77
	m.peers["n06"].interval = 2 * ProfileLAN.Interval
	for _, n := range []string{"n05", "n06"} {
		m.peers[n].seen = [2]time.Time{now.Add(-time.Hour), now.Add(-time.Hour)}
	}
	m.check(now)
	if m.peers["n05"].state != StateFailed || m.peers["n06"].state != StateFailed {
		t.Fatalf("states %s %s, want both failed", m.peers["n05"].state, m.peers["n06"].state)
	}
	if len(m.verdicts) != 1 || m.verdicts[0].Name != "n05" || m.verdicts[0].Seq != 77 || m.verdicts[0].Boot != 7 {
		t.Errorf("verdicts %+v, want one on n05 at seq 77", m.verdicts)
	}
}

// TestFailedMembersGetMetadata: a failed member gets this node's metadata
// in every round (the first heartbeat after a mended split brings this
// node back on its side); live members only every tenth round.
func TestFailedMembersGetMetadata(t *testing.T) {
	m, rec := watchRig(t, 4)
	m.metaChanged = time.Now().Add(-time.Hour)
	m.peers["n03"].state = StateFailed
	now := time.Now()
	for i := 1; i <= 9; i++ { // rounds 1..9: none is a tenth
		m.sendHeartbeats(now.Add(time.Duration(i) * ProfileLAN.Interval))
	}
	for i := 2; i <= 4; i++ {
		got := rec.sent[fmt.Sprintf("127.0.0.%d", i)]
		full := 0
		for _, hb := range got {
			if hb.Meta != nil {
				full++
			}
		}
		want := 0
		if i == 3 {
			want = len(got)
		}
		if len(got) != 9 || full != want {
			t.Errorf("n%02d: %d of %d heartbeats with metadata, want %d of 9", i, full, len(got), want)
		}
	}
}
