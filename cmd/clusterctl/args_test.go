package main

import (
	"context"
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestSplitSocket(t *testing.T) {
	for _, c := range []struct {
		in   []string
		sock string
		rest []string
	}{
		{[]string{"--socket", "/s", "status"}, "/s", []string{"status"}},
		{[]string{"status", "--socket=/s", "--json"}, "/s", []string{"status", "--json"}},
		{[]string{"status"}, "", []string{"status"}},
	} {
		s, r, err := splitSocket(c.in)
		if err != nil || s != c.sock || !reflect.DeepEqual(r, c.rest) {
			t.Errorf("%v: %q %v %v", c.in, s, r, err)
		}
	}
	if _, _, err := splitSocket([]string{"status", "--socket"}); err == nil {
		t.Error("--socket without a path accepted")
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	wait := fs.Bool("wait", false, "")
	to := fs.String("timeout", "", "")
	pos, err := parseInterspersed(fs, []string{"web2", "--wait", "--timeout", "5m"})
	if err != nil || !*wait || *to != "5m" || !reflect.DeepEqual(pos, []string{"web2"}) {
		t.Fatalf("%v %v %v %v", pos, err, *wait, *to)
	}
}

func TestUnreachableIsExit3(t *testing.T) {
	if code := realMain(context.Background(), []string{"--socket", "/nonexistent/sock", "status"}, io.Discard, io.Discard); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	if code := realMain(context.Background(), []string{"bogus"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("unknown verb: exit %d, want 2", code)
	}
}
