//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

const (
	mibRoot     = ".1.3.6.1.4.1.32473"
	oidNotify   = mibRoot + ".0."
	oidNodeName = mibRoot + ".1.5.1.0"
)

func needTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed (apt-get install snmp snmptrapd)", tool)
		}
	}
}

// trapd runs net-snmp's snmptrapd in the client namespace and returns the
// file it logs to.
func trapd(t *testing.T, n *testnet.Net) string {
	conf := filepath.Join(n.Dir, "snmptrapd.conf")
	os.WriteFile(conf, []byte("disableAuthorization yes\n"), 0o644)
	log := filepath.Join(n.Dir, "traps.log")
	cmd := exec.Command("ip", "netns", "exec", n.Client, "snmptrapd", "-f", "-C", "-c", conf, "-n", "-On",
		"-Lf", log, "udp:"+testnet.ClientIP+":162")
	cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitTrapd(t, n, log)
	return log
}

// waitTrapd waits until snmptrapd has opened its port (it then logs its
// version line).
func waitTrapd(t *testing.T, n *testnet.Net, log string) {
	t.Helper()
	n.WaitFor(5*time.Second, "snmptrapd to start", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "NET-SNMP version")
	})
}

// trapsAbout counts logged notifications n (1..14) naming node.
func trapsAbout(log string, n int, node string) int {
	b, _ := os.ReadFile(log)
	count := 0
	// snmptrapd logs one trap per paragraph-like block; split on the
	// notification OID and look at the varbinds that follow it.
	parts := strings.Split(string(b), fmt.Sprintf("OID: %s%d\t", oidNotify, n))
	for _, p := range parts[1:] {
		end := strings.Index(p, "\n")
		if end < 0 {
			end = len(p)
		}
		if strings.Contains(p[:end], fmt.Sprintf("%s = STRING: \"%s\"", oidNodeName, node)) {
			count++
		}
	}
	return count
}

const snmpConfig = `snmp:
  traps:
    - target: ` + testnet.ClientIP + `:162
      version: v2c
      community: public
  agent:
    listen: 0.0.0.0:1161
    community: public
metrics:
  listen: 0.0.0.0:9464
`

func TestSNMPTrapsAndWalk(t *testing.T) {
	needTools(t, "snmptrapd", "snmpwalk", "snmpbulkwalk")
	n := testnet.New(t, testnet.Options{Nodes: 3, Backup: true, Extra: func(int) string { return lbConfig(50, "multicast") + snmpConfig }})
	for _, nd := range n.Nodes {
		nd.Serve(80)
	}
	log := trapd(t, n)
	n.Start()
	n.WaitConverged(15 * time.Second)

	wait := func(what string, notif int, node string) {
		t.Helper()
		n.WaitFor(5*time.Second, what, func() bool { return trapsAbout(log, notif, node) >= 1 })
	}
	wait("node_joined trap for node3", 1, "node3")

	// Drain node3 from node2's clusterctl: draining, then drained.
	if out, code := n.Nodes[1].Ctl("drain", "node3"); code != 0 {
		t.Fatalf("drain: %s", out)
	}
	wait("node_draining trap", 4, "node3")
	wait("node_drained trap", 5, "node3")
	n.Nodes[1].Ctl("resume", "node3")

	// kill -9: node_failed, trapped once, by node1 (the lowest priority).
	n.Nodes[2].Kill()
	wait("node_failed trap", 2, "node3")
	time.Sleep(500 * time.Millisecond)
	if c := trapsAbout(log, 2, "node3"); c != 1 {
		t.Errorf("node_failed for node3 trapped %d times, want once", c)
	}
	// SIGTERM: node_left.
	n.Nodes[1].Term(10 * time.Second)
	wait("node_left trap", 3, "node2")

	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), ".1.3.6.1.2.1.1.3.0 = Timeticks:") || !strings.Contains(string(b), ".1.3.6.1.6.3.1.1.4.1.0 = OID: "+oidNotify) {
		t.Errorf("traps lack sysUpTime.0 / snmpTrapOID.0:\n%s", b)
	}

	// Polling: snmpwalk and snmpbulkwalk of the member table agree with
	// clusterctl status --json.
	out, code := n.Nodes[0].Ctl("status", "--json")
	if code != 0 {
		t.Fatal(out)
	}
	var st struct {
		Members []struct {
			Name     string `json:"name"`
			Priority int    `json:"priority"`
			State    string `json:"state"`
		} `json:"members"`
	}
	json.Unmarshal([]byte(out), &st)
	states := map[string]int{"joining": 1, "active": 2, "draining": 3, "drained": 4, "failed": 5, "left": 6}
	for _, tool := range []string{"snmpwalk", "snmpbulkwalk"} {
		cmd := exec.Command("ip", "netns", "exec", n.Client, tool, "-v2c", "-c", "public", "-On", "-t", "1", "-r", "1",
			n.Nodes[0].PubIP+":1161", mibRoot+".1.2.1.4")
		cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent")
		w, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, w)
		}
		for _, m := range st.Members {
			want := fmt.Sprintf("%s.1.2.1.4.%d = INTEGER: %d", mibRoot, m.Priority, states[m.State])
			if !strings.Contains(string(w), want) {
				t.Errorf("%s: missing %q in\n%s", tool, want, w)
			}
		}
	}
	// The same picture for Prometheus.
	resp, err := n.NewClient(2 * time.Second).HTTP.Get("http://" + n.Nodes[0].PubIP + ":9464/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := readAll(resp.Body)
	if !strings.Contains(body, `clusterd_member_state{member="node3",state="failed"} 1`) || !strings.Contains(body, "clusterd_vip_packets_accepted_total") {
		t.Errorf("/metrics:\n%s", body)
	}
	// A wrong community gets no answer.
	cmd := exec.Command("ip", "netns", "exec", n.Client, "snmpwalk", "-v2c", "-c", "wrong", "-On", "-t", "1", "-r", "0", n.Nodes[0].PubIP+":1161", mibRoot)
	cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent")
	if w, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(w), "Timeout") {
		t.Errorf("wrong community answered: %v %s", err, w)
	}
}

