// Package systemd holds the one systemd unit of clusterd: the packages
// install clusterd.service as is, and `clusterd service install` writes
// it with the binary's and the config's paths (Unit).
package systemd

import (
	_ "embed"
	"strings"
)

//go:embed clusterd.service
var unit string

// Packaged paths in clusterd.service.
const (
	PackagedBinary = "/usr/bin/clusterd"
	PackagedConfig = "/etc/clusterd/clusterd.yaml"
)

// Unit returns clusterd.service for a binary and a config at other paths
// than the packaged ones.
func Unit(binary, config string) string {
	return strings.NewReplacer(PackagedBinary+" ", binary+" ", PackagedConfig, config).Replace(unit)
}
