package agent

import (
	"sync"

	"github.com/clusterd/clusterd/internal/api"
)

// eventLog is a bounded, in-memory log of events with followers. Bounded so
// a flapping node cannot grow the agent without limit; the journal (slog)
// keeps the full history.
type eventLog struct {
	mu        sync.Mutex
	max       int
	events    []api.Event
	followers map[chan api.Event]struct{}
}

func newEventLog(max int) *eventLog {
	return &eventLog{max: max, followers: map[chan api.Event]struct{}{}}
}

func (l *eventLog) add(e api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	if len(l.events) > l.max {
		l.events = append(l.events[:0:0], l.events[len(l.events)-l.max:]...)
	}
	for ch := range l.followers {
		select {
		case ch <- e:
		default: // a follower that does not read loses events, not the agent
		}
	}
}

// snapshot returns the log and, if follow, a channel of what comes next.
func (l *eventLog) snapshot(follow bool) ([]api.Event, chan api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]api.Event(nil), l.events...)
	if !follow {
		return out, nil
	}
	ch := make(chan api.Event, 256)
	l.followers[ch] = struct{}{}
	return out, ch
}

func (l *eventLog) unfollow(ch chan api.Event) {
	l.mu.Lock()
	delete(l.followers, ch)
	l.mu.Unlock()
}
