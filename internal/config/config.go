// Package config turns a clusterd YAML file into a typed, validated Config.
//
// Every problem is reported as FILE:LINE: message, all of them in one pass,
// so an operator fixes a file once instead of once per error.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "500ms", "10s" or "1h" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the human form, so hashes and dumps read like the file.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Config is a whole clusterd config file.
type Config struct {
	Cluster       ClusterConfig   `yaml:"cluster" json:"cluster"`
	Node          NodeConfig      `yaml:"node" json:"node"`
	Heartbeat     HeartbeatConfig `yaml:"heartbeat" json:"heartbeat"`
	Control       ControlConfig   `yaml:"control" json:"control"`
	LoadBalancing []VIPConfig     `yaml:"load_balancing" json:"load_balancing"`
	Quorum        *QuorumConfig   `yaml:"quorum" json:"quorum,omitempty"`
	Failover      FailoverConfig  `yaml:"failover" json:"failover"`
	SNMP          SNMPConfig      `yaml:"snmp" json:"snmp"`
	Metrics       MetricsConfig   `yaml:"metrics" json:"metrics"`
	UI            UIConfig        `yaml:"ui" json:"ui"`

	// Path is the file this config came from ("" for DefaultConfig).
	Path string `yaml:"-" json:"-"`
	// Keys are the cluster keys read from Cluster.KeyFile: the first
	// encrypts, all decrypt (see docs/operations.md, key rotation).
	Keys [][]byte `yaml:"-" json:"-"`

	lines map[string]int
}

// ClusterConfig names the cluster and holds its shared secret.
type ClusterConfig struct {
	Name    string `yaml:"name" json:"name"`
	KeyFile string `yaml:"key_file" json:"key_file"`
}

// NodeConfig describes this node.
type NodeConfig struct {
	Name          string   `yaml:"name" json:"name"`
	Priority      int      `yaml:"priority" json:"priority"`
	StateDir      string   `yaml:"state_dir" json:"state_dir"`
	ShutdownDrain Duration `yaml:"shutdown_drain" json:"shutdown_drain"`
}

// HeartbeatConfig is membership and failure detection.
type HeartbeatConfig struct {
	Bind       string   `yaml:"bind" json:"bind"`
	Port       int      `yaml:"port" json:"port"`
	ProbePort  int      `yaml:"probe_port" json:"probe_port"`
	Join       []string `yaml:"join" json:"join"`
	BackupBind string   `yaml:"backup_bind" json:"backup_bind"`
	Profile    string   `yaml:"profile" json:"profile"`
	ReapAfter  Duration `yaml:"reap_after" json:"reap_after"`
	// Realtime runs the heartbeat's threads under SCHED_RR on Linux so that
	// busy processes are less likely to delay heartbeats into a false
	// failure (as corosync does).
	Realtime *bool `yaml:"realtime" json:"realtime"`
}

// ControlConfig is the local control endpoint used by clusterctl.
type ControlConfig struct {
	Socket string `yaml:"socket" json:"socket"`
	Group  string `yaml:"group" json:"group"`
}

// VIPConfig is one load-balanced virtual IP (the NLB tier).
type VIPConfig struct {
	VIP       string       `yaml:"vip" json:"vip"`
	Interface string       `yaml:"interface" json:"interface"`
	Mode      string       `yaml:"mode" json:"mode"`
	Rules     []RuleConfig `yaml:"rules" json:"rules"`
	Health    *HealthCheck `yaml:"health" json:"health,omitempty"`
}

// RuleConfig is one port rule of a VIP.
type RuleConfig struct {
	Ports            string `yaml:"ports" json:"ports"`
	Protocol         string `yaml:"protocol" json:"protocol"`
	Filtering        string `yaml:"filtering" json:"filtering"`
	Affinity         string `yaml:"affinity" json:"affinity"`
	Weight           *int   `yaml:"weight" json:"-"`
	HandlingPriority int    `yaml:"handling_priority" json:"-"`
}

// HealthCheck is a local service check; exactly one of HTTP, TCP, Exec.
type HealthCheck struct {
	HTTP     string   `yaml:"http" json:"http,omitempty"`
	TCP      string   `yaml:"tcp" json:"tcp,omitempty"`
	Exec     []string `yaml:"exec" json:"exec,omitempty"`
	Interval Duration `yaml:"interval" json:"interval"`
	Timeout  Duration `yaml:"timeout" json:"timeout"`
	Fall     int      `yaml:"fall" json:"fall"`
	Rise     int      `yaml:"rise" json:"rise"`
}

