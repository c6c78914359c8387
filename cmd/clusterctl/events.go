package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/clusterd/clusterd/internal/api"
)

func (e *env) events(ctx context.Context, args []string) int {
	fs := e.flags("events")
	follow := fs.Bool("follow", false, "keep printing new events until Ctrl-C")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if fs.Parse(args) != nil || fs.NArg() > 0 {
		return exitUsage
	}
	enc := json.NewEncoder(e.stdout)
	err := e.client.Events(ctx, *follow, func(ev api.Event) {
		if *asJSON {
			enc.Encode(ev)
			return
		}
		fmt.Fprintf(e.stdout, "%s  %-16s %-10s %s\n", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Type, ev.Node, ev.Detail)
	})
	if err != nil {
		return e.fail(err)
	}
	return exitOK
}
