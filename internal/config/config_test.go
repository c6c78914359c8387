package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

// writeKey puts a valid key file next to the test configs (they name
// "cluster.key", relative to the config's directory).
func copyWithKey(t *testing.T, name string) string {
	t.Helper()
	dir := testenv.TempDir(t)
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	k, _ := NewKey()
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpecExampleParses(t *testing.T) {
	c, err := Load(copyWithKey(t, "spec.yaml"))
	if err != nil {
		t.Fatalf("SPEC.md's example must load: %v", err)
	}
	if c.Cluster.Name != "his" || c.Node.Priority != 1 || len(c.Keys) != 1 {
		t.Fatalf("decoded wrong: %+v", c)
	}
	if got := c.LoadBalancing[0].Health.Fall; got != 2 {
		t.Fatalf("health.fall = %d", got)
	}
	if c.Heartbeat.ReapAfter.D().Hours() != 1 {
		t.Fatalf("reap_after = %v", c.Heartbeat.ReapAfter)
	}
}

func TestFiveMistakes(t *testing.T) {
	p := copyWithKey(t, "five-mistakes.yaml")
	_, err := Load(p)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %v", err)
	}
	want := []string{
		":6: node.priority: must be 1..64",
		":8: heartbeat.bind: \"192.168.1.300\" is not an IP address",
		":9: heartbeat.profil: unknown key (did you mean \"profile\"?)",
		":15: load_balancing[0].rules[1].ports: \"70-90\" overlaps",
		":16: load_balancing[0].rules[1].weight: \"lots\" is not a whole number",
	}
	got := errs.Error()
	for _, w := range want {
		if !strings.Contains(got, p+w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(errs.List) != len(want) {
		t.Errorf("want %d errors, got %d:\n%s", len(want), len(errs.List), got)
	}
}

func TestKeyFileProblems(t *testing.T) {
	dir := testenv.TempDir(t)
	kf := filepath.Join(dir, "k")
	os.WriteFile(kf, []byte("bm90IGEga2V5\n"), 0o644)
	makeReadable(t, kf)
	_, probs := ReadKeys(kf)
	if len(probs) != 2 {
		t.Fatalf("want world-readable and malformed-key problems, got %+v", probs)
	}
	k1, _ := NewKey()
	k2, _ := NewKey()
	os.WriteFile(kf, []byte("# rotation in progress\n"+k1+"\n"+k2), 0o600)
	os.Chmod(kf, 0o600)
	keys, probs := ReadKeys(kf)
	if len(probs) != 0 || len(keys) != 2 {
		t.Fatalf("two keys: got %d keys, %+v", len(keys), probs)
	}
}

func TestYAMLSyntaxError(t *testing.T) {
	_, err := Parse("x.yaml", []byte("cluster:\n  name: [his\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "x.yaml:") {
		t.Fatalf("got %v", err)
	}
}

func TestParsePorts(t *testing.T) {
	for in, ok := range map[string]bool{"80": true, "8000-8100": true, "all": true, "0": false, "90-80": false, "x": false, "70000": false} {
		if _, err := ParsePorts(in); (err == nil) != ok {
			t.Errorf("ParsePorts(%q) err=%v", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []string{"spec.yaml", "five-mistakes.yaml"} {
		b, _ := os.ReadFile(filepath.Join("testdata", n))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

// A control.group that does not exist is refused where it is set, not
// ignored at run time.
func TestControlGroupMustExist(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("control.group is refused on Windows altogether")
	}
	dir := testenv.TempDir(t)
	k, _ := NewKey()
	os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(k), 0o600)
	base := "cluster: { name: t, key_file: cluster.key }\nnode: { name: a, priority: 1 }\nheartbeat: { bind: 127.0.0.1 }\n"
	_, err := Parse(filepath.Join(dir, "c.yaml"), []byte(base+"control:\n  group: no-such-group-here\n"))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:5: control.group: no group") {
		t.Fatalf("nonexistent group: %v", err)
	}
	if _, err := Parse(filepath.Join(dir, "c.yaml"), []byte(base+"control:\n  group: root\n")); err != nil {
		t.Fatalf("group root: %v", err)
	}
}

// TestIPv6VIPs: IPv6 load-balanced and group VIPs are accepted on Linux
// (the datapath: internal/vip's TestDatapathIPv6, TestGroupVIPFenceIPv6;
// e2e: TestNLBIPv6, TestGroupFailoverIPv6) and refused elsewhere with the
// reason; igmp mode, IPv4 multicast, is refused for an IPv6 VIP.
func TestIPv6VIPs(t *testing.T) {
	p := copyWithKey(t, "spec.yaml")
	data, _ := os.ReadFile(p)
	s := strings.Replace(string(data), "vip: 172.16.1.1/27", "vip: fd00::1/64", 1)
	s = strings.Replace(s, "address: 172.16.2.1/28", "address: fd00::2/64", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if runtime.GOOS == "linux" {
		if err != nil {
			t.Fatalf("IPv6 VIPs refused on Linux: %v", err)
		}
	} else {
		lb := ":19: load_balancing[0].vip: \"fd00::1/64\": IPv6 load-balanced VIPs need a Linux node"
		group := ":42: failover.groups[0].vip.address: \"fd00::2/64\": IPv6 group VIPs need a Linux node"
		for _, w := range []string{lb, group} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("on %s: missing %q in:\n%v", runtime.GOOS, w, err)
			}
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	s = strings.Replace(s, "mode: multicast", "mode: igmp", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "load_balancing[0].mode: igmp: IPv4 only") {
		t.Errorf("igmp mode with an IPv6 VIP: %v", err)
	}
}

// TestUIConfig: the console's settings are checked where they are set:
// actions need tokens, tokens need actions, actions off loopback need
// HTTPS, and the tokens file's problems are reported at its lines.
func TestUIConfig(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := testenv.TempDir(t)
	k, _ := NewKey()
	os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(k), 0o600)
	good := filepath.Join(dir, "tokens")
	os.WriteFile(good, []byte("# operators\nalice 0123456789abcdef0123456789abcdef\nbob   fedcba9876543210fedcba9876543210\n"), 0o600)
	bad := filepath.Join(dir, "bad-tokens")
	os.WriteFile(bad, []byte("alice short\nbob 0123456789abcdef0123456789abcdef extra\ncarol 0123456789abcdef0123456789abcdef\ncarol fedcba9876543210fedcba9876543210\ndave 0123456789abcdef0123456789abcdef\n"), 0o600)
	open := filepath.Join(dir, "open-tokens")
	os.WriteFile(open, []byte("alice 0123456789abcdef0123456789abcdef\n"), 0o644)
	for _, c := range []struct {
		name, ui string
		want     []string // "" = valid
	}{
		{"read-only", "ui:\n  listen: 0.0.0.0:8080\n", nil},
		{"actions on loopback", "ui:\n  listen: 127.0.0.1:8080\n  actions: true\n  tokens_file: " + good + "\n", nil},
		{"actions without tokens", "ui:\n  listen: 127.0.0.1:8080\n  actions: true\n", []string{"ui.tokens_file: required with ui.actions"}},
		{"actions in clear", "ui:\n  listen: 10.0.0.1:8080\n  actions: true\n  tokens_file: " + good + "\n", []string{"ui.actions: on 10.0.0.1:8080 the tokens would cross the network in clear"}},
		{"tokens without actions", "ui:\n  listen: 127.0.0.1:8080\n  tokens_file: " + good + "\n", []string{"ui.tokens_file: set, but ui.actions is off"}},
		{"cert without key", "ui:\n  listen: 127.0.0.1:8080\n  cert_file: c.pem\n", []string{"ui.cert_file: cert_file and key_file go together"}},
		{"no listen", "ui:\n  actions: true\n", []string{"ui.listen: required"}},
		{"bad listen", "ui:\n  listen: nowhere\n", []string{"ui.listen: \"nowhere\": want HOST:PORT"}},
		{"bad tokens file", "ui:\n  listen: 127.0.0.1:8080\n  actions: true\n  tokens_file: " + bad + "\n", []string{
			bad + ":1: the token of alice must be 32 to 256",
			bad + ":2: want NAME TOKEN",
			bad + ":4: carol is listed twice",
			bad + ":5: dave has the same token as carol",
		}},
		{"readable tokens file", "ui:\n  listen: 127.0.0.1:8080\n  actions: true\n  tokens_file: " + open + "\n", []string{"is readable by"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "readable tokens file" {
				makeReadable(t, open)
			}
			p := filepath.Join(dir, "c.yaml")
			os.WriteFile(p, append(append([]byte{}, base...), []byte(c.ui)...), 0o644)
			cfg, err := Load(p)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.name == "actions on loopback" && (cfg.UI.Tokens["0123456789abcdef0123456789abcdef"] != "alice" || len(cfg.UI.Tokens) != 2) {
					t.Errorf("tokens: %v", cfg.UI.Tokens)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("alice 0123456789abcdef0123456789abcdef\n# c\n\nbob x\n"))
	f.Add([]byte("\x00\xff \t\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, _ := parseTokens(data)
		for tok, name := range toks {
			if len(tok) < MinTokenLen || !nameRE.MatchString(name) {
				t.Fatalf("accepted %q for %q", tok, name)
			}
		}
	})
}
