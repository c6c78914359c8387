package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/ui"
	"github.com/clusterd/clusterd/internal/vocab"
)

// Audit trail of operator commands, in node.state_dir: the event ring
// forgets after 1,000 events and a restart, an audit must not.
const (
	auditFile = "audit.log"
	// auditMax: the file is rotated (to audit.log.1, replacing it) when it
	// would grow past this, so two files bound what a command storm uses.
	auditMax = 1 << 20
)

// AuditEntry is one line of audit.log (JSON lines).
type AuditEntry struct {
	Time    time.Time `json:"time"`
	Node    string    `json:"node"`
	User    string    `json:"user"`
	Via     string    `json:"via"` // "socket" or "console"
	Command string    `json:"command"`
	Outcome string    `json:"outcome"` // "ran" or "refused"
	Error   string    `json:"error,omitempty"`
}

type auditLog struct {
	mu   sync.Mutex
	path string
}

func (l *auditLog) add(e AuditEntry) error {
	if l == nil || l.path == "" {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if st, err := os.Stat(l.path); err == nil && st.Size()+int64(len(b)) > auditMax {
		if err := os.Rename(l.path, l.path+".1"); err != nil {
			return fmt.Errorf("rotating %s: %w", l.path, err)
		}
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", l.path, err)
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("writing %s: %w", l.path, werr)
	}
	return cerr
}

func newAuditLog(stateDir string) *auditLog {
	return &auditLog{path: filepath.Join(stateDir, auditFile)}
}

// caller says who sent a control request: a console operator (by the
// token's name), or the socket peer's user (from its credentials, not from
// anything the caller says).
func caller(r *http.Request) (who, via string) {
	if o, ok := ui.OperatorFrom(r.Context()); ok {
		return fmt.Sprintf("%s (console, from %s)", o.Name, o.Remote), "console"
	}
	uid, ok := r.Context().Value(uidKey).(int)
	if !ok || uid < 0 {
		return "an administrator", "socket"
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid), "socket"
	}
	return fmt.Sprintf("uid %d", uid), "socket"
}

// operator records a mutating command once it has run or been refused:
// an operator event, a log line and a line of the audit file. Call the
// returned func with the command's error.
func (a *Agent) operator(r *http.Request, what string) func(error) {
	who, via := caller(r)
	return func(err error) {
		node := a.config().Node.Name
		e := AuditEntry{Time: time.Now(), Node: node, User: who, Via: via, Command: "clusterctl " + what, Outcome: "ran"}
		detail := fmt.Sprintf("%s ran clusterctl %s", who, what)
		if err != nil {
			e.Outcome, e.Error = "refused", err.Error()
			detail = fmt.Sprintf("%s: clusterctl %s refused: %v", who, what, err)
		}
		a.record(api.Event{Time: e.Time, Type: vocab.Operator, Node: node, Detail: detail})
		a.log.Info("operator command", "user", who, "via", via, "command", e.Command, "outcome", e.Outcome, "error", e.Error)
		if aerr := a.audit.add(e); aerr != nil {
			a.log.Warn("cannot write the audit trail", "error", aerr)
		}
	}
}
