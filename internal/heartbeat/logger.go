package heartbeat

import (
	"context"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// newMemberlistLogger adapts memberlist's "[LEVEL] memberlist: msg" lines
// to slog, once, here. Warnings and errors are rate-limited per kind and
// source: memberlist logs one line per bad packet, so a stranger sending
// junk to the gossip port would otherwise flood the journal.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&slogWriter{l: l.With(slog.String("component", "memberlist")), lim: NewLineLimiter(10*time.Second, 1024)}, "", 0)
}

type slogWriter struct {
	l   *slog.Logger
	lim *LineLimiter
}

func (w *slogWriter) Write(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	lvl := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError} {
		if strings.HasPrefix(s, prefix) {
			lvl = l
			s = strings.TrimSpace(strings.TrimPrefix(s, prefix))
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	if lvl >= slog.LevelWarn {
		ok, suppressed := w.lim.Allow(lineKey(s), time.Now())
		if !ok {
			return len(b), nil
		}
		if suppressed > 0 {
			w.l.Log(context.Background(), lvl, s, slog.Int("suppressed_since_last", suppressed))
			return len(b), nil
		}
	}
	w.l.Log(context.Background(), lvl, s)
	return len(b), nil
}

// lineKey is a line's kind and source: the text before "from=" and the
// source's address without its port.
func lineKey(s string) string {
	i := strings.Index(s, "from=")
	if i < 0 {
		if len(s) > 48 {
			return s[:48]
		}
		return s
	}
	src := s[i+len("from="):]
	if j := strings.IndexAny(src, " \t"); j >= 0 {
		src = src[:j]
	}
	src = strings.TrimSuffix(src, ":")
	if host, _, err := net.SplitHostPort(src); err == nil {
		src = host
	}
	// The kind without its numbers (a message type, a size), so junk that
	// varies them is still one kind.
	kind := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, s[:i])
	return kind + src
}

// LineLimiter lets one line per key through each period and counts the
// rest; it forgets everything when it holds max keys (a stranger cycling
// source addresses cannot make it grow). The failover tier limits raft's
// lines with it too.
type LineLimiter struct {
	mu     sync.Mutex
	period time.Duration
	max    int
	seen   map[string]*limited
}

type limited struct {
	last       time.Time
	suppressed int
}

func NewLineLimiter(period time.Duration, max int) *LineLimiter {
	return &LineLimiter{period: period, max: max, seen: map[string]*limited{}}
}

// Allow says whether a line of key may be logged at now and, if so, how
// many of its kind were held back since the last one.
func (l *LineLimiter) Allow(key string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.seen[key]
	if e == nil {
		if len(l.seen) >= l.max {
			clear(l.seen)
		}
		l.seen[key] = &limited{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.period {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}
