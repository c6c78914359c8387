package vocab

import (
	"strings"
	"testing"
)

// Every event type is either an SNMP notification or listed as not
// trapped with a reason, never both; notification numbers are unique.
func TestEveryEventTrappedOrListed(t *testing.T) {
	seen := map[EventType]bool{}
	nums := map[int]EventType{}
	for _, e := range Events {
		if seen[e] {
			t.Errorf("%s listed twice", e)
		}
		seen[e] = true
		n, trapped := Notification[e]
		why, listed := NotTrapped[e]
		switch {
		case trapped && listed:
			t.Errorf("%s is both a notification and listed as not trapped", e)
		case !trapped && !listed:
			t.Errorf("%s is neither a notification nor listed as not trapped", e)
		case listed && why == "":
			t.Errorf("%s: not trapped without a reason", e)
		}
		if trapped {
			if other, dup := nums[n]; dup {
				t.Errorf("%s and %s share notification %d", e, other, n)
			}
			nums[n] = e
		}
	}
	for e := range Notification {
		if !seen[e] {
			t.Errorf("notification for %s, which Events does not list", e)
		}
	}
	for e := range NotTrapped {
		if !seen[e] {
			t.Errorf("%s not trapped, but Events does not list it", e)
		}
	}
}

// Message kinds and metadata keys are unique; no key is a prefix of
// another (the group keys are prefixes of per-group keys).
func TestWireNamesUnique(t *testing.T) {
	kinds := map[MsgKind]bool{}
	for _, k := range MsgKinds {
		if kinds[k] {
			t.Errorf("message kind %d used twice", k)
		}
		kinds[k] = true
	}
	for i, a := range ExtKeys {
		for j, b := range ExtKeys {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("metadata key %q is a prefix of %q", a, b)
			}
		}
	}
}
