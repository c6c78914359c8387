package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// v collects validation problems against the lines the decoder recorded.
type v struct {
	c    *Config
	errs *Errors
}

// fileProblems reports a referenced file's problems: at the file's line,
// or (line 0: the file as a whole) at the config key naming it.
func (x v) fileProblems(key, file string, problems []KeyFileError) {
	for _, p := range problems {
		if p.Line > 0 {
			x.errs.Add(file, p.Line, p.Msg)
		} else {
			x.bad(key, "%s", p.Msg)
		}
	}
}

func (x v) bad(path, format string, args ...any) {
	x.errs.Add(x.c.Path, x.c.Line(path), path+": "+fmt.Sprintf(format, args...))
}

func (c *Config) validate(errs *Errors) {
	x := v{c, errs}

	if c.Cluster.Name == "" {
		x.bad("cluster.name", "required: the cluster's name (nodes of other clusters are refused)")
	} else if !nameRE.MatchString(c.Cluster.Name) {
		x.bad("cluster.name", "%q: use letters, digits, '.', '_' or '-' (at most 63)", c.Cluster.Name)
	}
	if c.Cluster.KeyFile == "" {
		x.bad("cluster.key_file", "required: a key file made by `clusterd keygen --out FILE`")
	} else {
		kf := c.Cluster.KeyFile
		if !filepath.IsAbs(kf) && c.Path != "" {
			kf = filepath.Join(filepath.Dir(c.Path), kf)
		}
		keys, problems := ReadKeys(kf)
		x.fileProblems("cluster.key_file", kf, problems)
		c.Keys = keys
	}

	if !nameRE.MatchString(c.Node.Name) {
		x.bad("node.name", "%q: use letters, digits, '.', '_' or '-' (at most 63)", c.Node.Name)
	}
	if c.Node.Priority < 1 || c.Node.Priority > 64 {
		x.bad("node.priority", "must be 1..64 and unique in the cluster (got %d)", c.Node.Priority)
	}
	if c.Node.StateDir == "" {
		x.bad("node.state_dir", "required")
	}
	if c.Node.ShutdownDrain < 0 {
		x.bad("node.shutdown_drain", "must not be negative")
	}

	hb := c.Heartbeat
	if hb.Bind == "" {
		x.bad("heartbeat.bind", "required: this node's address on the private (heartbeat) NIC")
	} else if _, err := netip.ParseAddr(hb.Bind); err != nil {
		x.bad("heartbeat.bind", "%q is not an IP address", hb.Bind)
	}
	x.port("heartbeat.port", hb.Port)
	x.port("heartbeat.probe_port", hb.ProbePort)
	if hb.ProbePort == hb.Port {
		x.bad("heartbeat.probe_port", "must differ from heartbeat.port (%d)", hb.Port)
	}
	for i, j := range hb.Join {
		if err := checkHostPort(j, true); err != nil {
			x.bad(fmt.Sprintf("heartbeat.join[%d]", i), "%q: %v", j, err)
		}
	}
	if hb.BackupBind != "" {
		if a, err := netip.ParseAddr(hb.BackupBind); err != nil {
			x.bad("heartbeat.backup_bind", "%q is not an IP address", hb.BackupBind)
		} else if hb.Bind == a.String() {
			x.bad("heartbeat.backup_bind", "must be an address on another NIC than heartbeat.bind")
		}
	}
	if hb.Profile != ProfileLAN && hb.Profile != ProfileFast {
		x.bad("heartbeat.profile", "%q: must be lan or fast", hb.Profile)
	}
	if hb.ReapAfter <= 0 {
		x.bad("heartbeat.reap_after", "must be positive")
	}
	if c.Control.Socket == "" {
		x.bad("control.socket", "required")
	}
	if g := c.Control.Group; g != "" {
		if err := checkGroup(g); err != nil {
			x.bad("control.group", "%v", err)
		}
	}

	c.validateLB(x)
	c.validateQuorum(x)
	c.validateGroups(x)
	c.validateSNMP(x)
	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen, false); err != nil {
			x.bad("metrics.listen", "%q: %v", c.Metrics.Listen, err)
		}
	}
	c.validateUI(x, errs)
}

func (c *Config) rel(p string) string {
	if p != "" && !filepath.IsAbs(p) && c.Path != "" {
		return filepath.Join(filepath.Dir(c.Path), p)
	}
	return p
}

