package agent

import (
	"fmt"
	"maps"

	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/failover"
	"github.com/clusterd/clusterd/internal/heartbeat"
	"github.com/clusterd/clusterd/internal/vip"
)

// CheckMetadata refuses a config whose node metadata could outgrow what
// memberlist carries (512 bytes): peers would then refuse the node. It
// counts the largest values every part can announce (a leading voter with
// every group's summary), so a config it accepts always fits.
func CheckMetadata(cfg *config.Config) error {
	ext := vip.WorstExt(cfg.LoadBalancing)
	maps.Copy(ext, failover.WorstExt(cfg))
	n := heartbeat.WorstMetaSize(cfg.Node.Priority, cfg.Heartbeat.BackupBind, cfg.Heartbeat.ProbePort, cfg.SharedHashes(), ext)
	if n <= heartbeat.MetaLimit {
		return nil
	}
	key := "failover.groups"
	if len(cfg.Failover.Groups) == 0 {
		key = "load_balancing"
	}
	return &config.Errors{List: []config.Error{{File: cfg.Path, Line: cfg.Line(key),
		Msg: fmt.Sprintf("%s: this node's cluster metadata could reach %d bytes, over the %d that membership carries (each failover group adds about 50 bytes and its name, each VIP its rules): use shorter group and node names, or fewer groups or VIPs",
			key, n, heartbeat.MetaLimit)}}}
}
