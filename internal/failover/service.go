package failover

import (
	"runtime"

	"github.com/clusterd/clusterd/internal/config"
)

// newService runs a system service as a resource without roles, through
// the OS's own service manager: systemd's systemctl, or the Windows
// service control manager through PowerShell.
func newService(rc config.ResourceConfig) (Resource, error) {
	if runtime.GOOS == "windows" {
		name := rc.Name
		if name == "" {
			name = rc.Unit
		}
		ps := func(script string) []string {
			return []string{"powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script}
		}
		return &execResource{cfg: config.ResourceConfig{
			Start: ps("Start-Service -Name '" + name + "'"),
			Stop:  ps("Stop-Service -Force -Name '" + name + "'"),
			// OCF: 0 running, 7 not running.
			Monitor: ps("if ((Get-Service -Name '" + name + "').Status -eq 'Running') { exit 0 } else { exit 7 }"),
		}}, nil
	}
	unit := rc.Unit
	if unit == "" {
		unit = rc.Name
	}
	return &execResource{
		cfg: config.ResourceConfig{
			Start:   []string{"systemctl", "start", unit},
			Stop:    []string{"systemctl", "stop", unit},
			Monitor: []string{"systemctl", "is-active", "--quiet", unit},
		},
		// systemctl is-active exits 3 for an inactive unit.
		notRunning: []int{3},
	}, nil
}
