package cli

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

func TestFlagsOf(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Bool("json", false, "print JSON")
	fs.String("config", "", "the config `FILE`")
	fs.Duration("timeout", 0, "give up after this long")
	fs.Int("n", 3, "how many")
	got := FlagsOf(fs)
	want := []Flag{
		{Name: "config", Arg: "FILE", Usage: "the config FILE", Files: true},
		{Name: "json", Usage: "print JSON"},
		{Name: "n", Arg: "N", Usage: "how many (default 3)"},
		{Name: "timeout", Arg: "TIMEOUT", Usage: "give up after this long"},
	}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("flag %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestRoffEscapes(t *testing.T) {
	for in, want := range map[string]string{`--json`: `\-\-json`, `.hidden`: `\&.hidden`, `a\b`: `a\eb`, `'q`: `\&'q`} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompletionShells(t *testing.T) {
	p := Program{Name: "x-ctl", Commands: []Command{{Name: "go", Summary: "it's [a] test: yes", Flags: []Flag{{Name: "out", Arg: "FILE", Files: true}}}}}
	for _, sh := range Shells {
		var b bytes.Buffer
		if err := p.Completion(&b, sh); err != nil || !strings.Contains(b.String(), "go") {
			t.Errorf("%s: %v\n%s", sh, err, b.String())
		}
	}
	var b bytes.Buffer
	if err := p.Completion(&b, "tcsh"); err == nil {
		t.Error("tcsh accepted")
	}
	p.Completion(&b, "zsh")
	if !strings.Contains(b.String(), `it'\''s \[a\] test\: yes`) {
		t.Errorf("zsh description not escaped:\n%s", b.String())
	}
}
