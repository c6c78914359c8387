package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/kardianos/service"
)

// logWriter is where a service's logs go: stderr, which systemd's journal
// and the Windows service wrapper capture.
func logWriter() io.Writer { return os.Stderr }

// lineHandler formats records with an inner slog handler into a buffer
// and hands each finished line to emit with the record's level: the
// journald prefixes and the Event Log are both built on it.
type lineHandler struct {
	mu    *sync.Mutex
	buf   *bytes.Buffer
	inner slog.Handler
	emit  func(slog.Level, []byte)
}

func newLineHandler(format string, opts *slog.HandlerOptions, emit func(slog.Level, []byte)) *lineHandler {
	h := &lineHandler{mu: &sync.Mutex{}, buf: &bytes.Buffer{}, emit: emit}
	if format == "json" {
		h.inner = slog.NewJSONHandler(h.buf, opts)
	} else {
		h.inner = slog.NewTextHandler(h.buf, opts)
	}
	return h
}

func (h *lineHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	h.emit(r.Level, h.buf.Bytes())
	return nil
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

// journalPrefix is the sd-daemon(3) priority prefix for a level: journald
// then files the line as err, warning, info or debug.
func journalPrefix(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// newJournalLogger writes to w with each line prefixed by its priority.
func newJournalLogger(w io.Writer, format string, opts *slog.HandlerOptions) *slog.Logger {
	return slog.New(newLineHandler(format, opts, func(l slog.Level, line []byte) {
		w.Write(append([]byte(journalPrefix(l)), line...))
	}))
}

// newEventLogLogger sends each record to the Windows Event Log with its
// severity (kardianos' service logger).
func newEventLogLogger(el service.Logger, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	return slog.New(newLineHandler("text", &slog.HandlerOptions{Level: lvl}, func(l slog.Level, line []byte) {
		msg := strings.TrimRight(string(line), "\n")
		switch {
		case l >= slog.LevelError:
			el.Error(msg)
		case l >= slog.LevelWarn:
			el.Warning(msg)
		default:
			el.Info(msg)
		}
	})), nil
}
