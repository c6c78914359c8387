package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"

	"github.com/clusterd/clusterd/internal/config"
)

// checker runs one VIP's health check: fall failures in a row make the
// node unhealthy for that VIP, rise successes make it healthy again.
type checker struct {
	cfg     config.HealthCheck
	healthy bool
	streak  int // consecutive results contrary to the current verdict
	last    error
	client  *http.Client
}

func newChecker(c config.HealthCheck) *checker {
	return &checker{cfg: c, healthy: true, client: &http.Client{
		Timeout: c.Timeout.D(),
		// A health check must see this node's service, not a redirect
		// target elsewhere, and must not keep idle connections around.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableKeepAlives: true},
	}}
}

// probe runs the check once.
func (c *checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	switch {
	case c.cfg.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.HTTP, nil)
		if err != nil {
			return err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d from %s", resp.StatusCode, c.cfg.HTTP)
		}
		return nil
	case c.cfg.TCP != "":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.cfg.TCP)
		if err != nil {
			return err
		}
		return conn.Close()
	case len(c.cfg.Exec) > 0:
		cmd := exec.CommandContext(ctx, c.cfg.Exec[0], c.cfg.Exec[1:]...)
		// A check that leaves a child holding its output must not hold
		// the checker past its deadline.
		cmd.WaitDelay = 100 * time.Millisecond
		out, err := cmd.CombinedOutput()
		if errors.Is(err, exec.ErrWaitDelay) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, truncate(string(out), 200))
		}
		return nil
	}
	return nil
}

// observe folds one result into the verdict; it reports whether the
// verdict changed.
func (c *checker) observe(err error) bool {
	c.last = err
	ok := err == nil
	if ok == c.healthy {
		c.streak = 0
		return false
	}
	c.streak++
	need := c.cfg.Fall
	if !c.healthy {
		need = c.cfg.Rise
	}
	if c.streak >= need {
		c.healthy, c.streak = ok, 0
		return true
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// linkUp says whether a NIC is up with a carrier (a pulled cable clears
// IFF_RUNNING).
func linkUp(name string) (bool, string) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false, fmt.Sprintf("interface %s: %v", name, err)
	}
	if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
		return false, name + " has no link"
	}
	return true, ""
}

// onInterface says whether addr is configured on the named NIC.
func onInterface(name, addr string) bool {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false
	}
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == addr {
			return true
		}
	}
	return false
}

var _ = time.Second
