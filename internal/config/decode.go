package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree against a struct, so that every unknown key
// and every badly typed value is reported with its own line, all in one pass.
// yaml.v3's KnownFields stops at the first problem and its type errors lose
// the path; operators fixing a config want the whole list at once.
type decoder struct {
	file  string
	errs  *Errors
	lines map[string]int // field path ("load_balancing[0].vip") -> line
}

func (d *decoder) errorf(line int, format string, args ...any) {
	d.errs.Add(d.file, line, fmt.Sprintf(format, args...))
}

var durationType = reflect.TypeOf(Duration(0))

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	// A null leaves the default in place: "key:" with no value means "default".
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, "%s: expected a mapping of keys, got %s", displayPath(path), kindName(n))
			return
		}
		fields := structFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			name := k.Value
			sub := joinPath(path, name)
			if seen[name] {
				d.errorf(k.Line, "%s: duplicate key", sub)
				continue
			}
			seen[name] = true
			idx, ok := fields[name]
			if !ok {
				d.errorf(k.Line, "%s: unknown key%s", sub, suggest(name, fields))
				continue
			}
			d.lines[sub] = k.Line
			d.decode(val, v.Field(idx), sub)
			d.lines[sub] = k.Line
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			// Accept a single scalar where a list of scalars is expected: "join: 10.0.0.1".
			if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
				v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.ValueOf(n.Value).Convert(v.Type().Elem())))
				return
			}
			d.errorf(n.Line, "%s: expected a list, got %s", displayPath(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n.Line, "%s: expected a single value, got %s", displayPath(path), kindName(n))
			return
		}
		if v.Type() == durationType {
			dur, err := time.ParseDuration(n.Value)
			if err != nil {
				d.errorf(n.Line, "%s: %q is not a duration (use e.g. 500ms, 10s, 1h)", displayPath(path), n.Value)
				return
			}
			v.SetInt(int64(dur))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errorf(n.Line, "%s: %q is not %s", displayPath(path), n.Value, typeName(v.Type()))
		}
	}
}

func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		m[tag] = i
	}
	return m
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func displayPath(p string) string {
	if p == "" {
		return "document"
	}
	return p
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint8, reflect.Uint:
		return "a whole number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// suggest names the closest known key, since most unknown keys are typos.
func suggest(name string, fields map[string]int) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
