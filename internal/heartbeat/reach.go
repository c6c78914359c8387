package heartbeat

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reachability is mutual. Every heartbeat names the members its sender
// does not hear: Unheard (silent for a timeout, but another member still
// hears them, so the sender keeps them in the cluster: a one-way fault or
// a fault between two nodes only) and Down (members it failed). From the
// lists of the members it hears, every node knows the same pairs that
// cannot talk, and agreeReach leaves the same nodes out on every node:
// a pair that cannot talk never both serve, whatever the direction of the
// fault. A node that a member it hears has failed (its Down list names
// this node) stops serving at once: that member takes its buckets.

// reachMember is what this node knows of one member's reachability.
type reachMember struct {
	Name string
	Rank int // its priority: the lower number is kept when two tie
	// Unheard: the members it reports it does not hear, with when this
	// node first saw each in its reports (for this node itself: since when
	// it does not hear them). Only members this node hears (or itself)
	// have a current list.
	Unheard map[string]time.Time
}

// agreeReach says which members are left out: of every pair that cannot
// talk (one of them reports the other unheard, for at least hold) one
// goes, the member in the most such pairs first, then the one with the
// larger rank, then the larger name. members are the members this node
// counts in the cluster (itself included): the same lists give the same
// answer on every node, whatever their order.
//
// hold keeps a pair out of the count until it has lasted that long: when
// a member dies its survivors time it out a few milliseconds apart, and
// for that while the first one looks like a node that alone does not hear
// it. A pair that lasts past hold is a fault between two live nodes.
func agreeReach(members []reachMember, now time.Time, hold time.Duration) map[string]bool {
	in := map[string]*reachMember{}
	for i := range members {
		in[members[i].Name] = &members[i]
	}
	type pair struct{ a, b string } // a < b
	pairs := map[pair]bool{}
	for _, m := range members {
		for name, since := range m.Unheard {
			if _, ok := in[name]; !ok || name == m.Name || now.Sub(since) < hold {
				continue
			}
			p := pair{m.Name, name}
			if p.b < p.a {
				p.a, p.b = p.b, p.a
			}
			pairs[p] = true
		}
	}
	out := map[string]bool{}
	for len(pairs) > 0 {
		degree := map[string]int{}
		for p := range pairs {
			degree[p.a]++
			degree[p.b]++
		}
		names := make([]string, 0, len(degree))
		for n := range degree {
			names = append(names, n)
		}
		// The first is the one to leave out.
		slices.SortFunc(names, func(x, y string) int {
			if c := cmp.Compare(degree[y], degree[x]); c != 0 {
				return c
			}
			if c := cmp.Compare(in[y].Rank, in[x].Rank); c != 0 {
				return c
			}
			return cmp.Compare(y, x)
		})
		gone := names[0]
		out[gone] = true
		for p := range pairs {
			if p.a == gone || p.b == gone {
				delete(pairs, p)
			}
		}
	}
	return out
}

// ReachProto is the first protocol whose heartbeats carry the Unheard and
// Down lists. A member of an older one neither vouches for a member nor
// reports a pair: it is not asked.
const ReachProto = 4

// reports says whether this node has the member's current lists: it hears
// it and it sends them.
func (m *Membership) reports(p *peer) bool {
	return !p.state.Down() && !p.deaf && p.meta.proto() >= ReachProto
}

// unheardListsLocked is what this node's heartbeats say it does not hear.
func (m *Membership) unheardListsLocked() (unheard, down []string) {
	for _, p := range m.peers {
		switch {
		case p.state == StateFailed:
			down = append(down, p.name)
		case p.deaf && !p.state.Down():
			unheard = append(unheard, p.name)
		}
	}
	slices.Sort(unheard)
	slices.Sort(down)
	return unheard, down
}

// takeReachLocked records a fresh heartbeat's lists.
func (m *Membership) takeReachLocked(p *peer, unheard, down []string, now time.Time) {
	if len(unheard) == 0 {
		p.unheard = nil
	} else {
		next := make(map[string]time.Time, len(unheard))
		for _, n := range unheard {
			if since, ok := p.unheard[n]; ok {
				next[n] = since
			} else {
				next[n] = now
			}
		}
		p.unheard = next
	}
	if len(down) == 0 {
		p.down = nil
		return
	}
	p.down = make(map[string]bool, len(down))
	for _, n := range down {
		p.down[n] = true
	}
}

// heardLocked marks a member heard again (any authentic heartbeat).
func (m *Membership) heardLocked(p *peer, now time.Time) {
	if p.deaf {
		p.deaf = false
		m.reachChangedLocked(now)
	}
}

