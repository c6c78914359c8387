package agent

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testenv"
)

// TestAuditRotates: the audit trail is JSON lines in state_dir, rotated to
// audit.log.1 when it would pass auditMax, so two files bound it.
func TestAuditRotates(t *testing.T) {
	dir := testenv.TempDir(t)
	l := newAuditLog(dir)
	e := AuditEntry{Time: time.Now(), Node: "web1", User: "root (uid 0)", Via: "socket", Command: "clusterctl drain web2", Outcome: "ran"}
	if err := l.add(e); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, auditFile))
	var back AuditEntry
	sc := bufio.NewScanner(f)
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &back) != nil || back.Command != e.Command || back.Outcome != "ran" {
		t.Fatalf("first line: %q", sc.Text())
	}
	f.Close()
	e.Error = strings.Repeat("x", 4000)
	e.Outcome = "refused"
	for i := 0; i < 600; i++ {
		if err := l.add(e); err != nil {
			t.Fatal(err)
		}
	}
	cur, err1 := os.Stat(filepath.Join(dir, auditFile))
	old, err2 := os.Stat(filepath.Join(dir, auditFile+".1"))
	if err1 != nil || err2 != nil || cur.Size() > auditMax || old.Size() > auditMax {
		t.Fatalf("rotation: %v %v %v %v", cur, old, err1, err2)
	}
	if st, _ := os.Stat(filepath.Join(dir, auditFile)); testenv.UnixModes() && st.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v", st.Mode().Perm())
	}
}
