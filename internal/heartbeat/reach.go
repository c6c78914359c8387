package heartbeat

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Reachability is mutual. Every heartbeat names the members its sender
// does not hear: Unheard (silent for a timeout, but kept in the cluster
// because the members that hear it often still do: voucherLocked) and
// Down (members it failed). From the lists of the members it hears,
// every node knows the same pairs of live members that cannot talk, and
// agreeReach leaves out the same one of each pair on every node: a pair
// that cannot talk never both serve, whatever the direction of the fault.
// A node that a member it hears has failed (its Down list names this
// node) leaves itself out at once: that member takes its buckets.

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

// takeReachLocked records a fresh heartbeat's lists, each name with when
// this node first saw it there, and returns the names new in them.
func (m *Membership) takeReachLocked(p *peer, unheard, down []string, now time.Time) (news []string) {
	p.unheard, news = sinceMap(p.unheard, unheard, now, news)
	p.down, news = sinceMap(p.down, down, now, news)
	return news
}

// rejudgeLocked: a member's list newly names these; those this node keeps
// while silent are judged again at once, not at the next check (the vote
// that fails a dead member has just changed).
func (m *Membership) rejudgeLocked(names []string, now time.Time) {
	var live []string
	for _, n := range names {
		q, ok := m.peers[n]
		if !ok || !q.deaf || q.state.Down() {
			continue
		}
		if live == nil {
			live = m.liveLocked()
		}
		last := now.Sub(q.seen[0])
		if b := now.Sub(q.seen[1]); b < last {
			last = b
		}
		m.judgeLocked(q, last, live, now, false)
	}
}

// sinceMap is names with when each was first seen (old keeps its times;
// a new one is seen now and appended to news). An unchanged list keeps
// old itself: every heartbeat carries the lists, and a member that died
// stays in them, so this is the common case on the receive path.
func sinceMap(old map[string]time.Time, names []string, now time.Time, news []string) (map[string]time.Time, []string) {
	if len(names) == 0 {
		return nil, news
	}
	same := len(names) == len(old)
	for _, n := range names {
		if _, ok := old[n]; !ok {
			same = false
			news = append(news, n)
		}
	}
	if same {
		return old, news
	}
	next := make(map[string]time.Time, len(names))
	for _, n := range names {
		if since, ok := old[n]; ok {
			next[n] = since
		} else {
			next[n] = now
		}
	}
	return next, news
}

// liveLocked: this node and the members it counts in.
func (m *Membership) liveLocked() []string {
	live := []string{m.opts.Name}
	for _, p := range m.peers {
		if !p.state.Down() {
			live = append(live, p.name)
		}
	}
	return live
}

// heardLocked marks a member heard again (any authentic heartbeat).
func (m *Membership) heardLocked(p *peer) {
	if p.deaf {
		p.deaf = false
		m.reachChangedLocked()
	}
}

// deafLocked marks a member silent on every path.
func (m *Membership) deafLocked(p *peer, now time.Time) {
	if !p.deaf {
		p.deaf, p.deafSince = true, now
		m.reachChangedLocked()
	}
}

// reachChangedLocked: this node's lists changed; every member hears it at
// once (one round out of turn, to every member), not an interval later.
func (m *Membership) reachChangedLocked() {
	m.reachAll = true
	m.sendSoon()
}

// sendSoon has sendLoop send a round now, out of turn.
func (m *Membership) sendSoon() {
	select {
	case m.sendNow <- struct{}{}:
	default:
	}
}

// voucherLocked names a member that still hears p, or "" when p is to be
// failed. The members that hear p often (all, up to ScaleAbove members;
// above, p's watchers) vote with their current lists, this node with its
// silence: p is failed when more of them do not hear it than do. Else it
// is silent here only (a one-way fault, or one between these two): it
// stays, and agreement settles the pair. A member that died is failed
// once the second of three (or both of two) survivors times it out: the
// median of their timeouts, not the first, but not the last either.
// live: the members this node counted in when the check began.
//
// outvoted: p is failed although a member still hears it (it may well be
// alive, cut off from the majority one way: see Member.Contested).
func (m *Membership) voucherLocked(p *peer, live []string) (by string, outvoted bool) {
	var watchers map[string]bool
	if m.opts.Profile.IntervalFor(len(live)) > m.opts.Profile.Interval {
		watchers = watchersOf(p.name, live, m.opts.Profile.Watchers)
	}
	deaf, hear, by := 1, 0, ""
	for _, q := range m.peers {
		if q == p || !m.reports(q) || watchers != nil && !watchers[q.name] {
			continue
		}
		_, un := q.unheard[p.name]
		_, down := q.down[p.name]
		if un || down {
			deaf++
		} else {
			hear++
			by = q.name
		}
	}
	if deaf > hear {
		return "", hear > 0
	}
	return by, false
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
			if _, ok := p.down[self]; ok {
				downBy = p.name
			}
			for n := range p.down {
				if q, ok := m.peers[n]; ok && !q.state.Down() {
					pairs = true // it failed a member this node counts in
				}
			}
			if len(p.unheard) > 0 {
				pairs = true
			}
		}
	}
	var cut map[string]bool
	var members []reachMember
	if pairs {
		members = []reachMember{{Name: self, Rank: m.meta.Priority, Unheard: map[string]time.Time{}}}
		for _, p := range m.peers {
			if p.state.Down() {
				continue
			}
			if p.deaf {
				members[0].Unheard[p.name] = p.deafSince
			}
			rm := reachMember{Name: p.name, Rank: p.meta.Priority}
			if m.reports(p) {
				// A member it failed that this node still counts in
				// (a fault between the two that the others outvoted)
				// is a pair too.
				rm.Unheard = p.unheard
				if len(p.down) > 0 {
					rm.Unheard = maps.Clone(p.unheard)
					if rm.Unheard == nil {
						rm.Unheard = map[string]time.Time{}
					}
					maps.Copy(rm.Unheard, p.down)
				}
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
			m.emit(EventUnreachable, name, cutReason(self, name, downBy, members))
		}
	}
	for name := range m.cut {
		if !cut[name] {
			m.emit(EventReachable, name, "every member it shares the cluster with hears it again, and it hears them")
		}
	}
	m.cut = cut
}

// cutReason says why a member is left out, from the lists agreement read
// (members, as agreeReach got them).
func cutReason(self, name, downBy string, members []reachMember) string {
	if name == self && downBy != "" {
		return fmt.Sprintf("%s failed this node (it does not hear it): this node takes no new flows until it is heard again", downBy)
	}
	var why []string
	for _, rm := range members {
		for other := range rm.Unheard {
			switch {
			case rm.Name == name:
				why = append(why, "it does not hear "+other)
			case other == name:
				why = append(why, rm.Name+" does not hear it")
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
