package vip

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/clusterd/clusterd/internal/statefile"
)

// sysctlRecordFile, in node.state_dir, holds the values of the kernel
// settings the datapath changed, as they were before: a clean stop
// restores them and removes the file; after a kill -9, the next agent or
// clusterd cleanup restores them from it.
const sysctlRecordFile = "sysctl.json"

func readSysctlRecord(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func writeSysctlRecord(path string, m map[string]string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return statefile.Write(path, b)
}

// restoreSysctls writes the recorded values back.
func restoreSysctls(m map[string]string) error {
	var errs []error
	for p, v := range m {
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("restoring %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
