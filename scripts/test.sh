#!/bin/sh
# The test command: what README.md tells a new user to run and what
# .ci/run calls. Run as root so that the network-namespace tests run
# (without root they skip and say so).
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo /root/go)/bin"

step() { printf '\n=== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

if command -v staticcheck >/dev/null 2>&1; then
	step "staticcheck"
	staticcheck ./...
else
	echo "staticcheck not installed; skipping (CI installs it)"
fi

step "MIB lint (smilint -l 6: any output fails)"
if command -v smilint >/dev/null 2>&1 && [ -n "${SMIPATH:-}" ] && [ -e "$SMIPATH/SNMPv2-SMI" ]; then
	# smilint exits 0 even on errors: fail on any output at all.
	out=$(smilint -c /dev/null -l 6 packaging/snmp/CLUSTERD-MIB.txt 2>&1)
	if [ -n "$out" ]; then
		echo "$out"; exit 1
	fi
	echo "CLUSTERD-MIB: clean"
else
	echo "smilint or the base MIBs (\$SMIPATH) missing; skipping (CI runs it)"
fi

step "Windows build"
GOOS=windows GOARCH=amd64 go build ./...

step "unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v -e /test/ -e /bench)

step "end-to-end tests in network namespaces"
if [ "$(id -u)" != 0 ]; then
	echo "not root: the namespace tests will skip (run: sudo $0)"
fi
go test -count=1 -timeout 20m -p 1 ./test/...

step "all tests passed"
