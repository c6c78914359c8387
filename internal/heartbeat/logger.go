package heartbeat

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger adapts memberlist's "[LEVEL] memberlist: msg" lines
// to slog, once, here.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l.With(slog.String("component", "memberlist"))}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
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
	w.l.Log(context.Background(), lvl, s)
	return len(b), nil
}
