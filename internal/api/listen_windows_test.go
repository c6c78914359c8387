//go:build windows

package api

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testenv"
)

// TestPipe: the control pipe accepts a connection, and a second agent
// cannot take a pipe that a live one holds.
func TestPipe(t *testing.T) {
	testenv.SkipUnderWine(t, testenv.WineLacksPipes)
	name := fmt.Sprintf(`\\.\pipe\clusterd-test-%d`, os.Getpid())
	l, err := Listen(name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := dial(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close()
	if l2, err := Listen(name, ""); err == nil {
		l2.Close()
		t.Fatal("a second listener took a live pipe")
	}
}
