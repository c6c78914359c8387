package config

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a config file, located by line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errors is every problem found in one pass, in file order.
type Errors struct {
	List []Error
}

// Add records a problem.
func (e *Errors) Add(file string, line int, msg string) {
	e.List = append(e.List, Error{File: file, Line: line, Msg: msg})
}

func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *Errors) sort() {
	sort.SliceStable(e.List, func(i, j int) bool { return e.List[i].Line < e.List[j].Line })
}

func (e *Errors) errOrNil() error {
	if len(e.List) == 0 {
		return nil
	}
	e.sort()
	return e
}

var yamlLineRE = regexp.MustCompile(`line (\d+):\s*`)

// yamlErrLine digs the line out of a yaml syntax error ("yaml: line 3: ...").
func yamlErrLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func trimYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return yamlLineRE.ReplaceAllString(s, "")
}
