package failover

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
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

// A standby that followed a promotion has replayed the new timeline before
// a restartpoint moves its checkpoint onto it: read from the checkpoint
// alone, a chaos run took it for forked off the primary, rewound it, and
// the rewind's crash recovery forked it for real (group degraded for good).
func TestDataTimeline(t *testing.T) {
	ctl := func(state string, ckpt, replayed int) string {
		return "pg_control version number:            1300\n" +
			"Database cluster state:               " + state + "\n" +
			"Latest checkpoint location:           0/311A638\n" +
			"Latest checkpoint's TimeLineID:       " + strconv.Itoa(ckpt) + "\n" +
			"Latest checkpoint's PrevTimeLineID:   " + strconv.Itoa(ckpt) + "\n" +
			"Minimum recovery ending location:     0/31499F8\n" +
			"Min recovery ending loc's timeline:   " + strconv.Itoa(replayed) + "\n"
	}
	for _, c := range []struct {
		name, out string
		want      int
	}{
		{"standby killed after following a promotion", ctl("in archive recovery", 6, 7), 7},
		{"standby stopped cleanly after following one", ctl("shut down in recovery", 6, 7), 7},
		{"standby on its checkpoint's timeline", ctl("in archive recovery", 6, 6), 6},
		{"standby that has replayed nothing yet", ctl("in archive recovery", 6, 0), 6},
		{"primary shut down (no recovery point)", ctl("shut down", 6, 0), 6},
		{"primary killed: the recovery point is not a standby's", ctl("in production", 5, 7), 5},
	} {
		got, err := dataTimeline(c.out)
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.name, got, err, c.want)
		}
	}
	if _, err := dataTimeline("Database cluster state: in production\n"); err == nil {
		t.Error("no timeline in the output, yet no error")
	}
}

// pg_rewind's crash recovery of a standby runs without standby.signal and
// writes a checkpoint the primary does not have; if it then rewinds
// nothing, the data has left the primary's history.
func TestRecoveredOnOwn(t *testing.T) {
	for _, c := range []struct {
		out  string
		want bool
	}{
		{"pg_rewind: executing \"/usr/lib/postgresql/15/bin/postgres\" for target server to complete crash recovery\n...\npg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required", true},
		{"pg_rewind: executing \"postgres\" for target server to complete crash recovery\npg_rewind: servers diverged at WAL location 0/3137DB8 on timeline 6\npg_rewind: Done!", false},
		{"pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required", false},
	} {
		if got := recoveredOnOwn(c.out); got != c.want {
			t.Errorf("%q: got %v, want %v", c.out, got, c.want)
		}
	}
}

// The tools whose output is parsed run in the C locale whatever the
// agent's; initdb and pg_ctl keep the agent's (the cluster's collation and
// the server's locale come from it).
func TestToolEnv(t *testing.T) {
	agent := []string{"PATH=/usr/bin", "LANG=de_DE.UTF-8", "LC_ALL=de_DE.UTF-8", "LC_MESSAGES=de_DE.UTF-8", "LANGUAGE=de:en"}
	for _, c := range []struct {
		tool     string
		want     []string
		notWants []string
	}{
		{"pg_controldata", []string{"LC_ALL=C", "LANGUAGE=", "LANG=de_DE.UTF-8", "PATH=/usr/bin"}, []string{"LC_ALL=de_DE.UTF-8", "LC_MESSAGES=de_DE.UTF-8", "LANGUAGE=de:en"}},
		{"pg_rewind", []string{"LC_ALL=C", "LANGUAGE="}, []string{"LC_ALL=de_DE.UTF-8", "LANGUAGE=de:en"}},
		{"psql", []string{"LC_ALL=C"}, []string{"LC_ALL=de_DE.UTF-8"}},
		{"initdb", []string{"LC_ALL=de_DE.UTF-8", "LANGUAGE=de:en"}, []string{"LC_ALL=C"}},
		{"pg_ctl", []string{"LC_ALL=de_DE.UTF-8", "LC_MESSAGES=de_DE.UTF-8"}, []string{"LC_ALL=C"}},
		{"pg_basebackup", []string{"LANG=de_DE.UTF-8"}, []string{"LC_ALL=C"}},
	} {
		env := toolEnv(agent, c.tool, "/run/pgpass")
		has := map[string]bool{}
		for _, kv := range env {
			has[kv] = true
		}
		for _, w := range append(c.want, "PGPASSFILE=/run/pgpass", "PGCONNECT_TIMEOUT=5") {
			if !has[w] {
				t.Errorf("%s: %q missing from %q", c.tool, w, env)
			}
		}
		for _, w := range c.notWants {
			if has[w] {
				t.Errorf("%s: %q in %q", c.tool, w, env)
			}
		}
	}
}
