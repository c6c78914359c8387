// Package version reports what build this is.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/clusterd/clusterd/internal/version.Version=..."
var (
	Version = "dev"
	Commit  = ""
)

// Short is the version alone, as members announce it.
func Short() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

// String is "VERSION (commit COMMIT, goX.Y)". Without ldflags (a plain
// go build or go install) the version and commit come from what the Go
// toolchain stamped into the binary from git.
func String() string {
	c := Commit
	if bi, ok := debug.ReadBuildInfo(); ok && c == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				c = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s %s/%s)", Short(), c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
