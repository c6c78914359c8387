//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/clusterd/clusterd/internal/testnet"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the user and system CPU a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain: utime and stime are the 12th and
	// 13th of them.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, x := range f[11:13] {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// cpuMeter measures the agents' CPU over an interval.
type cpuMeter struct {
	start time.Time
	at    map[int]time.Duration // pid -> CPU at start
}

func startCPU(n *testnet.Net) *cpuMeter {
	m := &cpuMeter{start: time.Now(), at: map[int]time.Duration{}}
	for _, nd := range n.Nodes {
		if pid := nd.PID(); pid != 0 {
			if c, err := cpuTime(pid); err == nil {
				m.at[pid] = c
			}
		}
	}
	return m
}

// report gives the mean and the largest share of one core an agent used
// since start (agents restarted meanwhile are left out).
func (m *cpuMeter) report(n *testnet.Net) string {
	wall := time.Since(m.start)
	var sum, most float64
	k := 0
	for _, nd := range n.Nodes {
		pid := nd.PID()
		c0, ok := m.at[pid]
		if !ok {
			continue
		}
		c, err := cpuTime(pid)
		if err != nil {
			continue
		}
		share := 100 * float64(c-c0) / float64(wall)
		sum += share
		most = max(most, share)
		k++
	}
	if k == 0 {
		return "agent_cpu=unknown"
	}
	return fmt.Sprintf("agent_cpu_mean=%.1f%% agent_cpu_max=%.1f%% (of one core, %d agents)", sum/float64(k), most, k)
}
