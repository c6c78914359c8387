package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/vip"
	"github.com/clusterd/clusterd/internal/vocab"
)

func (a *Agent) selfName() string { return a.config().Node.Name }

// drain drains this node or, through membership, another one, and waits
// until that node acknowledges by showing draining.
func (a *Agent) drain(ctx context.Context, req api.DrainRequest) error {
	var timeout time.Duration
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d < 0 {
			return fmt.Errorf("--timeout %q: want a duration such as 30s or 10m", req.Timeout)
		}
		timeout = d
	}
	if req.Node == "" || req.Node == a.selfName() {
		if a.tier == nil {
			return vip.ErrNotLB
		}
		return a.tier.Drain(req.Rule, timeout)
	}
	if err := a.knownNode(req.Node); err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	if err := a.members.Send(req.Node, vocab.MsgDrain, body); err != nil {
		return err
	}
	if req.Rule != "" {
		return nil
	}
	return a.waitState(ctx, req.Node, 5*time.Second, heartbeat.StateDraining, heartbeat.StateDrained)
}

func (a *Agent) resume(ctx context.Context, node string) error {
	if node == "" || node == a.selfName() {
		if a.tier == nil {
			return vip.ErrNotLB
		}
		return a.tier.Resume()
	}
	if err := a.knownNode(node); err != nil {
		return err
	}
	if err := a.members.Send(node, vocab.MsgResume, nil); err != nil {
		return err
	}
	return a.waitState(ctx, node, 5*time.Second, heartbeat.StateActive)
}

func (a *Agent) knownNode(name string) error {
	for _, m := range a.members.Members() {
		if m.Name == name {
			if m.State.Down() {
				return fmt.Errorf("node %s is %s", name, m.State)
			}
			return nil
		}
	}
	return fmt.Errorf("%w %q", heartbeat.ErrUnknownNode, name)
}

func (a *Agent) waitState(ctx context.Context, node string, d time.Duration, want ...heartbeat.State) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range a.members.Members() {
			if m.Name == node {
				for _, w := range want {
					if m.State == w {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("node %s did not acknowledge within %s", node, d)
}

func (a *Agent) onDrainMsg(body []byte) {
	var req api.DrainRequest
	if json.Unmarshal(body, &req) != nil {
		return
	}
	req.Node = ""
	if err := a.drain(context.Background(), req); err != nil {
		a.log.Warn("drain requested by a peer", slog.Any("error", err))
	}
}

func (a *Agent) onResumeMsg([]byte) {
	if err := a.resume(context.Background(), ""); err != nil {
		a.log.Warn("resume requested by a peer", slog.Any("error", err))
	}
}

func (a *Agent) owner(req api.OwnerRequest) (*api.OwnerResponse, error) {
	if a.tier == nil {
		return nil, vip.ErrNotLB
	}
	v, err := netip.ParseAddrPort(req.VIP)
	if err != nil {
		return nil, fmt.Errorf("%q: want VIP:PORT", req.VIP)
	}
	c, err := netip.ParseAddrPort(req.Client)
	if err != nil {
		return nil, fmt.Errorf("%q: want CLIENT_IP:CLIENT_PORT", req.Client)
	}
	if req.Proto == "" {
		req.Proto = "tcp"
	}
	if req.Proto != "tcp" && req.Proto != "udp" {
		return nil, fmt.Errorf("--proto %q: want tcp or udp", req.Proto)
	}
	r, err := a.tier.Owner(v, c, req.Proto)
	return &r, err
}

func (a *Agent) nlbRoutes(mux *http.ServeMux, p string) {
	mux.HandleFunc("POST "+p+"/drain", func(w http.ResponseWriter, r *http.Request) {
		var req api.DrainRequest
		if !readJSON(w, r, &req) {
			return
		}
		what := "drain " + req.Node
		if req.Rule != "" {
			what += " --rule " + req.Rule
		}
		if req.Timeout != "" {
			what += " --timeout " + req.Timeout
		}
		done := a.operator(r, what)
		err := a.drain(r.Context(), req)
		done(err)
		if err != nil {
			writeErr(w, errCode(err), err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST "+p+"/resume", func(w http.ResponseWriter, r *http.Request) {
		var req api.NodeRequest
		if !readJSON(w, r, &req) {
			return
		}
		done := a.operator(r, "resume "+req.Node)
		err := a.resume(r.Context(), req.Node)
		done(err)
		if err != nil {
			writeErr(w, errCode(err), err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST "+p+"/owner", func(w http.ResponseWriter, r *http.Request) {
		var req api.OwnerRequest
		if !readJSON(w, r, &req) {
			return
		}
		resp, err := a.owner(req)
		if err != nil {
			writeErr(w, errCode(err), err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func errCode(err error) int {
	if errors.Is(err, heartbeat.ErrUnknownNode) {
		return http.StatusNotFound
	}
	return http.StatusConflict
}
