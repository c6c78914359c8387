package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Client talks to a local clusterd agent.
type Client struct {
	Socket string
	hc     *http.Client
}

// ErrUnreachable means no agent answers on the socket (clusterctl exit 3).
var ErrUnreachable = errors.New("the clusterd agent is unreachable")

// RemoteError is an error the agent answered with (clusterctl exit 1).
type RemoteError struct {
	Status int
	Msg    string
}

func (e *RemoteError) Error() string { return e.Msg }

// NewClient returns a client for the control endpoint at socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, socket)
		},
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://clusterd/"+Version+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Socket, unwrapDial(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &RemoteError{Status: resp.StatusCode, Msg: e.Error}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Status returns the cluster's status as this agent sees it.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/status", nil, &s)
}

// Forget removes a failed or left member from every node's list.
func (c *Client) Forget(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodPost, "/forget", ForgetRequest{Node: node}, nil)
}

// Drain asks a node to take no new flows; it returns once the node has
// acknowledged (shows draining).
func (c *Client) Drain(ctx context.Context, req DrainRequest) error {
	return c.do(ctx, http.MethodPost, "/drain", req, nil)
}

// Resume undoes a drain.
func (c *Client) Resume(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodPost, "/resume", NodeRequest{Node: node}, nil)
}

// Move starts a planned switchover; it returns once the quorum has
// recorded it. Watch Status for the group coming online on the target.
func (c *Client) Move(ctx context.Context, req MoveRequest) (*MoveResponse, error) {
	var r MoveResponse
	return &r, c.do(ctx, http.MethodPost, "/move", req, &r)
}

// Owner asks which node and bucket serve a flow.
func (c *Client) Owner(ctx context.Context, req OwnerRequest) (*OwnerResponse, error) {
	var r OwnerResponse
	return &r, c.do(ctx, http.MethodPost, "/owner", req, &r)
}

// Events returns the event log; with follow it then calls fn for each new
// event until ctx ends.
func (c *Client) Events(ctx context.Context, follow bool, fn func(Event)) error {
	q := ""
	if follow {
		q = "?follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://clusterd/"+Version+"/events"+q, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Socket, unwrapDial(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &RemoteError{Status: resp.StatusCode, Msg: resp.Status}
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var w struct {
			Time   string `json:"time"`
			Type   string `json:"type"`
			Node   string `json:"node"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			continue // a keep-alive blank line
		}
		t, _ := time.Parse(time.RFC3339Nano, w.Time)
		fn(Event{Time: t, Type: w.Type, Node: w.Node, Detail: w.Detail})
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
