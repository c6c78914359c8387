package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/clusterd/clusterd/internal/testenv"
)

// TestDocExamples: the example configs in docs/examples are valid (with a
// real key file in place of the documented path).
func TestDocExamples(t *testing.T) {
	files, _ := filepath.Glob("../../docs/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	dir := testenv.TempDir(t)
	k, _ := NewKey()
	key := filepath.Join(dir, "cluster.key")
	os.WriteFile(key, []byte(k), 0o600)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(b), "/etc/clusterd/cluster.key", key, 1)
		_, err = Parse(f, []byte(text))
		if want := refusedHere(f); want != "" {
			// Checked under Wine (scripts/test.sh): the one refusal,
			// at its line, and nothing else.
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) != 1 || !strings.Contains(err.Error(), want) {
				t.Errorf("%s on %s: want only %q, got:\n%v", f, runtime.GOOS, want, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s does not validate:\n%v", f, err)
		}
	}
}

// refusedHere is the error an example gets on this OS: the database
// node's PostgreSQL group needs a Linux owner.
func refusedHere(file string) string {
	if runtime.GOOS != "linux" && filepath.Base(file) == "his-db1.yaml" {
		return ":25: failover.groups[0].resource.type: postgresql: the PostgreSQL resource needs a Linux owner"
	}
	return ""
}

// TestValidateOnlyChecks: defaults are filled in before validation
// (fillDefaults), and validation changes nothing: a parsed example
// validated again is unchanged, and one whose defaulted fields are emptied
// again stays empty (before, validate itself filled in list items'
// defaults).
func TestValidateOnlyChecks(t *testing.T) {
	files, _ := filepath.Glob("../../docs/examples/*.yaml")
	dir := testenv.TempDir(t)
	k, _ := NewKey()
	key := filepath.Join(dir, "cluster.key")
	os.WriteFile(key, []byte(k), 0o600)
	emptied := 0
	for _, f := range files {
		if refusedHere(f) != "" {
			continue
		}
		b, _ := os.ReadFile(f)
		c, err := Parse(f, []byte(strings.Replace(string(b), "/etc/clusterd/cluster.key", key, 1)))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(c)
		errs := &Errors{}
		c.validate(errs)
		after, _ := json.Marshal(c)
		if string(before) != string(after) || errs.errOrNil() != nil {
			t.Errorf("%s: validate changed the config (%v):\n%s\n%s", f, errs.errOrNil(), before, after)
		}
		for i := range c.LoadBalancing {
			c.LoadBalancing[i].Mode = ""
			for j := range c.LoadBalancing[i].Rules {
				c.LoadBalancing[i].Rules[j].Filtering = ""
				emptied++
			}
		}
		for i := range c.Failover.Groups {
			c.Failover.Groups[i].Failback = ""
			emptied++
		}
		c.validate(&Errors{})
		for _, lb := range c.LoadBalancing {
			if lb.Mode != "" {
				t.Errorf("%s: validate filled in mode %q", f, lb.Mode)
			}
			for _, r := range lb.Rules {
				if r.Filtering != "" {
					t.Errorf("%s: validate filled in filtering %q", f, r.Filtering)
				}
			}
		}
		for _, g := range c.Failover.Groups {
			if g.Failback != "" {
				t.Errorf("%s: validate filled in failback %q", f, g.Failback)
			}
		}
	}
	if emptied == 0 {
		t.Fatal("no example with a VIP rule or a group")
	}
}
