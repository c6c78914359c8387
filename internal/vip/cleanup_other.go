//go:build !linux

package vip

import (
	"errors"
	"fmt"
	"net/netip"
)

// Leftover is an address an agent may have put on a NIC.
type Leftover struct {
	Interface string
	Prefix    netip.Prefix
}

// Cleanup: outside Linux there are no kernel tables or settings; an agent
// leaves at most the config's group VIP addresses, which are removed
// (netsh on Windows; removing one that is not there is not an error).
func Cleanup(addrs []Leftover, _ string) ([]string, error) {
	var done []string
	var errs []error
	for _, a := range addrs {
		if err := delOwned(a.Interface, a.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("removing %s from %s: %w", a.Prefix.Addr(), a.Interface, err))
			continue
		}
		done = append(done, fmt.Sprintf("%s is not on %s", a.Prefix.Addr(), a.Interface))
	}
	return done, errors.Join(errs...)
}