// deafLocked marks a member silent on every path.
func (m *Membership) deafLocked(p *peer, now time.Time) {
	if !p.deaf {
		p.deaf, p.deafSince = true, now
		m.reachChangedLocked(now)
	}
}

// reachChangedLocked: this node's lists changed; every member hears it at
// once (a round out of turn), not an interval later.
func (m *Membership) reachChangedLocked(now time.Time) {
	m.reachChanged = now
	select {
	case m.sendNow <- struct{}{}:
	default:
	}
}

// voucherLocked names a member that still hears p (its current lists do
// not name p), or "": p is silent here only, so it stays in the cluster
// and the pair is settled by agreement, not by failing p. Above
// ScaleAbove members only p's watchers hear it often enough to say.
func (m *Membership) voucherLocked(p *peer) string {
	var watchers map[string]bool
	live := []string{m.opts.Name}
	for _, q := range m.peers {
		if !q.state.Down() {
			live = append(live, q.name)
		}
	}
	if m.opts.Profile.IntervalFor(len(live)) > m.opts.Profile.Interval {
		watchers = watchersOf(p.name, live, m.opts.Profile.Watchers)
	}
	for _, q := range m.peers {
		if q == p || !m.reports(q) || watchers != nil && !watchers[q.name] {
			continue
		}
		if _, un := q.unheard[p.name]; !un && !q.down[p.name] {
			return q.name
		}
	}
	return ""
}

// agreeLocked works out who is left out (agreeReach) and says what changed.
func (m *Membership) agreeLocked(now time.Time) {
	self := m.opts.Name
	downBy := ""
	pairs := false
	for _, p := range m.peers {
		if p.deaf && !p.state.Down() {
			pairs = true
		}
		if m.reports(p) {
			if p.down[self] {
				downBy = p.name
			}
			if len(p.unheard) > 0 {
				pairs = true
			}
		}
	}
	var cut map[string]bool
	if pairs {
		members := []reachMember{{Name: self, Rank: m.meta.Priority, Unheard: map[string]time.Time{}}}
		for _, p := range m.peers {
			if p.state.Down() {
				continue
			}
			if p.deaf {
				members[0].Unheard[p.name] = p.deafSince
			}
			rm := reachMember{Name: p.name, Rank: p.meta.Priority}
			if m.reports(p) {
				rm.Unheard = p.unheard
			}
			members = append(members, rm)
		}
		cut = agreeReach(members, now, m.opts.Profile.Timeout)
	}
	if downBy != "" {
		if cut == nil {
			cut = map[string]bool{}
		}
		cut[self] = true
	}
	for name := range cut {
		if !m.cut[name] {
			m.emit(EventUnreachable, name, m.cutReasonLocked(name, downBy))
		}
	}
	for name := range m.cut {
		if !cut[name] {
			m.emit(EventReachable, name, "every member it shares the cluster with hears it again, and it hears them")
		}
	}
	m.cut = cut
}

// cutReasonLocked says why a member is left out.
func (m *Membership) cutReasonLocked(name, downBy string) string {
	self := m.opts.Name
	if name == self && downBy != "" {
		return fmt.Sprintf("%s failed this node (it does not hear it): this node takes no new flows until it is heard again", downBy)
	}
	var why []string
	if p, ok := m.peers[name]; ok && p.deaf {
		why = append(why, self+" does not hear it")
	}
	for _, q := range m.peers {
		if !m.reports(q) {
			continue
		}
		if _, un := q.unheard[name]; un {
			why = append(why, q.name+" does not hear it")
		}
		if p, ok := m.peers[name]; ok && q.name == name {
			for other := range p.unheard {
				why = append(why, "it does not hear "+other)
			}
		}
	}
	if name == self {
		for _, q := range m.peers {
			if q.deaf && !q.state.Down() {
				why = append(why, "it does not hear "+q.name)
			}
		}
	}
	slices.Sort(why)
	why = slices.Compact(why)
	return fmt.Sprintf("left out of the cluster (%s): of two live members that cannot hear each other one takes no new flows, the same one on every node", strings.Join(why, ", "))
}

// reachProblemsLocked: status lines for reachability faults.
func (m *Membership) reachProblemsLocked() []string {
	var out []string
	if m.cut[m.opts.Name] {
		out = append(out, "this node is left out of the cluster and takes no new flows: a member does not hear it or it does not hear one (see events: node_unreachable)")
	}
	for _, p := range m.peers {
		switch {
		case m.cut[p.name]:
			out = append(out, fmt.Sprintf("member %s is left out of the cluster: it and another live member cannot hear each other", p.name))
		case p.deaf && !p.state.Down():
			out = append(out, fmt.Sprintf("no heartbeat from %s on any path, but other members hear it (a one-way fault?): kept in the cluster", p.name))
		}
	}
	return out
}
