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
	"syscall"
	"time"
)

// Client talks to a local clusterd agent.
type Client struct {
	Socket string
	// AnswerTimeout bounds the wait for the agent's answer and, on an
	// event stream, for its next line: a hung agent (stopped, deadlocked)
	// still accepts connections in the kernel but never answers.
	AnswerTimeout time.Duration
	hc            *http.Client
}

// DefaultAnswerTimeout: the agent's own slowest answers (a drain or move
// of another node waits up to 5 s for the acknowledgement, a move up to
// 3 s before that while the quorum is busy electing or handing on its
// leadership) fit with room.
const DefaultAnswerTimeout = 10 * time.Second

// ErrUnreachable means no agent answers on the socket (clusterctl exit 3).
var ErrUnreachable = errors.New("the clusterd agent is unreachable")

// ErrNoAnswer means the agent accepted the connection but did not answer
// in time (clusterctl exit 3).
var ErrNoAnswer = errors.New("the clusterd agent does not answer")

// ErrPermission means the socket exists but this user may not use it.
var ErrPermission = errors.New("permission denied on the control socket")

var errAnswerTimeout = errors.New("answer timeout")

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
		// A local socket connects in microseconds; an idle kept-alive
		// connection would hold one of the agent's few control slots.
		DisableKeepAlives: true,
	}
	return &Client{Socket: socket, AnswerTimeout: DefaultAnswerTimeout, hc: &http.Client{Transport: tr}}
}

// watchdog cancels a request whose answer (or next line) is late; kick
// restarts its clock.
type watchdog struct {
	t *time.Timer
	d time.Duration
}

func (c *Client) watch(ctx context.Context) (context.Context, *watchdog, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	d := c.AnswerTimeout
	if d <= 0 {
		d = DefaultAnswerTimeout
	}
	w := &watchdog{d: d, t: time.AfterFunc(d, func() { cancel(errAnswerTimeout) })}
	return ctx, w, func() { w.t.Stop(); cancel(nil) }
}

func (w *watchdog) kick() { w.t.Reset(w.d) }

// requestErr turns a failed request into the error clusterctl explains.
func (c *Client) requestErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errAnswerTimeout) {
		return fmt.Errorf("%w at %s within %s: it may be hung", ErrNoAnswer, c.Socket, c.AnswerTimeout)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	inner := unwrapDial(err)
	if errors.Is(inner, syscall.EACCES) || errors.Is(inner, syscall.EPERM) {
		return fmt.Errorf("%w %s", ErrPermission, c.Socket)
	}
	return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Socket, inner)
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
	ctx, _, stop := c.watch(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, "http://clusterd/"+Version+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.requestErr(ctx, err)
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
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			if context.Cause(ctx) != nil {
				return c.requestErr(ctx, err)
			}
			return fmt.Errorf("reading the agent's answer: %w", err)
		}
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
	parent := ctx
	ctx, dog, stop := c.watch(ctx)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://clusterd/"+Version+"/events"+q, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return nil
		}
		return c.requestErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &RemoteError{Status: resp.StatusCode, Msg: resp.Status}
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		// The agent writes a blank line every EventKeepAlive: silence
		// longer than the answer timeout is a hung agent.
		dog.kick()
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a keep-alive blank line
		}
		fn(e)
	}
	if parent.Err() != nil {
		return nil
	}
	if context.Cause(ctx) != nil {
		return c.requestErr(ctx, sc.Err())
	}
	return sc.Err()
}

// EventKeepAlive is how often the agent writes a blank line to an idle
// event stream, well inside DefaultAnswerTimeout.
const EventKeepAlive = 3 * time.Second
