package vip

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"
)

// traceEnv turns on the ownership trace: every change of what the kernel
// is told to accept is logged with the whole bucket set, so that a new
// connection answered twice (a reset in the chaos campaign) can be traced
// to the nodes that held its bucket and when each took it. A debugging
// aid for developers (docs/operations.md): a line is ~3 KB per rule.
const traceEnv = "CLUSTERD_TRACE_OWNERSHIP"

// tracing wraps dp in the ownership trace when traceEnv is set.
func tracing(dp datapath, log *slog.Logger) datapath {
	if os.Getenv(traceEnv) == "" {
		return dp
	}
	return &traceDP{datapath: dp, log: log}
}

// traceDP logs each ownership change before it reaches the kernel and
// whether it did.
type traceDP struct {
	datapath
	log *slog.Logger
}

func (d *traceDP) Apply(o Ownership) error {
	err := d.datapath.Apply(o)
	d.log.Info("trace: apply", append(ownershipAttrs(o), slog.Any("error", err))...)
	return err
}

func (d *traceDP) Stage(owns ...Ownership) error {
	err := d.datapath.Stage(owns...)
	for i, o := range owns {
		d.log.Info("trace: stage", append(ownershipAttrs(o), slog.Int("step", i), slog.Any("error", err))...)
	}
	return err
}

func (d *traceDP) StageAt(at time.Time, o Ownership) error {
	err := d.datapath.StageAt(at, o)
	d.log.Info("trace: stage at", append(ownershipAttrs(o), slog.Time("at", at), slog.Any("error", err))...)
	return err
}

func (d *traceDP) Commit() error {
	err := d.datapath.Commit()
	d.log.Info("trace: commit", slog.Any("error", err))
	return err
}

func (d *traceDP) StopNew() error {
	err := d.datapath.StopNew()
	d.log.Info("trace: stop new", slog.Any("error", err))
	return err
}

// ownershipAttrs: per rule, the owned buckets as a base64 bitmap (bit b of
// byte b/8, least significant first), and the default hosts.
func ownershipAttrs(o Ownership) []any {
	var attrs []any
	keys := make([][2]int, 0, len(o.Owned))
	for k := range o.Owned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	for _, k := range keys {
		bm := make([]byte, (TableSize+7)/8)
		for _, b := range o.Owned[k] {
			if int(b) < TableSize {
				bm[b/8] |= 1 << (b % 8)
			}
		}
		attrs = append(attrs, slog.String(fmt.Sprintf("owned_%d_%d", k[0], k[1]), base64.StdEncoding.EncodeToString(bm)),
			slog.Int(fmt.Sprintf("count_%d_%d", k[0], k[1]), len(o.Owned[k])))
	}
	for vi, d := range o.Default {
		if d {
			attrs = append(attrs, slog.Int("default", vi))
		}
	}
	return attrs
}
