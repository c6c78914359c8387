// Package statefile writes the small files an agent keeps in node.state_dir
// (drain state, incarnation) so that they survive a crash or a power cut
// whole or not at all, and reports every failure: state an operator set
// must never be lost silently.
package statefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Write replaces path with data atomically and durably: a temporary file
// in the same directory is written and synced, renamed over path, and the
// directory is synced. On any error path is left as it was.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(dir)
}

// Remove deletes path durably; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// NextIncarnation returns a number greater than every earlier run's on this
// node and records it in dir: peers take heartbeats of an older incarnation
// for replays, so it must grow even if the clock stepped back between
// runs. It is the current time in nanoseconds unless that is not greater.
func NextIncarnation(dir string) (int64, error) {
	path := filepath.Join(dir, "incarnation")
	next := time.Now().UnixNano()
	if b, err := os.ReadFile(path); err == nil {
		prev, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return next, fmt.Errorf("reading %s: %w (remove it if the clock is right)", path, perr)
		}
		if prev >= next {
			next = prev + 1
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return next, fmt.Errorf("reading %s: %w", path, err)
	}
	return next, Write(path, []byte(strconv.FormatInt(next, 10)+"\n"))
}
