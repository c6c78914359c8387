package main

import (
	"encoding/json"
	"fmt"
	"time"
)

// say prints one line of a command's output: the text, or with --json
// the object as one JSON line (a command that reports progress prints one
// object per step, as `events --json` does).
func (e *env) say(asJSON bool, obj any, format string, args ...any) {
	if asJSON {
		b, err := json.Marshal(obj)
		if err != nil {
			fmt.Fprintln(e.stderr, "clusterctl: encoding JSON:", err)
			return
		}
		fmt.Fprintln(e.stdout, string(b))
		return
	}
	fmt.Fprintf(e.stdout, format+"\n", args...)
}

// Progress is one line of `drain --wait --json` and `move --json`.
type Progress struct {
	Time        time.Time `json:"time"`
	Node        string    `json:"node,omitempty"`
	Group       string    `json:"group,omitempty"`
	State       string    `json:"state"`
	Owner       string    `json:"owner,omitempty"`
	Target      string    `json:"target,omitempty"`
	Connections *int      `json:"connections,omitempty"`
	Rule        string    `json:"rule,omitempty"`
	Seconds     float64   `json:"seconds,omitempty"`
	Done        bool      `json:"done,omitempty"`
}
