//go:build !linux

package postmaster

import "errors"

// Alive cannot tell here; the caller asks pg_ctl.
func Alive(int) (alive, known bool) { return false, false }

// Stopped cannot tell here.
func Stopped(int) bool { return false }

// Freezing a server is Linux's: a postgresql owner is refused elsewhere
// (config.validateGroups).
var errNoFreeze = errors.New("freezing the server needs Linux")

// Freeze needs Linux.
func Freeze(int) error { return errNoFreeze }

// Thaw needs Linux.
func Thaw(int) error { return errNoFreeze }

// Kill needs Linux.
func Kill(int) error { return errNoFreeze }
