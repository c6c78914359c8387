package heartbeat

import (
	"bytes"
	"strconv"
)

// decodeLiveness reads the common heartbeat — liveness only, no metadata
// — without reflection: exactly the bytes json.Marshal writes for it,
// {"n":"NAME","b":BOOT,"q":SEQ,"i":INTERVAL,"v":V}. Anything else (a
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
	for _, c := range name {
		// Member names are letters, digits, '.', '_' and '-' (config
		// validates them): nothing that JSON would escape.
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return hb, false
		}
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
	if string(rest) != "}" {
		return hb, false
	}
	return heartbeat{Name: string(name), Boot: nums[0], Seq: uint64(nums[1]), Interval: nums[2], V: uint64(nums[3])}, true
}