// TestSNMPv3Traps: authPriv notifications reach snmptrapd; a node with a
// wrong passphrase is refused.
func TestSNMPv3Traps(t *testing.T) {
	needTools(t, "snmptrapd")
	v3 := func(pass string) string {
		return `snmp:
  traps:
    - target: ` + testnet.ClientIP + `:162
      version: v3
      user: noc
      auth_protocol: SHA
      auth_passphrase: ` + pass + `
      priv_protocol: AES
      priv_passphrase: ` + pass + `
`
	}
	n := testnet.New(t, testnet.Options{Nodes: 2, Extra: func(i int) string {
		if i == 0 {
			return v3("right-passphrase")
		}
		return v3("wrong-passphrase")
	}})
	conf := filepath.Join(n.Dir, "snmptrapd.conf")
	var users strings.Builder
	for _, nd := range n.Nodes {
		// The trap sender is the authoritative engine: one user entry per
		// node's engine ID, both with the right passphrase.
		fmt.Fprintf(&users, "createUser -e 0x80007ed904%x noc SHA right-passphrase AES right-passphrase\n", nd.Name)
	}
	os.WriteFile(conf, []byte(users.String()+"authUser log noc priv\n"), 0o644)
	log := filepath.Join(n.Dir, "traps.log")
	cmd := exec.Command("ip", "netns", "exec", n.Client, "snmptrapd", "-f", "-C", "-c", conf, "-n", "-On", "-Lf", log, "udp:"+testnet.ClientIP+":162")
	cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitTrapd(t, n, log)
	n.Start()
	n.WaitConverged(10 * time.Second)
	// node1 (lowest priority) sends node_joined for node2; node2 sends its
	// own operator event when clusterctl runs there.
	n.WaitFor(5*time.Second, "v3 trap from node1", func() bool { return trapsAbout(log, 1, "node2") >= 1 })
	n.Nodes[1].Ctl("forget", "nobody")
	time.Sleep(time.Second)
	b, _ := os.ReadFile(log)
	if strings.Contains(string(b), "[10.77.1.12]") {
		t.Errorf("a notification with a wrong passphrase was accepted:\n%s", b)
	}
}

