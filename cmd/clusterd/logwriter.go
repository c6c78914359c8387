package main

import (
	"io"
	"os"
)

// logWriter is where a service's logs go: stderr, which systemd's journal
// and the Windows service wrapper capture.
func logWriter() io.Writer { return os.Stderr }
