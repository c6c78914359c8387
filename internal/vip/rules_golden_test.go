//go:build linux

package vip

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// renderExpr prints an expression with its fields, in a stable form.
func renderExpr(e expr.Any) string {
	v := reflect.ValueOf(e).Elem()
	t := v.Type()
	var parts []string
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%v", t.Field(i).Name, f.Interface()))
	}
	return t.Name() + "{" + strings.Join(parts, " ") + "}"
}

func renderRules(rules []*nftables.Rule) string {
	var b strings.Builder
	for i, r := range rules {
		fmt.Fprintf(&b, "rule %d", i)
		if len(r.UserData) > 0 {
			fmt.Fprintf(&b, " [%s]", r.UserData)
		}
		b.WriteString("\n")
		for _, e := range r.Exprs {
			b.WriteString("  " + renderExpr(e) + "\n")
		}
	}
	return b.String()
}

// TestRulesGolden pins the nftables rules the datapath generates for each
// mode, filtering, affinity and protocol (expression by expression), so a
// change to them is a reviewed change: go test ./internal/vip -run
// TestRulesGolden -update rewrites testdata/*.rules.
func TestRulesGolden(t *testing.T) {
	live := &nftables.Set{Name: "live", ID: 1, KeyType: nftables.TypeIPAddr}
	def := &nftables.Set{Name: "default_0", ID: 2, KeyType: nftables.TypeIPAddr}
	planAt := func(addr, mode string, rules ...RulePlan) VIPPlan {
		pfx := netip.MustParsePrefix(addr)
		mac, _ := ClusterMAC(mode, pfx.Addr())
		return VIPPlan{Index: 0, Addr: pfx, Interface: "eth0", Mode: mode, MAC: mac, Seed: 0x1234, Rules: rules}
	}
	plan := func(mode string, rules ...RulePlan) VIPPlan { return planAt("10.1.1.100/24", mode, rules...) }
	own := func(ri int, proto uint8) string { return ownKey{0, ri, proto}.chain() }
	for name, p := range map[string]VIPPlan{
		"multicast-http":  plan("multicast", RulePlan{Lo: 80, Hi: 80, Protos: []uint8{6}, Affinity: "none", Filtering: "multiple"}),
		"unicast-both":    plan("unicast", RulePlan{Lo: 53, Hi: 53, Protos: []uint8{6, 17}, Affinity: "single", Filtering: "multiple"}),
		"igmp-disabled":   plan("igmp", RulePlan{Lo: 0, Hi: 65535, Protos: []uint8{6}, Affinity: "network", Filtering: "disabled"}),
		"ipv6-multicast":  planAt("fd00:1::100/64", "multicast", RulePlan{Lo: 80, Hi: 80, Protos: []uint8{6}, Affinity: "none", Filtering: "multiple"}),
		"ipv6-unicast":    planAt("fd00:1::100/64", "unicast", RulePlan{Lo: 53, Hi: 53, Protos: []uint8{6, 17}, Affinity: "single", Filtering: "single"}),
		"multicast-rules": plan("multicast", RulePlan{Lo: 80, Hi: 80, Protos: []uint8{6}, Affinity: "none", Filtering: "multiple"}, RulePlan{Lo: 8000, Hi: 8100, Protos: []uint8{6}, Affinity: "single", Filtering: "single"}),
	} {
		t.Run(name, func(t *testing.T) {
			got := renderRules(vipRules(p, live, def, own))
			for _, aff := range []string{"none", "single", "network"} {
				got += "hash " + aff + "\n"
				for _, e := range hashExprs(familyOf(p.Addr.Addr()), aff, p.Seed) {
					got += "  " + renderExpr(e) + "\n"
				}
			}
			if p.Mode == "unicast" {
				got += "ingress " + p.Interface + "\n" + renderRules([]*nftables.Rule{unicastRule(p)})
			}
			golden := filepath.Join("testdata", name+".rules")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("the generated rules changed; if intended, run with -update and review the diff.\ngot:\n%s", got)
			}
		})
	}
}
