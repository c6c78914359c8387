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

// String is "VERSION (commit COMMIT, goX.Y)".
func String() string {
	c := Commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s %s/%s)", Version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
