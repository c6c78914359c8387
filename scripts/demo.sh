#!/bin/sh
# Runs a local clusterd cluster in network namespaces on this machine.
# Needs root (namespaces) and Go; installs iproute2/nftables if missing.
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "$(id -u)" != 0 ]; then
	echo "the demo builds network namespaces and needs root: run it as root (or: sudo $0)" >&2
	exit 2
fi
if ! command -v ip >/dev/null || ! command -v nft >/dev/null; then
	echo "installing iproute2 and nftables..."
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables >/dev/null
fi
exec go run ./scripts/demo "$@"
