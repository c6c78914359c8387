//go:build !linux

package failover

import "errors"

// processAlive cannot tell here; the caller asks pg_ctl.
func processAlive(int, string) (alive, known bool) { return false, false }

// processStopped cannot tell here.
func processStopped(int) bool { return false }

// Freezing a server is Linux's: a postgresql owner is refused elsewhere
// (config.validateGroups).
var errNoFreeze = errors.New("freezing the server needs Linux")

func freezeServer(int) error { return errNoFreeze }
func thawServer(int) error   { return errNoFreeze }
func killServer(int) error   { return errNoFreeze }