// TestSNMPAgentX: net-snmp's snmpd in node1's namespace is the AgentX
// master; clusterd's subagent registers CLUSTERD-MIB with it, snmpwalk
// through snmpd sees the member table, and after snmpd restarts the
// subagent reconnects.
func TestSNMPAgentX(t *testing.T) {
	needTools(t, "snmpd", "snmpwalk")
	n := testnet.New(t, testnet.Options{Nodes: 2})
	sock := filepath.Join(n.Dir, "agentx.sock")
	n.Nodes[0].WriteConfig("snmp:\n  agent:\n    agentx: " + sock + "\n")
	conf := filepath.Join(n.Dir, "snmpd.conf")
	// SNMPv3 polling is snmpd's USM (clusterd does not hand-roll one):
	// an authPriv user the NOC's poller would use.
	os.WriteFile(conf, []byte(fmt.Sprintf("master agentx\nagentXSocket %s\nagentaddress udp:%s:161\nrocommunity public\n"+
		"createUser noc SHA \"auth-pass-123\" AES \"priv-pass-123\"\nrouser noc priv\n", sock, n.Nodes[0].PubIP)), 0o644)
	persist := filepath.Join(n.Dir, "snmp-persist")
	os.MkdirAll(persist, 0o700)
	startSnmpd := func() *exec.Cmd {
		cmd := exec.Command("ip", "netns", "exec", n.Nodes[0].NS, "snmpd", "-f", "-C", "-c", conf, "-Lo", "-p", filepath.Join(n.Dir, "snmpd.pid"))
		cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent", "SNMP_PERSISTENT_DIR="+persist)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	snmpd := startSnmpd()
	n.WaitFor(5*time.Second, "snmpd's AgentX socket", func() bool { _, err := os.Stat(sock); return err == nil })
	n.Start()
	n.WaitConverged(10 * time.Second)
	tool := "snmpwalk"
	walk := func() string {
		cmd := exec.Command("ip", "netns", "exec", n.Client, tool, "-v2c", "-c", "public", "-On", "-t", "1", "-r", "0",
			n.Nodes[0].PubIP+":161", mibRoot+".1.2.1.2")
		cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	ok := func() bool {
		w := walk()
		return strings.Contains(w, mibRoot+".1.2.1.2.1 = STRING: \"node1\"") && strings.Contains(w, mibRoot+".1.2.1.2.2 = STRING: \"node2\"")
	}
	n.WaitFor(10*time.Second, "the member table through snmpd", ok)
	tool = "snmpbulkwalk"
	n.WaitFor(5*time.Second, "the member table through snmpd with GETBULK", ok)
	tool = "snmpwalk"

	v3 := func(auth, priv string) (string, error) {
		cmd := exec.Command("ip", "netns", "exec", n.Client, "snmpwalk", "-v3", "-l", "authPriv", "-u", "noc",
			"-a", "SHA", "-A", auth, "-x", "AES", "-X", priv, "-On", "-t", "1", "-r", "0",
			n.Nodes[0].PubIP+":161", mibRoot+".1.2.1.2")
		cmd.Env = append(os.Environ(), "MIBS=", "MIBDIRS=/nonexistent", "SNMP_PERSISTENT_DIR="+filepath.Join(n.Dir, "client-persist"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := v3("auth-pass-123", "priv-pass-123"); err != nil || !strings.Contains(out, "STRING: \"node1\"") {
		t.Errorf("SNMPv3 authPriv walk through snmpd: %v\n%s", err, out)
	}
	for _, bad := range [][2]string{{"wrong-auth-pass", "priv-pass-123"}, {"auth-pass-123", "wrong-priv-pass"}} {
		if out, err := v3(bad[0], bad[1]); err == nil || strings.Contains(out, "node1") {
			t.Errorf("SNMPv3 with a wrong passphrase (%s/%s) was answered: %v\n%s", bad[0], bad[1], err, out)
		} else {
			t.Logf("SNMPv3 with a wrong passphrase refused: %s", strings.TrimSpace(out))
		}
	}

	snmpd.Process.Kill()
	snmpd.Wait()
	startSnmpd()
	n.WaitFor(20*time.Second, "the member table through snmpd after its restart", ok)
}
