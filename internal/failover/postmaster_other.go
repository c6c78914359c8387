//go:build !linux

package failover

// processAlive cannot tell here; the caller asks pg_ctl.
func processAlive(int, string) (alive, known bool) { return false, false }
