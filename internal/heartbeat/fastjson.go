package heartbeat

import (
	"bytes"
	"strconv"
)

// decodeLiveness reads the common heartbeat — liveness only, no metadata
// — without reflection: exactly the bytes json.Marshal writes for it,
// {"n":"NAME","b":BOOT,"q":SEQ,"i":INTERVAL,"v":V} and the lists
// "u" and "d" when not empty. Anything else (a
// heartbeat with metadata, another release's field order) returns ok
// false and goes to encoding/json. At 32 members a node decodes ~1,240
// heartbeats a second per path; json.Unmarshal was a third of its CPU.
func decodeLiveness(b []byte) (hb heartbeat, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"n":"`))
	if !ok {
		return hb, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 1 {
		return hb, false
	}
	name := rest[:end]
	if !plainName(name) {
		return hb, false
	}
	rest = rest[end+1:]
	var nums [4]int64
	for i, key := range []string{`,"b":`, `,"q":`, `,"i":`, `,"v":`} {
		r, ok := bytes.CutPrefix(rest, []byte(key))
		if !ok {
			return hb, false
		}
		j := 0
		for j < len(r) && (r[j] >= '0' && r[j] <= '9' || j == 0 && r[j] == '-') {
			j++
		}
		// Only what json.Marshal writes: no leading zero, no "-0".
		digits := r[:j]
		if len(digits) > 0 && digits[0] == '-' {
			digits = digits[1:]
			if len(digits) > 0 && digits[0] == '0' {
				return hb, false
			}
		}
		if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
			return hb, false
		}
		if i == 1 || i == 3 {
			u, err := strconv.ParseUint(string(r[:j]), 10, 64)
			if err != nil || u > 1<<63-1 {
				return hb, false // encoding/json reads the rest
			}
			nums[i] = int64(u)
		} else {
			v, err := strconv.ParseInt(string(r[:j]), 10, 64)
			if err != nil {
				return hb, false
			}
			nums[i] = v
		}
		rest = r[j:]
	}
	hb = heartbeat{Name: string(name), Boot: nums[0], Seq: uint64(nums[1]), Interval: nums[2], V: uint64(nums[3])}
	// Then the reachability lists, when not empty (a member that died
	// stays in every survivor's Down list, so these are common).
	for _, l := range []struct {
		key string
		to  *[]string
	}{{`,"u":[`, &hb.Unheard}, {`,"d":[`, &hb.Down}} {
		r, ok := bytes.CutPrefix(rest, []byte(l.key))
		if !ok {
			continue
		}
		if *l.to, rest, ok = nameList(r); !ok {
			return heartbeat{}, false
		}
	}
	if string(rest) != "}" {
		return heartbeat{}, false
	}
	return hb, true
}

// nameList reads `"a","b"]` (member names, at least one) and what follows.
func nameList(b []byte) (names []string, rest []byte, ok bool) {
	for {
		r, ok := bytes.CutPrefix(b, []byte(`"`))
		if !ok {
			return nil, nil, false
		}
		end := bytes.IndexByte(r, '"')
		if end < 1 || !plainName(r[:end]) {
			return nil, nil, false
		}
		names = append(names, string(r[:end]))
		switch b = r[end+1:]; {
		case len(b) > 0 && b[0] == ',':
			b = b[1:]
		case len(b) > 0 && b[0] == ']':
			return names, b[1:], true
		default:
			return nil, nil, false
		}
	}
}

// plainName: member names are letters, digits, '.', '_' and '-' (config
// validates them), nothing that JSON would escape.
func plainName(name []byte) bool {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
