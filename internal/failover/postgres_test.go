package failover

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/statefile"
	"github.com/clusterd/clusterd/internal/testenv"
)

// A rewind that began and did not finish (the agent killed during it: a
// restart storm) leaves data that a second rewind "repairs" into a standby
// that never streams (a chaos run: group degraded for good). The next
// start moves the data aside and copies the primary afresh; without the
// mark nothing moves.
func TestInterruptedRewindMovesTheDataAside(t *testing.T) {
	testenv.SkipUnderWine(t, testenv.WineLacksRenamedDirs)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte("15\n"), 0o600)
	p := &postgres{rc: config.ResourceConfig{DataDir: data}, passDir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := p.checkInterruptedRewind(); err != nil || p.empty() {
		t.Fatalf("no rewind mark: %v, data moved %v", err, p.empty())
	}
	if err := statefile.Write(p.rewindMark(), []byte("node2\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.Promote(context.Background(), Params{}); err == nil || !strings.Contains(err.Error(), "interrupted pg_rewind") {
		t.Fatalf("half-rewound data promoted: %v", err)
	}
	if err := p.checkInterruptedRewind(); err != nil {
		t.Fatal(err)
	}
	if !p.empty() {
		t.Fatal("the data of an interrupted rewind is still in place")
	}
	if _, err := os.Stat(p.rewindMark()); !os.IsNotExist(err) {
		t.Errorf("the rewind mark stays: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	kept := false
	for _, e := range ents {
		kept = kept || strings.HasPrefix(e.Name(), "data.rewind-interrupted-")
	}
	if !kept {
		t.Errorf("the data was not kept aside for the operator: %v", ents)
	}
}

// A standby that does not stream although it is on the primary's
// timeline is restarted once; the second time it is copied afresh. A
// standby that streamed in between starts the count again.
func TestStuckStandbyIsClonedOnTheSecondStart(t *testing.T) {
	p := &postgres{}
	if p.stuckAgain() {
		t.Fatal("copied afresh on the first start: a restart comes first")
	}
	if !p.stuckAgain() {
		t.Fatal("not copied afresh on the second start")
	}
	p.setStreaming(true)
	if p.stuckAgain() {
		t.Fatal("streamed in between, yet copied afresh at once")
	}
}
