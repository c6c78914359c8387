package main

import (
	"context"
	"fmt"

	"github.com/clusterd/clusterd/internal/api"
)

func (e *env) owner(ctx context.Context, args []string) int {
	fs := e.flags("owner")
	proto := fs.String("proto", "tcp", "tcp or udp")
	asJSON := fs.Bool("json", false, "print the answer as a JSON object")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 2 {
		fmt.Fprintln(e.stderr, "clusterctl owner: usage: clusterctl owner VIP:PORT CLIENT_IP:CLIENT_PORT [--proto tcp|udp]")
		return exitUsage
	}
	r, err := e.client.Owner(ctx, api.OwnerRequest{VIP: pos[0], Client: pos[1], Proto: *proto})
	if err != nil {
		return e.fail(err)
	}
	if *asJSON {
		e.say(true, struct {
			Proto  string `json:"proto"`
			VIP    string `json:"vip"`
			Client string `json:"client"`
			*api.OwnerResponse
		}{*proto, pos[0], pos[1], r}, "")
		return exitOK
	}
	node := r.Node
	if node == "" {
		node = "(nobody)"
	}
	if r.Bucket >= 0 {
		fmt.Fprintf(e.stdout, "%s %s from %s: rule %s (affinity %s), bucket %d, served by %s\n", *proto, pos[0], pos[1], r.Rule, r.Affinity, r.Bucket, node)
	} else {
		fmt.Fprintf(e.stdout, "%s %s from %s: served by %s\n", *proto, pos[0], pos[1], node)
	}
	if r.Note != "" {
		fmt.Fprintln(e.stdout, "note:", r.Note)
	}
	return exitOK
}
