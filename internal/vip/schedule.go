package vip

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/clusterd/clusterd/internal/heartbeat"
)

// heldInputs is what of a member the bucket tables are made of: its
// state, its published weights and handling priorities, its health.
type heldInputs struct {
	state         heartbeat.State
	rules, health string
}

func inputsOf(m heartbeat.Member) heldInputs {
	return heldInputs{state: m.State, rules: m.Ext[extRules], health: m.Ext[extHealth]}
}

// aheadView is the members as they will be from a planned instant on.
type aheadView struct {
	at      time.Time
	members []heartbeat.Member
}

// inForce splits what members announce into the view in force at now and
// the planned changes still ahead, one view per announced instant, in
// time order. A member that announced an instant still ahead (a drain, a
// resume, a leave: extSwitch) counts as it was before (held, its inputs
// as last in force) until that instant, and as it is from then on.
//
// Every node that knew the members before the changes thus computes the
// same tables for every interval between the instants, whatever order it
// heard the changes in: a node that heard two drains at once stages the
// first one's tables at the first instant as the others do, instead of
// going straight to both (between the instants two nodes would hold
// different tables: a bucket answered twice or not at all).
//
// A member that failed or left counts at once (failures are not
// planned); so does one whose instant is further ahead than limit (a
// clock far off), one never seen before (there is nothing to hold), and
// every member while one of the release before planned switches is live
// (it changes at once whatever was announced). held is what was in force
// at the last call; next is what is in force now, for the next call.
func inForce(members []heartbeat.Member, held map[string]heldInputs, now time.Time, limit time.Duration) (cur []heartbeat.Member, ahead []aheadView, next map[string]heldInputs) {
	if steady(members, held) {
		// Nothing changed since the last call (every tick, mostly): no
		// allocation.
		return members, nil, held
	}
	next = make(map[string]heldInputs, len(members))
	holds := true
	for _, m := range members {
		if !m.State.Down() && m.Proto < 2 {
			holds = false
		}
	}
	type change struct {
		at time.Time
		i  int // index into members
	}
	var changes []change
	cur = make([]heartbeat.Member, len(members))
	for i, m := range members {
		cur[i] = m
		in := inputsOf(m)
		h, known := held[m.Name]
		at := announced(m)
		if !holds || !known || h == in || m.State.Down() || !at.After(now) || !at.Before(now.Add(limit)) {
			next[m.Name] = in
			continue
		}
		cur[i] = withInputs(m, h)
		next[m.Name] = h
		changes = append(changes, change{at, i})
	}
	if len(changes) == 0 {
		return cur, nil, next
	}
	slices.SortFunc(changes, func(a, b change) int { return a.at.Compare(b.at) })
	view := cur
	for k, c := range changes {
		if k == 0 || !c.at.Equal(changes[k-1].at) {
			view = slices.Clone(view)
			ahead = append(ahead, aheadView{at: c.at})
		}
		view[c.i] = members[c.i]
		ahead[len(ahead)-1].members = view
	}
	return cur, ahead, next
}

// steady says whether every member's inputs are the ones held (then none
// is held back and the record stays as it is).
func steady(members []heartbeat.Member, held map[string]heldInputs) bool {
	if len(members) != len(held) {
		return false
	}
	for _, m := range members {
		if h, ok := held[m.Name]; !ok || h != inputsOf(m) {
			return false
		}
	}
	return true
}

// announced is the planned instant a member announced (zero if none).
func announced(m heartbeat.Member) time.Time {
	ms, err := strconv.ParseInt(m.Ext[extSwitch], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// withInputs is m with the state, weights and health of h (its other
// fields, such as whether it is cut off, as they are now).
func withInputs(m heartbeat.Member, h heldInputs) heartbeat.Member {
	m.State = h.state
	m.Ext = maps.Clone(m.Ext)
	if m.Ext == nil {
		m.Ext = map[string]string{}
	}
	setOrDelete(m.Ext, extRules, h.rules)
	setOrDelete(m.Ext, extHealth, h.health)
	return m
}

func setOrDelete(ext map[string]string, k, v string) {
	if v == "" {
		delete(ext, k)
		return
	}
	ext[k] = v
}