// QuorumConfig names the nodes that vote on group ownership.
type QuorumConfig struct {
	Voters []string `yaml:"voters" json:"voters"`
	Port   int      `yaml:"port" json:"port"`
}

// FailoverConfig holds the MSCS-style failover groups.
type FailoverConfig struct {
	Groups []GroupConfig `yaml:"groups" json:"groups"`
}

// GroupConfig is one failover group.
type GroupConfig struct {
	Name     string         `yaml:"name" json:"name"`
	Owners   []string       `yaml:"owners" json:"owners"`
	Failback string         `yaml:"failback" json:"failback"`
	VIP      *GroupVIP      `yaml:"vip" json:"vip,omitempty"`
	Resource ResourceConfig `yaml:"resource" json:"resource"`
}

// GroupVIP is the address that follows a group's owner.
type GroupVIP struct {
	Address   string `yaml:"address" json:"address"`
	Interface string `yaml:"interface" json:"interface"`
}

// Resource types: what a group's resource.type names.
const (
	ResourceExec       = "exec"       // the operator's start/stop/monitor commands (OCF exit codes)
	ResourcePostgreSQL = "postgresql" // a PostgreSQL primary and streaming standby the agent manages
	ResourceService    = "service"    // a systemd unit or Windows service
)

// ResourceConfig is what a group runs.
type ResourceConfig struct {
	Type            string   `yaml:"type" json:"type"`
	BinDir          string   `yaml:"bin_dir" json:"bin_dir,omitempty"`
	DataDir         string   `yaml:"data_dir" json:"-"`
	Port            int      `yaml:"port" json:"port,omitempty"`
	OSUser          string   `yaml:"os_user" json:"-"`
	ReplicationUser string   `yaml:"replication_user" json:"replication_user,omitempty"`
	PasswordFile    string   `yaml:"password_file" json:"-"`
	Synchronous     *bool    `yaml:"synchronous" json:"synchronous,omitempty"`
	HBA             []string `yaml:"hba" json:"hba,omitempty"` // postgresql: extra pg_hba.conf lines (the applications' access), kept the same on every owner
	Start           []string `yaml:"start" json:"start,omitempty"`
	Stop            []string `yaml:"stop" json:"stop,omitempty"`
	Monitor         []string `yaml:"monitor" json:"monitor,omitempty"`
	Promote         []string `yaml:"promote" json:"promote,omitempty"`
	Demote          []string `yaml:"demote" json:"demote,omitempty"`
	Unit            string   `yaml:"unit" json:"unit,omitempty"`
	Name            string   `yaml:"name" json:"name,omitempty"`
}

// SNMPConfig is traps and the polling agent.
type SNMPConfig struct {
	Traps []TrapTarget  `yaml:"traps" json:"-"`
	Agent *SNMPAgentCfg `yaml:"agent" json:"-"`
}

// TrapTarget is one trap receiver.
type TrapTarget struct {
	Target        string `yaml:"target"`
	Version       string `yaml:"version"`
	Community     string `yaml:"community"`
	Inform        bool   `yaml:"inform"`
	User          string `yaml:"user"`
	AuthProtocol  string `yaml:"auth_protocol"`
	AuthPassphase string `yaml:"auth_passphrase"`
	PrivProtocol  string `yaml:"priv_protocol"`
	PrivPassphase string `yaml:"priv_passphrase"`
}

