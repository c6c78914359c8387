//go:build !windows

package api

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testenv"
)

// A hung agent accepts connections (the kernel does) but never answers:
// every call must give up after AnswerTimeout with ErrNoAnswer.
func TestHungAgentTimesOut(t *testing.T) {
	sock := filepath.Join(testenv.TempDir(t), "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	c := NewClient(sock)
	c.AnswerTimeout = 200 * time.Millisecond
	for name, call := range map[string]func() error{
		"status": func() error { _, err := c.Status(context.Background()); return err },
		"drain":  func() error { return c.Drain(context.Background(), DrainRequest{}) },
		"events": func() error { return c.Events(context.Background(), true, func(Event) {}) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrNoAnswer) {
			t.Errorf("%s: err %v, want ErrNoAnswer", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s gave up after %s", name, d)
		}
	}
}

func TestPermissionDeniedSaysSo(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may open any socket")
	}
	sock := filepath.Join(testenv.TempDir(t), "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0)
	_, err = NewClient(sock).Status(context.Background())
	if !errors.Is(err, ErrPermission) {
		t.Fatalf("err %v, want ErrPermission", err)
	}
}

// The limit listener bounds connections held at once and gives the
// underlying connection back (peer credentials stay readable).
func TestLimitListener(t *testing.T) {
	sock := filepath.Join(testenv.TempDir(t), "l.sock")
	raw, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(raw, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the limit of 2")
	case <-time.After(100 * time.Millisecond):
	}
	if PeerUID(first) != os.Geteuid() {
		t.Errorf("PeerUID through the limit listener: %d, want %d", PeerUID(first), os.Geteuid())
	}
	first.Close()
	select {
	case <-accepted:
	case <-time.After(time.Second):
		t.Fatal("closing a connection did not free its slot")
	}
}