func (c *Config) validateUI(x v, errs *Errors) {
	u := &c.UI
	if u.Listen == "" {
		if u.Actions || u.TokensFile != "" || u.CertFile != "" || u.KeyFile != "" {
			x.bad("ui.listen", "required when the other ui settings are set: the console's HOST:PORT, e.g. 127.0.0.1:8080")
		}
		return
	}
	host, _, err := net.SplitHostPort(u.Listen)
	if err := checkHostPort(u.Listen, false); err != nil {
		x.bad("ui.listen", "%q: %v", u.Listen, err)
		return
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		x.bad("ui.cert_file", "cert_file and key_file go together (HTTPS needs both)")
	}
	if u.Actions {
		if u.TokensFile == "" {
			x.bad("ui.tokens_file", "required with ui.actions: a file of NAME TOKEN lines, one per operator (docs/console.md)")
		}
		ip, perr := netip.ParseAddr(host)
		loopback := err == nil && (host == "localhost" || perr == nil && ip.IsLoopback())
		if !loopback && u.CertFile == "" {
			x.bad("ui.actions", "on %s the tokens would cross the network in clear: set ui.cert_file and ui.key_file, or listen on 127.0.0.1", u.Listen)
		}
	} else if u.TokensFile != "" {
		x.bad("ui.tokens_file", "set, but ui.actions is off: the console is read-only and needs no tokens")
	}
	if u.TokensFile != "" {
		f := c.rel(u.TokensFile)
		toks, problems := ReadTokens(f)
		x.fileProblems("ui.tokens_file", f, problems)
		u.Tokens = toks
	}
}

func (x v) port(path string, p int) {
	if p < 1 || p > 65535 {
		x.bad(path, "must be a port number 1..65535 (got %d)", p)
	}
}

func checkHostPort(s string, portOptional bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !portOptional {
			return fmt.Errorf("want HOST:PORT")
		}
		host, port = s, ""
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !nameRE.MatchString(host) {
			return fmt.Errorf("%q is not an address or host name", host)
		}
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port number", port)
		}
	}
	return nil
}

// PortRange is an inclusive port range; "all" is 0-65535.
type PortRange struct{ Lo, Hi uint16 }

