package vip

import (
	"fmt"
	"net/netip"
)

// Owned is a plain virtual address held by one node at a time (a failover
// group's VIP, MSCS style): it sits on the owner's NIC with the NIC's own
// MAC, and gratuitous ARP tells the segment where it moved.
type Owned struct {
	Prefix    netip.Prefix
	Interface string
	held      bool
}

// NewOwned parses a group VIP.
func NewOwned(address, ifname string) (*Owned, error) {
	p, err := netip.ParsePrefix(address)
	if err != nil {
		return nil, fmt.Errorf("group VIP %q: %w", address, err)
	}
	return &Owned{Prefix: p, Interface: ifname}, nil
}

// Held reports whether this node holds the address now.
func (o *Owned) Held() bool { return o.held }

// Claim puts the address on the NIC and announces it. Claiming a held
// address announces it again.
func (o *Owned) Claim() error {
	if err := addOwned(o.Interface, o.Prefix); err != nil {
		return fmt.Errorf("adding %s to %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	o.held = true
	if err := announceOwned(o.Interface, o.Prefix.Addr()); err != nil {
		return fmt.Errorf("announcing %s on %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	return nil
}

// Release takes the address off the NIC; releasing an address that is not
// there is not an error (a restarted agent cleans up after a crash).
func (o *Owned) Release() error {
	o.held = false
	if err := delOwned(o.Interface, o.Prefix); err != nil {
		return fmt.Errorf("removing %s from %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	return nil
}
