//go:build !windows

package config

import (
	"fmt"
	"os"
)

// exposed says how a secret file (key, tokens) is open to other users, or
// "" if it is not: on Unix, any permission bit for others.
func exposed(path string, st os.FileInfo) string {
	if st.Mode().Perm()&0o007 != 0 {
		return fmt.Sprintf("is readable by other users (mode %04o); run: chmod 600 %s", st.Mode().Perm(), path)
	}
	return ""
}

// Restrict makes a secret file readable by its owner only (mode 0600).
func Restrict(path string) error { return os.Chmod(path, 0o600) }
