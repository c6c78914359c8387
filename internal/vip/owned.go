package vip

import (
	"fmt"
	"net/netip"
	"time"
)

// Owned is a plain virtual address held by one node at a time (a failover
// group's VIP, MSCS style): it sits on the owner's NIC with the NIC's own
// MAC, and gratuitous ARP tells the segment where it moved.
type Owned struct {
	Prefix    netip.Prefix
	Interface string
	held      bool
	// The gratuitous ARP repeats of the last claim: stopped and joined at
	// release.
	stopAnnounce chan struct{}
	announced    chan struct{}
}

// NewOwned parses a group VIP.
func NewOwned(address, ifname string) (*Owned, error) {
	p, err := netip.ParsePrefix(address)
	if err != nil {
		return nil, fmt.Errorf("group VIP %q: %w", address, err)
	}
	if err := openFence(); err != nil {
		return nil, fmt.Errorf("group VIP %s: %w", address, err)
	}
	return &Owned{Prefix: p, Interface: ifname}, nil
}

// Held reports whether this node holds the address now.
func (o *Owned) Held() bool { return o.held }

// Claim puts the address on the NIC, fenced by a kernel-side lease that
// runs out at until, and announces it.
func (o *Owned) Claim(until time.Time) error {
	if err := o.Renew(until); err != nil {
		return err
	}
	if err := addOwned(o.Interface, o.Prefix); err != nil {
		return fmt.Errorf("adding %s to %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	o.held = true
	o.stopRepeats()
	o.stopAnnounce, o.announced = make(chan struct{}), make(chan struct{})
	if err := announceOwned(o.Interface, o.Prefix.Addr(), o.stopAnnounce, o.announced); err != nil {
		return fmt.Errorf("announcing %s on %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	return nil
}

// Renew moves the kernel-side lease's end to until.
func (o *Owned) Renew(until time.Time) error {
	d := time.Until(until)
	if d <= 0 {
		return fmt.Errorf("lease for %s already ran out", o.Prefix.Addr())
	}
	if err := fenceOwned(o.Prefix.Addr(), d); err != nil {
		return fmt.Errorf("fencing %s: %w", o.Prefix.Addr(), err)
	}
	return nil
}

// Release takes the address off the NIC and ends its kernel lease;
// releasing an address that is not there is not an error (a restarted
// agent cleans up after a crash).
func (o *Owned) Release() error {
	o.held = false
	o.stopRepeats()
	if err := delOwned(o.Interface, o.Prefix); err != nil {
		return fmt.Errorf("removing %s from %s: %w", o.Prefix.Addr(), o.Interface, err)
	}
	if err := fenceOwned(o.Prefix.Addr(), 0); err != nil {
		return fmt.Errorf("fencing %s: %w", o.Prefix.Addr(), err)
	}
	return nil
}

// stopRepeats ends the last claim's announcement repeats and waits for
// them.
func (o *Owned) stopRepeats() {
	if o.stopAnnounce != nil {
		close(o.stopAnnounce)
		<-o.announced
		o.stopAnnounce, o.announced = nil, nil
	}
}
