//go:build linux

package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildAt builds clusterd and clusterctl as they were at commit (from
// this repository's history, exported with git archive) into a new
// directory, announcing version; it skips the test when the history or
// git is not there (a shallow clone, a source tarball).
func BuildAt(t TB, commit, version string) string {
	t.Helper()
	skip := func(why string) {
		if s, ok := t.(Skipper); ok {
			s.Skip(why)
		}
		t.Fatalf("%s", why)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		skip("skipping: no git to build the previous release with")
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		skip(fmt.Sprintf("skipping: commit %s (the previous release) is not in this checkout's history (a shallow clone?)", commit))
	}
	src, err := os.MkdirTemp("", "clusterd-release-src-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer os.RemoveAll(src)
	arch := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, commit, src))
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("exporting %s: %v\n%s", commit, err, out)
	}
	bin, err := os.MkdirTemp("", "clusterd-release-bin-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	build := exec.Command("go", "build", "-ldflags", "-X github.com/clusterd/clusterd/internal/version.Version="+version,
		"-o", bin, "./cmd/clusterd", "./cmd/clusterctl")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", commit, err, strings.TrimSpace(string(out)))
	}
	for _, b := range []string{"clusterd", "clusterctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("building %s: %v", commit, err)
		}
	}
	return bin
}
