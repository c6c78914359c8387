//go:build !linux

package vip

import (
	"errors"
	"log/slog"
)

// newDatapath: the flow-hashing datapath is nftables, Linux only. Windows
// nodes are members, voters and failover owners, but take no VIP share.
func newDatapath(*slog.Logger, string) (datapath, error) {
	return nil, errors.New("load-balanced VIPs need the Linux nftables datapath; this node cannot serve a load_balancing VIP")
}
