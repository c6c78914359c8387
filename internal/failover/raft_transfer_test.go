package failover

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// gatedTransport is an in-memory raft transport whose RPCs to chosen peers
// either fail at once (a cut cable) or hang until released (a peer that
// accepted the connection and then went silent).
type gatedTransport struct {
	*raft.InmemTransport
	release chan struct{}

	mu      sync.Mutex
	cut     map[raft.ServerAddress]bool
	hang    map[raft.ServerAddress]bool
	hanging int // RPCs held now
}

func newGatedTransport(addr raft.ServerAddress, release chan struct{}) *gatedTransport {
	_, tr := raft.NewInmemTransport(addr)
	return &gatedTransport{InmemTransport: tr, release: release,
		cut: map[raft.ServerAddress]bool{}, hang: map[raft.ServerAddress]bool{}}
}

var errGated = errors.New("gated by the test")

// gate holds or fails an RPC to target; only appends (heartbeats and
// replication) are held, other RPCs to a held target fail.
func (g *gatedTransport) gate(target raft.ServerAddress, append bool) error {
	g.mu.Lock()
	cut, hang := g.cut[target], g.hang[target]
	g.mu.Unlock()
	if hang && append {
		g.mu.Lock()
		g.hanging++
		g.mu.Unlock()
		<-g.release
		return errGated
	}
	if cut || hang {
		return errGated
	}
	return nil
}

func (g *gatedTransport) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hanging
}

func (g *gatedTransport) setCut(target raft.ServerAddress, on bool) {
	g.mu.Lock()
	g.cut[target] = on
	g.mu.Unlock()
}

// AppendEntriesPipeline is refused so that every append goes through the
// gated AppendEntries.
func (g *gatedTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// call runs an RPC to target once the gate lets it through.
func (g *gatedTransport) call(target raft.ServerAddress, append bool, rpc func() error) error {
	if err := g.gate(target, append); err != nil {
		return err
	}
	return rpc()
}

func (g *gatedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return g.call(target, true, func() error { return g.InmemTransport.AppendEntries(id, target, args, resp) })
}

func (g *gatedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return g.call(target, false, func() error { return g.InmemTransport.RequestVote(id, target, args, resp) })
}

func (g *gatedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return g.call(target, false, func() error { return g.InmemTransport.RequestPreVote(id, target, args, resp) })
}

func (g *gatedTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return g.call(target, false, func() error { return g.InmemTransport.TimeoutNow(id, target, args, resp) })
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("no snapshots in this test")
}
func (nopFSM) Restore(io.ReadCloser) error { return nil }

// TestTransferToSilentPeerDoesNotWedgeRaft replays, with the real raft
// library, the wedge of hashicorp/raft#696 that the 1-hour campaign hit
// (stop 22): a leader asks twice in one term to hand leadership to a voter
// that does not answer, then loses leadership. In raft v1.7.3 as released
// the second request blocks forever on the replication goroutine's
// one-slot trigger channel, its "transfer in progress" flag stays set, and
// when that node leads again it refuses every Apply (and so every barrier
// the arbiter needs) for good. go.mod replaces raft with the patched copy
// in third_party/raft, which ends the request on its stop channel; this
// test fails without that patch.
func TestTransferToSilentPeerDoesNotWedgeRaft(t *testing.T) {
	const a, b, c = "a", "b", "c"
	release := make(chan struct{})
	trans := map[raft.ServerAddress]*gatedTransport{}
	for _, id := range []raft.ServerAddress{a, c} {
		trans[id] = newGatedTransport(id, release)
	}
	trans[a].Connect(c, trans[c].InmemTransport)
	trans[c].Connect(a, trans[a].InmemTransport)
	// b is a voter that never runs: from a, its RPCs hang (the silent
	// target); from c, they fail at once.
	trans[a].hang[b] = true
	trans[c].cut[b] = true

	servers := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: a, Address: a},
		{Suffrage: raft.Voter, ID: b, Address: b},
		{Suffrage: raft.Voter, ID: c, Address: c},
	}}
	nodes := map[raft.ServerAddress]*raft.Raft{}
	for _, id := range []raft.ServerAddress{a, c} {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(id)
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans[id], servers); err != nil {
			t.Fatalf("bootstrap %s: %v", id, err)
		}
		r, err := raft.NewRaft(conf, nopFSM{}, store, store, snaps, trans[id])
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		nodes[id] = r
	}
	defer func() {
		close(release)
		for _, r := range nodes {
			_ = r.Shutdown().Error()
		}
	}()

	// makeALead waits for a leader and, if it is c, hands leadership to a.
	makeALead := func(step string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if nodes[a].State() == raft.Leader {
				return
			}
			if nodes[c].State() == raft.Leader {
				_ = nodes[c].LeadershipTransferToServer(a, a).Error()
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: a did not become leader within 10 s", step)
	}

	makeALead("start")
	if err := nodes[a].Apply([]byte("x"), time.Second).Error(); err != nil {
		t.Fatalf("apply on a fresh leader: %v", err)
	}
	// Both of a's goroutines that send to b (heartbeat and replication)
	// are stuck in an RPC to it, as to a peer that went silent with its
	// connection open: nothing reads the replication goroutine's trigger
	// channel now.
	for deadline := time.Now().Add(5 * time.Second); trans[a].held() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a's RPCs to b: %d held, want 2 (heartbeat and replication)", trans[a].held())
		}
	}
	// Two transfers to the silent voter in one term, as the arbiter's
	// 2 s retry makes them. Both time out. (raft answers a transfer's
	// future a moment before it clears its "in progress" flag: a request
	// in that moment is refused and does not count.)
	for i := 1; i <= 2; i++ {
		for {
			err := nodes[a].LeadershipTransferToServer(b, b).Error()
			if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err == nil {
				t.Fatalf("transfer %d to a silent voter reported success", i)
			}
			break
		}
	}
	// a loses leadership (its link to c is cut), then the link heals and
	// a leads again in a later term.
	trans[a].setCut(c, true)
	trans[c].setCut(a, true)
	deadline := time.Now().Add(5 * time.Second)
	for nodes[a].State() == raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("a stayed leader with its only reachable voter cut off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	trans[a].setCut(c, false)
	trans[c].setCut(a, false)
	makeALead("after the heal")

	if err := nodes[a].Apply([]byte("y"), time.Second).Error(); err != nil {
		t.Fatalf("a leads again but cannot commit: %v (hashicorp/raft#696: is go.mod's replace of raft by third_party/raft gone?)", err)
	}
}
