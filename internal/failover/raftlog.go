package failover

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

var hclogLevels = []struct {
	tag   string
	level slog.Level
}{{"[WARN]", slog.LevelWarn}, {"[ERROR]", slog.LevelError}, {"[DEBUG]", slog.LevelDebug}, {"[TRACE]", slog.LevelDebug}}

// raftRepeatWindow: how long raft's warnings and errors about one peer are
// logged once. While a voter is down, raft logs a failed heartbeat every
// few hundred milliseconds and a failed append or vote request on every
// try (about 400 ERROR lines in 10 minutes of the chaos campaign's
// faults); one line per peer and kind every 10 s, with the count of those
// left out, says the same.
const raftRepeatWindow = 10 * time.Second

// raftRepeatKeys bounds the limiter's memory: keys are a raft message and
// a peer, and peers are authenticated voters, but a bound costs nothing.
const raftRepeatKeys = 256

// hclogWriter sends raft's hclog lines to slog at their own level.
type hclogWriter struct {
	log *slog.Logger

	repeats *heartbeat.LineLimiter // safe for raft's several goroutines
}

func newHclogWriter(log *slog.Logger) *hclogWriter {
	return &hclogWriter{log: log, repeats: heartbeat.NewLineLimiter(raftRepeatWindow, raftRepeatKeys)}
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		line := sc.Text()
		lvl := slog.LevelInfo
		for _, t := range hclogLevels {
			if strings.Contains(line, t.tag) {
				lvl = t.level
			}
		}
		// Drop hclog's own time stamp and level: slog adds them.
		if i := strings.Index(line, "]"); i >= 0 && i < 40 {
			line = strings.TrimSpace(line[i+1:])
		}
		attrs := []any{slog.String("component", "quorum")}
		if lvl >= slog.LevelWarn {
			if key := raftRepeatKey(line); key != "" {
				ok, held := w.repeats.Allow(key, time.Now())
				if !ok {
					continue
				}
				if held > 0 {
					attrs = append(attrs, slog.Int("suppressed_since_last", held))
				}
			}
		}
		w.log.Log(context.Background(), lvl, line, attrs...)
	}
	return len(p), nil
}

var _ io.Writer = (*hclogWriter)(nil)

// raftRepeatKey names what a raft line is about when it is about one peer:
// its message and the peer ("failed to heartbeat to|peer=node2"). Lines
// that name no peer (a step-down, an election) are always logged: "".
func raftRepeatKey(line string) string {
	line = strings.TrimPrefix(line, "raft: ")
	msg, fields, ok := strings.Cut(line, ": ")
	if !ok {
		return ""
	}
	for _, k := range []string{"peer=", "target=", "from=", "candidate="} {
		if v, ok := hclogValue(fields, k); ok {
			return msg + "|" + k + v
		}
	}
	return ""
}

// hclogValue finds key= in hclog's "k=v k2=\"v w\"" fields and returns its
// value, quoted values whole.
func hclogValue(fields, key string) (string, bool) {
	for rest := fields; ; {
		i := strings.Index(rest, key)
		if i < 0 {
			return "", false
		}
		if i > 0 && rest[i-1] != ' ' {
			rest = rest[i+len(key):]
			continue
		}
		v := rest[i+len(key):]
		if strings.HasPrefix(v, `"`) {
			if end := strings.Index(v[1:], `"`); end >= 0 {
				return v[1 : end+1], true
			}
			return v[1:], true
		}
		if end := strings.IndexByte(v, ' '); end >= 0 {
			v = v[:end]
		}
		return v, true
	}
}
