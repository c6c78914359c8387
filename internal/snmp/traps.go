package snmp

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/clusterd/clusterd/internal/api"
	"github.com/clusterd/clusterd/internal/config"
	"github.com/clusterd/clusterd/internal/vocab"
)

// TrapVars are the varbinds of an event's notification: sysUpTime.0 (the
// agent's uptime), snmpTrapOID.0 (the notification), then the objects the
// MIB lists for it. Pure, so golden tests pin the encoding.
func TrapVars(e api.Event, uptime uint32, generation uint) ([]gosnmp.SnmpPDU, error) {
	n, ok := vocab.Notification[e.Type]
	if !ok {
		return nil, fmt.Errorf("no notification for event type %q", e.Type)
	}
	vars := []gosnmp.SnmpPDU{
		{Name: oidSysUpTime, Type: gosnmp.TimeTicks, Value: uptime},
		{Name: oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: oidNotifications + "." + strconv.Itoa(n)},
	}
	node := gosnmp.SnmpPDU{Name: oidNotifyObjects + ".1.0", Type: gosnmp.OctetString, Value: displayString(e.Node)}
	detail := gosnmp.SnmpPDU{Name: oidNotifyObjects + ".2.0", Type: gosnmp.OctetString, Value: displayString(e.Detail)}
	switch e.Type {
	case vocab.Converged:
		vars = append(vars, gosnmp.SnmpPDU{Name: oidCluster + ".6.0", Type: gosnmp.Gauge32, Value: generation}, detail)
	case vocab.GroupFailover:
		// Node is the new owner, From the old one.
		vars = append(vars,
			gosnmp.SnmpPDU{Name: oidNotifyObjects + ".3.0", Type: gosnmp.OctetString, Value: displayString(e.Group)},
			gosnmp.SnmpPDU{Name: oidNotifyObjects + ".4.0", Type: gosnmp.OctetString, Value: displayString(e.From)},
			gosnmp.SnmpPDU{Name: oidNotifyObjects + ".5.0", Type: gosnmp.OctetString, Value: displayString(e.Node)},
			detail)
	default:
		vars = append(vars, node, detail)
	}
	return vars, nil
}

// Trapper sends notifications to every configured target from a bounded
// queue: sending never blocks the agent; what does not fit is dropped,
// counted and logged.
type Trapper struct {
	targets []*gosnmp.GoSNMP
	informs []bool
	log     *slog.Logger
	start   time.Time
	gen     func() uint

	q       chan api.Event
	mu      sync.Mutex
	closed  bool
	Sent    atomic.Uint64
	Dropped atomic.Uint64
	Failed  atomic.Uint64
	wg      sync.WaitGroup
	once    sync.Once
}

// QueueSize bounds the notifications waiting to be sent.
const QueueSize = 256

// EngineID is this node's SNMPv3 engine ID (RFC 3411 format 4, text): the
// sender of a trap is the authoritative engine, and receivers configure
// users per engine ID (snmptrapd: createUser -e ENGINEID ...).
func EngineID(node string) string {
	b := []byte{0x80, 0x00, 0x7e, 0xd9, 0x04} // enterprise 32473, text follows
	b = append(b, node...)
	return string(b)
}

// EngineIDHex is EngineID as snmptrapd's configuration wants it.
func EngineIDHex(node string) string { return "0x" + hex.EncodeToString([]byte(EngineID(node))) }

