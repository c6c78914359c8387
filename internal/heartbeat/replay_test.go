package heartbeat

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// replayRig is a membership that knows one peer, n2, fed sealed heartbeats
// directly (no sockets).
type replayRig struct {
	t      *testing.T
	m      *Membership
	ev     *eventLog
	addr   [2]netip.Addr
	sealer *sealer
}

func newReplayRig(t *testing.T) *replayRig {
	key := make([]byte, 32)
	ev := &eventLog{}
	m, err := New(Options{Cluster: "test", Name: "n1", Priority: 1, Keys: [][]byte{key},
		Bind: "127.0.0.1", Profile: ProfileLAN, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	// Events go to the queue; drain it into the log as they come.
	r := &replayRig{t: t, m: m, ev: ev, addr: [2]netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.1.2")}, sealer: m.sealer}
	return r
}

// join makes n2 known as memberlist would, with incarnation boot.
func (r *replayRig) join(boot int64) {
	now := time.Now()
	p := &peer{name: "n2", addr: r.addr[0], state: StateActive, since: now, seen: [2]time.Time{now, now}, pathUp: [2]bool{true, true}}
	p.setMeta(Meta{Priority: 2, State: StateActive, Boot: boot, Backup: r.addr[1].String(), ProbePort: 1})
	r.m.peers["n2"] = p
}

func (r *replayRig) packet(boot int64, seq uint64, st State) []byte {
	meta := Meta{Priority: 2, State: st, Boot: boot, Backup: r.addr[1].String(), ProbePort: 1}
	b, err := json.Marshal(heartbeat{Name: "n2", Boot: boot, Seq: seq, V: seq, Interval: 50, Meta: &meta})
	if err != nil {
		r.t.Fatal(err)
	}
	return r.sealer.seal(b)
}

func (r *replayRig) deliver(path int, pkt []byte, now time.Time) error {
	return r.m.handleHeartbeat(path, pkt, r.addr[path], now)
}

func (r *replayRig) state() State { return r.m.peers["n2"].state }

// A captured run of heartbeats replayed after the sender died must not
// bring it back, on either path; nor may packets of an earlier incarnation.
func TestReplayedHeartbeatsDoNotReviveADeadNode(t *testing.T) {
	r := newReplayRig(t)
	const boot = 1000
	r.join(boot)
	now := time.Now()
	var captured [2][][]byte
	for seq := uint64(1); seq <= 60; seq++ { // 3 s of heartbeats on both paths
		for path := range 2 {
			pkt := r.packet(boot, seq, StateActive)
			captured[path] = append(captured[path], pkt)
			if err := r.deliver(path, pkt, now); err != nil {
				t.Fatalf("fresh heartbeat %d on path %d refused: %v", seq, path, err)
			}
		}
		now = now.Add(50 * time.Millisecond)
	}
	// kill -9: silence on every path until the checker fails it.
	now = now.Add(time.Second)
	r.m.check(now)
	if r.state() != StateFailed {
		t.Fatalf("n2 is %s after a second of silence, want failed", r.state())
	}
	// The replay, in order and shuffled across paths.
	for i := range captured[0] {
		for path := range 2 {
			err := r.deliver(path, captured[path][i], now)
			if !errors.Is(err, errStale) {
				t.Fatalf("replayed heartbeat %d on path %d: err %v, want stale", i+1, path, err)
			}
			// The other path's capture on this path: also not fresh.
			if err := r.deliver(1-path, captured[path][i], now); !errors.Is(err, errStale) {
				t.Fatalf("cross-path replay %d: err %v, want stale", i+1, err)
			}
		}
		now = now.Add(10 * time.Millisecond)
		r.m.check(now)
	}
	if r.state() != StateFailed {
		t.Fatalf("replay revived n2: %s", r.state())
	}
	if got := r.m.peers["n2"].seen[pathPrivate]; now.Sub(got) < time.Second {
		t.Fatalf("a replay refreshed the liveness of n2 (seen %v ago)", now.Sub(got))
	}
	// A packet of an earlier incarnation, even with a high sequence number.
	if err := r.deliver(pathPrivate, r.packet(boot-1, 1<<40, StateActive), now); !errors.Is(err, errStale) {
		t.Fatalf("earlier incarnation: err %v, want stale", err)
	}
	// The real node restarted: a new incarnation is heard at once.
	if err := r.deliver(pathPrivate, r.packet(boot+1, 1, StateActive), now); err != nil {
		t.Fatal(err)
	}
	if r.state() != StateActive {
		t.Fatalf("a restarted n2 is %s, want active", r.state())
	}
	// And now the old incarnation is stale for good.
	if err := r.deliver(pathBackup, r.packet(boot, 61, StateActive), now); !errors.Is(err, errStale) {
		t.Fatalf("old incarnation after a restart: err %v, want stale", err)
	}
	if r.m.Stats().Stale != 0 {
		t.Fatal("handleHeartbeat itself must not count (recvLoop does)")
	}
}

// A heartbeat sent before a leave but arriving after it (on the other path,
// or late on the same one) must not undo the leave.
func TestLateHeartbeatDoesNotUndoALeave(t *testing.T) {
	for _, tc := range []struct {
		name      string
		latePath  int
		lateFirst bool
	}{
		{"late on the backup path", pathBackup, false},
		{"late on the private path", pathPrivate, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplayRig(t)
			const boot = 7
			r.join(boot)
			now := time.Now()
			for seq := uint64(1); seq <= 5; seq++ {
				for path := range 2 {
					if err := r.deliver(path, r.packet(boot, seq, StateActive), now); err != nil {
						t.Fatal(err)
					}
				}
			}
			draining := r.packet(boot, 6, StateDraining) // sent, delayed in a queue
			for seq := uint64(7); seq <= 9; seq++ {      // the leave's three heartbeats
				if err := r.deliver(pathPrivate, r.packet(boot, seq, StateLeft), now); err != nil {
					t.Fatal(err)
				}
			}
			if r.state() != StateLeft {
				t.Fatalf("after the leave n2 is %s", r.state())
			}
			_ = r.deliver(tc.latePath, draining, now.Add(time.Millisecond))
			if r.state() != StateLeft {
				t.Fatalf("a late heartbeat turned a leave into %s", r.state())
			}
			// Even a newer-numbered packet of the same incarnation does not
			// revive a node that left: it has stopped.
			if err := r.deliver(pathBackup, r.packet(boot, 10, StateActive), now); err != nil {
				t.Fatal(err)
			}
			r.m.check(now.Add(2 * time.Second))
			if r.state() != StateLeft {
				t.Fatalf("n2 ended %s, want left", r.state())
			}
		})
	}
}

// A sender of the previous release has no incarnation field: its metadata
// (or the incarnation already known) stands in, and its sequence numbers
// still order it, so a rolling upgrade does not take it for failed.
func TestHeartbeatOfThePreviousRelease(t *testing.T) {
	r := newReplayRig(t)
	const boot = 42
	r.join(boot)
	old := func(seq uint64, withMeta bool) []byte {
		hb := heartbeat{Name: "n2", Seq: seq, V: seq, Interval: 50}
		if withMeta {
			hb.Meta = &Meta{Priority: 2, State: StateActive, Boot: boot, Backup: r.addr[1].String(), ProbePort: 1}
		}
		b, _ := json.Marshal(hb)
		return r.sealer.seal(b)
	}
	now := time.Now()
	for seq := uint64(1); seq <= 5; seq++ {
		if err := r.deliver(pathPrivate, old(seq, seq%2 == 0), now); err != nil {
			t.Fatalf("old-format heartbeat %d: %v", seq, err)
		}
	}
	if err := r.deliver(pathPrivate, old(3, false), now); !errors.Is(err, errStale) {
		t.Fatalf("replayed old-format heartbeat: %v, want stale", err)
	}
}

// The cluster protocol: N accepts N-1..N+1 (a rolling upgrade has two
// releases side by side); further apart is refused with what to do; a
// release before the field counts as protocol 1.
func TestProtocolClash(t *testing.T) {
	for _, tc := range []struct {
		p    int
		want string
	}{
		{ProtocolVersion, ""}, {ProtocolVersion - 1, ""}, {ProtocolVersion + 1, ""},
		{ProtocolVersion - 2, "too old"}, {ProtocolVersion + 2, "too new"},
	} {
		got := protocolClash("web9", tc.p)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("protocol %d: %q, want %q", tc.p, got, tc.want)
		}
	}
	if (Meta{}).proto() != 1 || (Meta{Proto: 5}).proto() != 5 {
		t.Error("a release without the field must count as protocol 1")
	}
	if protocolClash("old", ProtocolVersion-1) != "" {
		t.Error("this release must accept the previous one (a rolling upgrade)")
	}
}
