//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// localWriter inserts ids from base on through a node's own PostgreSQL
// socket, as an application on the database server would, and remembers
// the acknowledged ones.
type localWriter struct {
	n     *testnet.Net
	nd    *testnet.Node
	mu    sync.Mutex
	next  int
	acked []int
	at    []time.Time
	stop  chan struct{}
	done  chan struct{}
}

func (w *localWriter) start() {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	sock := filepath.Join(w.n.Dir, w.nd.Name+".state", "pg-db")
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			w.next++
			id := w.next
			w.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", w.nd.NS, "runuser", "-u", "postgres", "--", pgBin+"/psql", "-X", "-q",
				"-h", sock, "-U", "postgres", "-d", "postgres", "-c", fmt.Sprintf("INSERT INTO t VALUES (%d)", id))
			cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=1")
			err := cmd.Run()
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, id)
				w.at = append(w.at, time.Now())
				w.mu.Unlock()
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
}

func (w *localWriter) halt() { close(w.stop); <-w.done }

func (w *localWriter) ackedAfter(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	for _, a := range w.at {
		if a.After(t) {
			k++
		}
	}
	return k
}

// TestPostgresRegainedLeaseKeepsWaiting: the primary loses its lease (no
// quorum: both other voters hang) and is fenced, then gets its group back
// under the same epoch when one voter returns. The quorum's record still
// names its standby as synchronous, so the restarted primary must not
// acknowledge a commit the standby does not have: the moment its first
// local write is acknowledged, the primary is cut off and the standby's
// agent resumes, so the standby may be promoted; every write acknowledged
// must be in the table of whichever server is primary at the end. (Found
// by the chaos campaign, seed 2: the primary restarted with no
// synchronous standby and 7 acknowledged writes were lost.)
func TestPostgresRegainedLeaseKeepsWaiting(t *testing.T) {
	n, _ := startPG(t)
	node1, node2, node3 := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	waitGroup(t, n, node3, 60*time.Second, "db online on node1 with node2 as synchronous standby", func(o, s, r, sb string) bool {
		return o == "node1" && s == "online" && r == "sync" && sb == "node2"
	})
	createAppTable(t, n, node1)
	w := &localWriter{n: n, nd: node1}
	w.start()
	defer func() {
		if w.stop != nil {
			select {
			case <-w.stop:
			default:
				w.halt()
			}
		}
	}()
	n.WaitFor(10*time.Second, "local writes acknowledged", func() bool { return w.ackedAfter(time.Time{}) > 10 })

	// Both other voters hang: node1 has no quorum, its lease runs out and
	// it fences itself (its server stops).
	node2.Pause()
	node3.Pause()
	n.WaitFor(10*time.Second, "node1 fenced", func() bool { return strings.Contains(node1.Log(), "lease lost: fencing") })
	fenced := time.Now()
	// One voter comes back: node1 and node3 are a quorum again, and node1
	// still owns the group under the same epoch.
	node3.Resume()
	n.WaitFor(20*time.Second, "a local write acknowledged after the fence", func() bool { return w.ackedAfter(fenced) > 0 })
	// At once: node1 cut off, node2's agent back. The record may let
	// node2 take over now.
	node1.Cable(testnet.Public, false)
	node1.Cable(testnet.Private, false)
	node2.Resume()
	cut := time.Now()
	t.Logf("first local write after the fence acknowledged %v after it", cut.Sub(fenced).Round(time.Millisecond))
	time.Sleep(8 * time.Second)
	s, err := node3.Status()
	if err == nil && len(s.Groups) == 1 {
		t.Logf("8 s after the cut: group %s on %s (epoch %d, reason %q)", s.Groups[0].State, s.Groups[0].Owner, s.Groups[0].Epoch, s.Groups[0].Reason)
	}
	w.halt()
	node1.Cable(testnet.Public, true)
	node1.Cable(testnet.Private, true)
	waitGroup(t, n, node3, 60*time.Second, "db online again", func(o, s, r, sb string) bool {
		return s == "online" || s == "degraded"
	})
	got := rows(t, n)
	w.mu.Lock()
	defer w.mu.Unlock()
	var lost []int
	for _, id := range w.acked {
		if !got[id] {
			lost = append(lost, id)
		}
	}
	t.Logf("%d local writes acknowledged, %d rows in the table", len(w.acked), len(got))
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost)
	}
}