// NewTrapper prepares the targets; start is the agent's start (sysUpTime 0).
func NewTrapper(node string, targets []config.TrapTarget, start time.Time, generation func() uint, log *slog.Logger) (*Trapper, error) {
	t := &Trapper{log: log, start: start, gen: generation, q: make(chan api.Event, QueueSize)}
	for _, tt := range targets {
		host, port, err := net.SplitHostPort(tt.Target)
		if err != nil {
			return nil, fmt.Errorf("trap target %q: %w", tt.Target, err)
		}
		p, _ := strconv.Atoi(port)
		g := &gosnmp.GoSNMP{Target: host, Port: uint16(p), Transport: "udp", Timeout: time.Second, Retries: 3, MaxOids: 60}
		switch tt.Version {
		case "v3":
			g.Version = gosnmp.Version3
			g.SecurityModel = gosnmp.UserSecurityModel
			usm := &gosnmp.UsmSecurityParameters{
				UserName:                 tt.User,
				AuthoritativeEngineID:    EngineID(node),
				AuthoritativeEngineBoots: 1,
				AuthoritativeEngineTime:  uint32(time.Since(start).Seconds()),
			}
			g.MsgFlags = gosnmp.NoAuthNoPriv
			if tt.AuthPassphase != "" {
				g.MsgFlags = gosnmp.AuthNoPriv
				usm.AuthenticationProtocol = authProto(tt.AuthProtocol)
				usm.AuthenticationPassphrase = tt.AuthPassphase
			}
			if tt.PrivPassphase != "" {
				g.MsgFlags = gosnmp.AuthPriv
				usm.PrivacyProtocol = privProto(tt.PrivProtocol)
				usm.PrivacyPassphrase = tt.PrivPassphase
			}
			g.SecurityParameters = usm
		default:
			g.Version = gosnmp.Version2c
			g.Community = tt.Community
		}
		t.targets = append(t.targets, g)
		t.informs = append(t.informs, tt.Inform)
	}
	return t, nil
}

func authProto(s string) gosnmp.SnmpV3AuthProtocol {
	switch s {
	case "MD5", "md5":
		return gosnmp.MD5
	case "SHA256", "sha256":
		return gosnmp.SHA256
	case "SHA512", "sha512":
		return gosnmp.SHA512
	}
	return gosnmp.SHA
}

func privProto(s string) gosnmp.SnmpV3PrivProtocol {
	switch s {
	case "DES", "des":
		return gosnmp.DES
	case "AES256", "aes256":
		return gosnmp.AES256
	}
	return gosnmp.AES
}

// Start runs the sender.
func (t *Trapper) Start() {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for e := range t.q {
			t.send(e)
		}
	}()
}

// Notify queues an event's notification; it never blocks. An event type
// that is not a notification (vocab.NotTrapped) never takes a slot.
func (t *Trapper) Notify(e api.Event) {
	if len(t.targets) == 0 || !vocab.Trapped(e.Type) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	select {
	case t.q <- e:
	default:
		if t.Dropped.Add(1)%100 == 1 {
			t.log.Warn("SNMP notification queue full: dropping", slog.String("type", string(e.Type)), slog.Uint64("dropped", t.Dropped.Load()))
		}
	}
}

func (t *Trapper) send(e api.Event) {
	uptime := ticks(t.start, time.Now())
	vars, err := TrapVars(e, uptime, t.gen())
	if err != nil {
		return
	}
	for i, g := range t.targets {
		if err := g.Connect(); err != nil {
			t.Failed.Add(1)
			t.log.Warn("SNMP trap target", slog.String("target", g.Target), slog.Any("error", err))
			continue
		}
		if usm, ok := g.SecurityParameters.(*gosnmp.UsmSecurityParameters); ok {
			usm.AuthoritativeEngineTime = uint32(time.Since(t.start).Seconds())
		}
		// Informs are acknowledged; gosnmp retries them (Retries) until
		// the receiver answers.
		_, err := g.SendTrap(gosnmp.SnmpTrap{Variables: vars, IsInform: t.informs[i]})
		g.Conn.Close()
		if err != nil {
			t.Failed.Add(1)
			t.log.Warn("sending SNMP notification", slog.String("target", g.Target), slog.String("type", string(e.Type)), slog.Any("error", err))
			continue
		}
		t.Sent.Add(1)
	}
}

// Close sends what is queued and stops (idempotent).
func (t *Trapper) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.q)
		t.mu.Unlock()
		t.wg.Wait()
	})
	return nil
}

// displayString makes text a valid DisplayString (RFC 2579: printable
// ASCII, at most 255 octets), so that receivers show it as text.
func displayString(s string) []byte {
	b := make([]byte, 0, min(len(s), 255))
	for _, r := range s {
		if len(b) == 255 {
			break
		}
		switch {
		case r == 'µ':
			b = append(b, 'u')
		case r == '→':
			b = append(b, '>')
		case r >= 0x20 && r < 0x7f:
			b = append(b, byte(r))
		default:
			b = append(b, '?')
		}
	}
	return b
}
