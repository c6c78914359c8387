package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

func script(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := realMain(context.Background(), []string{"completion", shell}, &out, &errb); code != 0 {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
	}
	f := filepath.Join(testenv.TempDir(t), "clusterctl."+shell)
	if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// fakeCtl puts a clusterctl on PATH that answers __complete as an agent
// with members web1, web2 and group db would.
func fakeCtl(t *testing.T) string {
	dir := testenv.TempDir(t)
	os.WriteFile(filepath.Join(dir, "clusterctl"), []byte("#!/bin/sh\ncase \"$2\" in nodes) printf 'web1\\nweb2\\n';; groups) echo db;; esac\n"), 0o755)
	return dir + ":" + os.Getenv("PATH")
}

// TestBashCompletion runs the generated script in a real bash.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	f := script(t, "bash")
	path := fakeCtl(t)
	for _, c := range []struct {
		line string
		want []string
		not  []string
	}{
		{"clusterctl dr", []string{"drain"}, []string{"status"}},
		{"clusterctl ", []string{"status", "events", "move", "completion", "--socket"}, nil},
		{"clusterctl drain --w", []string{"--wait"}, []string{"--rule"}},
		{"clusterctl drain --rule 80 --j", []string{"--json"}, nil},
		{"clusterctl drain w", []string{"web1", "web2"}, nil},
		{"clusterctl --socket /tmp/s move ", []string{"db"}, []string{"web1"}},
		{"clusterctl completion p", []string{"powershell"}, nil},
		{"clusterctl status --check --lag-w", []string{"--lag-warn"}, nil},
	} {
		words := strings.Fields(c.line)
		cword := len(words)
		if !strings.HasSuffix(c.line, " ") {
			cword--
		}
		var sb strings.Builder
		sb.WriteString("source " + f + "\nCOMP_WORDS=(")
		for _, w := range words {
			sb.WriteString("'" + w + "' ")
		}
		if strings.HasSuffix(c.line, " ") {
			sb.WriteString("''")
		}
		sb.WriteString(")\nCOMP_CWORD=" + strconv.Itoa(cword) + "\n_clusterctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", sb.String())
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.line, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range c.want {
			if !contains(got, w) {
				t.Errorf("%q: %v lacks %s", c.line, got, w)
			}
		}
		for _, w := range c.not {
			if contains(got, w) {
				t.Errorf("%q: %v offers %s", c.line, got, w)
			}
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestFishCompletion asks a real fish for completions.
func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("no fish: apt-get install fish (as root)")
	}
	f := script(t, "fish")
	for line, want := range map[string]string{"clusterctl dr": "drain", "clusterctl drain --w": "--wait", "clusterctl drain w": "web2", "clusterctl move ": "db"} {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+f+"; complete -C '"+line+"'")
		cmd.Env = append(os.Environ(), "PATH="+fakeCtl(t))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("fish %q: %v\n%s", line, err, out)
		}
	}
}

// TestZshCompletion checks the script is valid zsh and defines its
// function (zsh's completion system needs a terminal to drive further).
func TestZshCompletion(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh: apt-get install zsh (as root)")
	}
	f := script(t, "zsh")
	if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	out, err := exec.Command("zsh", "-f", "-c", "autoload -U compinit && compinit -u -D && source "+f+" && whence -w _clusterctl && echo ${_comps[clusterctl]}").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "_clusterctl: function") || !strings.Contains(string(out), "\n_clusterctl") {
		t.Fatalf("loading in zsh: %v\n%s", err, out)
	}
}

// TestPowerShellCompletion: without pwsh here, the script is checked for
// every command and flag (it is built from the same table as the others).
func TestPowerShellCompletion(t *testing.T) {
	b, _ := os.ReadFile(script(t, "powershell"))
	s := string(b)
	for _, c := range program().Commands {
		if !strings.Contains(s, "'"+c.Name+"'") {
			t.Errorf("no %s", c.Name)
		}
		for _, f := range c.Flags {
			if !strings.Contains(s, "'--"+f.Name+"'") {
				t.Errorf("%s: no --%s", c.Name, f.Name)
			}
		}
	}
	if pwsh, err := exec.LookPath("pwsh"); err == nil {
		if out, err := exec.Command(pwsh, "-NoProfile", "-Command", ". '"+script(t, "powershell")+"'").CombinedOutput(); err != nil {
			t.Fatalf("pwsh: %v\n%s", err, out)
		}
	}
}

// TestManPage: the man page names every command and flag and formats
// without a warning.
func TestManPage(t *testing.T) {
	var out bytes.Buffer
	if code := realMain(context.Background(), []string{"__man"}, &out, io.Discard); code != 0 {
		t.Fatal("__man failed")
	}
	page := out.String()
	for _, c := range program().Commands {
		if !strings.Contains(page, ".SS "+c.Name) {
			t.Errorf("no section for %s", c.Name)
		}
		for _, f := range c.Flags {
			if !strings.Contains(page, `\-\-`+f.Name) {
				t.Errorf("%s: no --%s", c.Name, f.Name)
			}
		}
	}
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
			t.Errorf("groff: %v\n%s", err, msg)
		}
	}
}
