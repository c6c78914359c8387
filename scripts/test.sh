#!/bin/sh
# The test command: what README.md tells a new user to run and what
# .ci/run calls. Run as root so that the network-namespace tests run
# (without root they skip and say so).
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo /root/go)/bin"

step() { printf '\n=== %s\n' "$*"; }

# Set-up: as root on Debian, install what the tests use if it is missing
# (.ci/run does the same on a fresh machine before calling this script).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	missing=""
	for t in ip:iproute2 nft:nftables ping:iputils-ping snmptrapd:snmptrapd snmpwalk:snmp snmpd:snmpd smilint:smitools make:make rpm:rpm chromium:chromium zsh:zsh fish:fish groff:groff-base man:man-db x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64-win32; do
		command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
	done
	[ -x /usr/lib/postgresql/15/bin/postgres ] || missing="$missing postgresql-15"
	[ -x /usr/lib/wine/wine64 ] || command -v wine >/dev/null 2>&1 || missing="$missing wine64"
	if [ -n "$missing" ]; then
		step "installing:$missing"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
fi
# Base MIBs for the MIB lint (Debian ships none): from the npm package net-snmp.
if [ -z "${SMIPATH:-}" ] && command -v npm >/dev/null 2>&1; then
	SMIPATH="${XDG_CACHE_HOME:-$HOME/.cache}/clusterd-smi"
	if [ ! -e "$SMIPATH/SNMPv2-SMI" ]; then
		mkdir -p "$SMIPATH"
		( cd "$SMIPATH" && npm pack --silent net-snmp@3.29.2 >/dev/null && tar xzf net-snmp-3.29.2.tgz &&
			for m in SNMPv2-SMI SNMPv2-TC SNMPv2-CONF; do cp "package/lib/mibs/$m.mib" "$m"; done ) || true
	fi
	export SMIPATH
fi

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

step "Windows build (and type-check of the Windows tests)"
GOOS=windows GOARCH=amd64 go build ./...
GOOS=windows GOARCH=amd64 go vet ./...

step "Windows unit tests under Wine"
# Go's Windows binaries need ProcessPrng, which Wine 8 lacks: a shim DLL
# built from packaging/wine (mingw-w64) stands in. Tests that need what
# Wine lacks (UDP, named pipes, shell-script resources) skip and say why.
wine=$(command -v wine || command -v wine64 || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
if [ -n "$wine" ] && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
	mkdir -p build/wine
	x86_64-w64-mingw32-gcc -shared -O2 -o build/wine/bcryptprimitives.dll \
		packaging/wine/bcryptprimitives.c packaging/wine/bcryptprimitives.def -ladvapi32
	winetmp=$(mktemp -d)
	# Every package with Windows code; tests that need what Wine lacks
	# skip. One package at a time (-p 1, ~2 min): a test binary whose wine starts
	# the wineserver hands it its stdout, and a server kept alive by
	# another package's tests then holds that output open until go test
	# gives up on it ("Test I/O incomplete 1m0s after exiting", once in CI).
	WINEPREFIX="$winetmp/wine" GOOS=windows GOARCH=amd64 go test -count=1 -p 1 -timeout 10m \
		-exec "$PWD/packaging/wine/go-wine-exec.sh" ./internal/... ./cmd/...
	WINEPREFIX="$winetmp/wine" /usr/lib/wine/wineserver -k 2>/dev/null || true
	rm -rf "$winetmp"
else
	echo "no wine64 or mingw-w64 (apt-get install wine64 gcc-mingw-w64-x86-64-win32, as root); skipping (CI runs it)"
fi

step "unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v -e /test/ -e /bench)

step "end-to-end tests in network namespaces"
if [ "$(id -u)" != 0 ]; then
	echo "not root: the namespace tests will skip (run it as root, or: sudo $0)"
fi
go test -count=1 -timeout 20m -p 1 ./test/...

step "all tests passed"
