package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"reflect"
	"strings"
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

// COMMAND --help shows the command's flags and examples on stdout and
// exits 0 (a request for help is not a usage error).
func TestHelpOfEveryCommand(t *testing.T) {
	for _, c := range commands {
		verb := c.Name
		var out, errb bytes.Buffer
		code := realMain(context.Background(), []string{"--socket", "/nonexistent", verb, "--help"}, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), "examples:") || errb.Len() != 0 {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", verb, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := realMain(context.Background(), []string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "status --check") {
		t.Errorf("help: exit %d %q", code, out.String())
	}
}
