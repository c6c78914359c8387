//go:build linux

// Package package_test installs, upgrades and purges the .deb on this
// machine (as CI does on its fresh one) and checks the .rpm's contents.
package package_test

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// build makes the .deb (and with rpm the whole package set) at version v
// into a new directory and returns it.
func build(t *testing.T, target, v string) string {
	t.Helper()
	dist := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("make", "-C", "../..", target, "VERSION="+v, "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, out)
	}
	return dist
}

func one(t *testing.T, dir, glob string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, glob))
	if len(m) != 1 {
		t.Fatalf("%s in %s: %v", glob, dir, m)
	}
	return m[0]
}

// TestDebInstallUpgradePurge: install the .deb, validate the example
// config with the installed binary, check the unit, upgrade to a second
// build with the conffile edited (kept), purge (nothing left but the
// system group, which Debian policy keeps).
func TestDebInstallUpgradePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: installing a package needs root (run as root: ./scripts/test.sh)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("skipping: no dpkg on this machine")
	}
	if _, err := os.Stat("/usr/bin/clusterd"); err == nil {
		if exec.Command("dpkg", "-s", "clusterd").Run() != nil {
			t.Skip("skipping: /usr/bin/clusterd exists and is not from the package; not overwriting it")
		}
	}
	v1, v2 := "0.1.0~test1", "0.1.0~test2"
	d1, d2 := build(t, "deb", v1), build(t, "deb", v2)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "clusterd").Run() })

	run(t, "dpkg", "-i", one(t, d1, "*.deb"))
	if out := run(t, "/usr/bin/clusterd", "validate", "--config", "/etc/clusterd/clusterd.yaml"); !strings.Contains(out, "ok") {
		t.Errorf("validate of the packaged example: %s", out)
	}
	if out := run(t, "/usr/bin/clusterctl", "version"); !strings.Contains(out, v1) {
		t.Errorf("clusterctl version after install: %q, want %s", out, v1)
	}
	// Man pages and completions, generated at build time from the
	// programs themselves.
	for _, p := range []string{"/usr/share/man/man1/clusterctl.1.gz", "/usr/share/man/man8/clusterd.8.gz",
		"/usr/share/bash-completion/completions/clusterctl", "/usr/share/bash-completion/completions/clusterd",
		"/usr/share/zsh/vendor-completions/_clusterctl", "/usr/share/fish/vendor_completions.d/clusterctl.fish"} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("the package lacks %s: %v", p, err)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		if out := run(t, "man", "-l", "/usr/share/man/man1/clusterctl.1.gz"); !strings.Contains(out, "clusterctl - operate a clusterd cluster") {
			t.Errorf("man clusterctl: %.300s", out)
		}
	}
	if st, err := os.Stat("/etc/clusterd/cluster.key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the cluster key made at install: %v %v", st, err)
	}
	if exec.Command("getent", "group", "clusterd").Run() != nil {
		t.Error("no clusterd system group after install")
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		run(t, "systemd-analyze", "verify", "/lib/systemd/system/clusterd.service")
		out := run(t, "systemd-analyze", "security", "--offline=true", "/lib/systemd/system/clusterd.service")
		m := regexp.MustCompile(`Overall exposure level for clusterd.service: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		if x, _ := strconv.ParseFloat(m[1], 64); x > 5.0 {
			t.Errorf("systemd-analyze security: exposure %s, want <= 5.0", m[1])
		}
		t.Logf("systemd-analyze security --offline: exposure %s", m[1])
	} else {
		t.Log("no systemd-analyze here: the unit is not checked")
	}

	const edit = "\n# edited by the operator\n"
	f, err := os.OpenFile("/etc/clusterd/clusterd.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edit)
	f.Close()
	run(t, "dpkg", "-i", one(t, d2, "*.deb"))
	if out := run(t, "/usr/bin/clusterctl", "version"); !strings.Contains(out, v2) {
		t.Errorf("clusterctl version after the upgrade: %q, want %s", out, v2)
	}
	if b, _ := os.ReadFile("/etc/clusterd/clusterd.yaml"); !strings.Contains(string(b), edit) {
		t.Error("the upgrade replaced the edited config")
	}

	run(t, "dpkg", "--purge", "clusterd")
	for _, p := range []string{"/usr/bin/clusterd", "/usr/bin/clusterctl", "/etc/clusterd", "/var/lib/clusterd",
		"/lib/systemd/system/clusterd.service", "/usr/share/doc/clusterd", "/usr/share/snmp/mibs/CLUSTERD-MIB.txt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there after purge", p)
		}
	}
}

// TestRPMContents: the .rpm holds the same files and installs into a
// scratch root; the Windows .zip holds both programs, the example config,
// the MIB and the install note.
func TestRPMContents(t *testing.T) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("skipping: no rpm here (apt-get install rpm)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: builds with make package; run as root with the other package tests")
	}
	d := build(t, "package", "0.1.0~test1")
	rpm := one(t, d, "*.rpm")
	list := run(t, "rpm", "-qlp", rpm)
	for _, p := range []string{"/usr/bin/clusterd", "/usr/bin/clusterctl", "/usr/lib/systemd/system/clusterd.service",
		"/etc/clusterd/clusterd.yaml", "/usr/share/snmp/mibs/CLUSTERD-MIB.txt", "/usr/share/clusterd/cacti/clusterd_templates.xml",
		"/usr/share/man/man1/clusterctl.1.gz", "/usr/share/zsh/site-functions/_clusterctl", "/usr/share/bash-completion/completions/clusterctl"} {
		if !strings.Contains(list, p+"\n") {
			t.Errorf("the rpm lacks %s:\n%s", p, list)
		}
	}
	if cf := run(t, "rpm", "-qcp", rpm); !strings.Contains(cf, "/etc/clusterd/clusterd.yaml") {
		t.Errorf("the config is not a %%config file: %s", cf)
	}
	root := t.TempDir()
	run(t, "rpm", "--root", root, "--dbpath", filepath.Join(root, "rpmdb"), "--nodeps", "--noscripts", "-i", rpm)
	if out := run(t, filepath.Join(root, "usr/bin/clusterctl"), "version"); !strings.Contains(out, "0.1.0~test1") {
		t.Errorf("clusterctl from the rpm root: %q", out)
	}
	zr, err := zip.OpenReader(one(t, d, "*_windows_amd64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	for _, p := range []string{"clusterd.exe", "clusterctl.exe", "clusterd.yaml", "CLUSTERD-MIB.txt", "INSTALL.txt", "clusterctl-completion.ps1"} {
		if !slices.Contains(names, p) {
			t.Errorf("the Windows zip lacks %s: %v", p, names)
		}
	}
}