// ParsePorts reads "80", "8000-8100" or "all".
func ParsePorts(s string) (PortRange, error) {
	if s == "all" {
		return PortRange{0, 65535}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil || a < 1 || b < a {
		return PortRange{}, fmt.Errorf("%q: want \"80\", \"8000-8100\" or \"all\"", s)
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

func (c *Config) validateLB(x v) {
	seenVIP := map[netip.Addr]string{}
	for i := range c.LoadBalancing {
		lb := &c.LoadBalancing[i]
		p := fmt.Sprintf("load_balancing[%d]", i)
		if lb.VIP == "" {
			x.bad(p+".vip", "required: the cluster IP with its prefix, e.g. 172.16.1.1/27")
		} else if pfx, err := netip.ParsePrefix(lb.VIP); err != nil {
			x.bad(p+".vip", "%q: want an IPv4 address with prefix length, e.g. 172.16.1.1/27", lb.VIP)
		} else if !pfx.Addr().Is4() && runtime.GOOS != "linux" {
			// The datapath (nftables, raw-socket ARP and ND) is Linux's.
			x.bad(p+".vip", "%q: IPv6 load-balanced VIPs need a Linux node (this one is %s); use an IPv4 address", lb.VIP, runtime.GOOS)
		} else if !pfx.Addr().Is4() && lb.Mode == "igmp" {
			// igmp mode's MAC is an IPv4 multicast group's; its IPv6 form
			// (MLD) is not implemented.
			x.bad(p+".mode", "igmp: IPv4 only, and %s is IPv6; use multicast or unicast", pfx.Addr())
		} else if other, dup := seenVIP[pfx.Addr()]; dup {
			x.bad(p+".vip", "%s is already used by %s", pfx.Addr(), other)
		} else {
			seenVIP[pfx.Addr()] = p
		}
		if lb.Interface == "" {
			x.bad(p+".interface", "required: the public NIC that carries the VIP")
		}
		if !oneOf(lb.Mode, "multicast", "igmp", "unicast") {
			x.bad(p+".mode", "%q: must be multicast, igmp or unicast", lb.Mode)
		}
		if len(lb.Rules) == 0 {
			x.bad(p+".rules", "at least one port rule is needed (e.g. ports: \"80\")")
		}
		type used struct {
			r    PortRange
			path string
		}
		byProto := map[string][]used{}
		for j := range lb.Rules {
			r := &lb.Rules[j]
			rp := fmt.Sprintf("%s.rules[%d]", p, j)
			// The default inherits node.priority (fillDefaults), which is
			// reported above if wrong: only an explicit one is checked.
			if r.HandlingPriority != c.Node.Priority && (r.HandlingPriority < 1 || r.HandlingPriority > 64) {
				x.bad(rp+".handling_priority", "must be 1..64 (got %d)", r.HandlingPriority)
			}
			pr, err := ParsePorts(r.Ports)
			if err != nil {
				x.bad(rp+".ports", "%v", err)
			}
			if !oneOf(r.Protocol, "tcp", "udp", "both") {
				x.bad(rp+".protocol", "%q: must be tcp, udp or both", r.Protocol)
			}
			if !oneOf(r.Filtering, "multiple", "single", "disabled") {
				x.bad(rp+".filtering", "%q: must be multiple, single or disabled", r.Filtering)
			}
			if !oneOf(r.Affinity, "none", "single", "network") {
				x.bad(rp+".affinity", "%q: must be none, single or network", r.Affinity)
			}
			if *r.Weight < 0 || *r.Weight > 100 {
				x.bad(rp+".weight", "must be 0..100 (got %d)", *r.Weight)
			}
			if err != nil {
				continue
			}
			protos := []string{r.Protocol}
			if r.Protocol == "both" {
				protos = []string{"tcp", "udp"}
			}
			for _, proto := range protos {
				for _, u := range byProto[proto] {
					if pr.Lo <= u.r.Hi && u.r.Lo <= pr.Hi {
						x.bad(rp+".ports", "%q overlaps the ports of %s (%s)", r.Ports, u.path, proto)
					}
				}
				byProto[proto] = append(byProto[proto], used{pr, rp})
			}
		}
		if h := lb.Health; h != nil {
			hp := p + ".health"
			n := 0
			if h.HTTP != "" {
				n++
				if !strings.HasPrefix(h.HTTP, "http://") && !strings.HasPrefix(h.HTTP, "https://") {
					x.bad(hp+".http", "%q: want a URL such as http://127.0.0.1:80/", h.HTTP)
				}
			}
			if h.TCP != "" {
				n++
				if err := checkHostPort(h.TCP, false); err != nil {
					x.bad(hp+".tcp", "%q: %v", h.TCP, err)
				}
			}
			if len(h.Exec) > 0 {
				n++
			}
			if n != 1 {
				x.bad(hp, "set exactly one of http, tcp or exec")
			}
			if h.Interval < Duration(10*time.Millisecond) {
				x.bad(hp+".interval", "must be at least 10ms")
			}
			if h.Fall < 1 || h.Rise < 1 {
				x.bad(hp, "fall and rise must be at least 1")
			}
		}
	}
}

func (c *Config) validateQuorum(x v) {
	q := c.Quorum
	if q == nil {
		return
	}
	x.port("quorum.port", q.Port)
	if q.Port == c.Heartbeat.Port || q.Port == c.Heartbeat.ProbePort {
		x.bad("quorum.port", "must differ from heartbeat.port and heartbeat.probe_port")
	}
	if len(q.Voters)%2 == 0 {
		x.bad("quorum.voters", "needs an odd number of voters (got %d); a 2-node database tier needs a third voter", len(q.Voters))
	}
	seen := map[string]bool{}
	for i, n := range q.Voters {
		if seen[n] {
			x.bad(fmt.Sprintf("quorum.voters[%d]", i), "%q is listed twice", n)
		}
		seen[n] = true
	}
}

func (c *Config) validateGroups(x v) {
	if len(c.Failover.Groups) > 0 && c.Quorum == nil {
		x.bad("failover.groups", "failover groups need a quorum section (quorum.voters): without a majority to fence by, two nodes could both run a group")
	}
	seen := map[string]bool{}
	for i := range c.Failover.Groups {
		g := &c.Failover.Groups[i]
		p := fmt.Sprintf("failover.groups[%d]", i)
		if !nameRE.MatchString(g.Name) {
			x.bad(p+".name", "%q: a group needs a name of letters, digits, '.', '_' or '-'", g.Name)
		} else if seen[g.Name] {
			x.bad(p+".name", "group %q is defined twice", g.Name)
		}
		seen[g.Name] = true
		if len(g.Owners) == 0 {
			x.bad(p+".owners", "list the nodes that may run this group, preferred first")
		}
		if !oneOf(g.Failback, "never", "immediate") {
			x.bad(p+".failback", "%q: must be never or immediate", g.Failback)
		}
		if g.VIP != nil {
			if pfx, err := netip.ParsePrefix(g.VIP.Address); err != nil {
				x.bad(p+".vip.address", "%q: want an address with prefix length, e.g. 172.16.2.1/28", g.VIP.Address)
			} else if !pfx.Addr().Is4() && runtime.GOOS != "linux" {
				// The kernel lease fence (nftables) and the neighbour
				// advertisements are Linux's; netsh adds IPv4 only here.
				x.bad(p+".vip.address", "%q: IPv6 group VIPs need a Linux node (this one is %s); use an IPv4 address", g.VIP.Address, runtime.GOOS)
			}
			if g.VIP.Interface == "" {
				x.bad(p+".vip.interface", "required")
			}
		}
		r := &g.Resource
		switch r.Type {
		case ResourcePostgreSQL:
			if runtime.GOOS != "linux" && oneOf(c.Node.Name, g.Owners...) {
				// The agent talks to its server over the Unix socket with
				// peer authentication, watches the postmaster in /proc and
				// runs pg_rewind and pg_basebackup as the server's OS user:
				// Linux's, and tested only there. A Windows node may still
				// carry the group's definition (a web server that is no
				// owner), so only an owner is refused.
				x.bad(p+".resource.type", "postgresql: the PostgreSQL resource needs a Linux owner (this node, %s, is an owner on %s); run the database nodes on Linux, or use type: service for a Windows service with its own replication", c.Node.Name, runtime.GOOS)
			}
			if r.BinDir == "" {
				x.bad(p+".resource.bin_dir", "required for postgresql (e.g. /usr/lib/postgresql/15/bin)")
			}
			if r.DataDir == "" {
				x.bad(p+".resource.data_dir", "required for postgresql")
			}
			x.port(p+".resource.port", r.Port)
			if r.PasswordFile == "" {
				x.bad(p+".resource.password_file", "required for postgresql: a file with the replication user's password (created with the cluster; standbys log in with it)")
			}
		case ResourceExec:
			if len(r.Start) == 0 || len(r.Stop) == 0 || len(r.Monitor) == 0 {
				x.bad(p+".resource", "exec needs start, stop and monitor commands")
			}
		case ResourceService:
			if r.Unit == "" && r.Name == "" {
				x.bad(p+".resource", "service needs unit (systemd) or name (Windows service)")
			}
		default:
			x.bad(p+".resource.type", "%q: must be postgresql, exec or service", r.Type)
		}
	}
}

func (c *Config) validateSNMP(x v) {
	for i := range c.SNMP.Traps {
		t := &c.SNMP.Traps[i]
		p := fmt.Sprintf("snmp.traps[%d]", i)
		if err := checkHostPort(t.Target, false); err != nil {
			x.bad(p+".target", "%q: %v", t.Target, err)
		}
		switch t.Version {
		case "v2c":
			if t.Community == "" {
				x.bad(p+".community", "required for v2c")
			}
		case "v3":
			if t.User == "" {
				x.bad(p+".user", "required for v3")
			}
		default:
			x.bad(p+".version", "%q: must be v2c or v3", t.Version)
		}
	}
	if a := c.SNMP.Agent; a != nil {
		if a.Listen != "" {
			if err := checkHostPort(a.Listen, false); err != nil {
				x.bad("snmp.agent.listen", "%q: %v", a.Listen, err)
			}
			if a.Community == "" {
				x.bad("snmp.agent.community", "required with snmp.agent.listen")
			}
		}
	}
}

func oneOf(s string, opts ...string) bool {
	for _, o := range opts {
		if s == o {
			return true
		}
	}
	return false
}
