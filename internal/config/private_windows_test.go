package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/clusterd/clusterd/internal/testenv"
)

// The access-list check: SYSTEM and Administrators only passes; read
// access for anyone else, is reported.
func TestDACLExposure(t *testing.T) {
	testenv.SkipUnderWine(t, "Wine's SDDL parser gives other access lists than Windows'")
	for sddl, want := range map[string]string{
		privateSDDL: "",
		"D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;WD)":       "readable by",
		"D:P(A;;FA;;;SY)(A;;GR;;;BU)":                   "readable by",
		"D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x100000;;;WD)": "", // SYNCHRONIZE only: not read
		"O:BUD:P(A;;FA;;;SY)(A;;FA;;;BU)":               "", // its owner
		"O:SYD:P(A;;FA;;;SY)(A;;FR;;;BU)":               "readable by",
	} {
		sd, err := windows.SecurityDescriptorFromString(sddl)
		if err != nil {
			t.Fatalf("%s: %v", sddl, err)
		}
		got := daclExposure(`C:\k`, sd)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", sddl, got, want)
		}
	}
}

// Restrict leaves a file that exposed accepts. (Under Wine, which ignores
// a file's new access list, this holds because the test runs with umask
// 077: Wine derives the list from the Unix mode.)
func TestRestrict(t *testing.T) {
	f := filepath.Join(testenv.TempDir(t), "k")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Restrict(f); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(f)
	if why := exposed(f, st); why != "" {
		t.Errorf("after Restrict: %s", why)
	}
}