// SNMPAgentCfg is the polling side.
type SNMPAgentCfg struct {
	AgentX    string `yaml:"agentx"`
	Listen    string `yaml:"listen"`
	Community string `yaml:"community"`
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

// UIConfig is the web console (docs/console.md). It is off unless Listen
// is set, and read-only unless Actions is on.
type UIConfig struct {
	Listen string `yaml:"listen" json:"listen"`
	// Actions: drain, resume and move from the page, for the holders of
	// a token in TokensFile.
	Actions    bool   `yaml:"actions" json:"actions"`
	TokensFile string `yaml:"tokens_file" json:"tokens_file"`
	// CertFile and KeyFile serve the console over HTTPS.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`

	// Tokens read from TokensFile: the operator's name by token.
	Tokens map[string]string `yaml:"-" json:"-"`
}

// Heartbeat profiles. The failure-detection figures of each are in
// internal/heartbeat/profile.go and docs/operations.md.
const (
	ProfileLAN  = "lan"
	ProfileFast = "fast"
)

// DefaultConfig returns a complete config; a file only sets what differs.
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	rt := runtime.GOOS == "linux"
	return &Config{
		Node: NodeConfig{
			// The hostname is what operators already call the server.
			Name: host,
			// State that must survive a restart (drain state, quorum data).
			StateDir: defaultStateDir(),
			// Long enough for a typical HIS request to finish; short enough
			// that a service stop does not hang a maintenance window.
			ShutdownDrain: Duration(10 * time.Second),
		},
		Heartbeat: HeartbeatConfig{
			// memberlist's customary port; its gossip runs on UDP and TCP.
			Port: 7946,
			// The fast all-to-all heartbeat (UDP) beside memberlist; 7947 is
			// taken by the quorum service.
			ProbePort: 7948,
			// lan: failed ~0.4 s after the last heartbeat; see profile.go.
			Profile: ProfileLAN,
			// A failed node stays visible for an hour: long enough for the
			// night shift to see what happened, short enough not to clutter.
			ReapAfter: Duration(time.Hour),
			Realtime:  &rt,
		},
		Control: ControlConfig{Socket: DefaultSocket()},
	}
}

// Load reads, decodes and validates a config file. A returned *Errors holds
// every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates config text that came from path.
func Parse(path string, data []byte) (*Config, error) {
	c := DefaultConfig()
	c.Path = path
	errs := &Errors{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		var te *yaml.TypeError
		line := 0
		if !errors.As(err, &te) {
			line = yamlErrLine(err)
		}
		errs.Add(path, line, "not valid YAML: "+trimYAMLErr(err))
		return nil, errs.errOrNil()
	}
	d := &decoder{file: path, errs: errs, lines: map[string]int{}}
	if len(root.Content) == 0 {
		errs.Add(path, 1, "the file is empty; at least cluster.name and cluster.key_file are required")
		return nil, errs.errOrNil()
	}
	d.decode(&root, reflect.ValueOf(c).Elem(), "")
	c.lines = d.lines
	c.fillDefaults()
	c.validate(errs)
	if err := errs.errOrNil(); err != nil {
		return nil, err
	}
	return c, nil
}

// Line returns the line of a field path such as "load_balancing[0].vip",
// falling back to its closest parent, so callers can point at the file.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		cut := -1
		for i := len(path) - 1; i >= 0; i-- {
			if path[i] == '.' || path[i] == '[' {
				cut = i
				break
			}
		}
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 0
}

// SharedHashes returns a short hash of each cluster-wide section. Nodes
// exchange them in their metadata: a node whose shared settings differ is
// flagged, naming the section (NLB refuses mismatched port rules).
func (c *Config) SharedHashes() map[string]string {
	type ruleShared struct {
		Ports, Protocol, Filtering, Affinity string
	}
	type vipShared struct {
		VIP, Mode string
		Rules     []ruleShared
	}
	vips := make([]vipShared, 0, len(c.LoadBalancing))
	for _, v := range c.LoadBalancing {
		vs := vipShared{VIP: v.VIP, Mode: v.Mode}
		for _, r := range v.Rules {
			vs.Rules = append(vs.Rules, ruleShared{r.Ports, r.Protocol, r.Filtering, r.Affinity})
		}
		vips = append(vips, vs)
	}
	h := func(v any) string {
		b, _ := json.Marshal(v)
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:4])
	}
	out := map[string]string{
		"heartbeat.profile": h(c.Heartbeat.Profile),
		"quorum":            h(c.Quorum),
		"failover.groups":   h(c.Failover.Groups),
	}
	// A node without VIPs (a database node) takes no part in them and
	// announces no load_balancing hash; nodes that serve VIPs must agree.
	if len(vips) > 0 {
		out["load_balancing"] = h(vips)
	}
	return out
}

// OptionalShared lists the shared sections a node may leave out (it then
// takes no part in them); the others must be the same on every node.
var OptionalShared = map[string]bool{"load_balancing": true}
