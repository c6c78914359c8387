#!/bin/sh
# go test -exec for GOOS=windows test binaries under Wine. Go's runtime
# loads bcryptprimitives.dll (ProcessPrng) from System32 only, which Wine 8
# lacks: the shim built from bcryptprimitives.c goes into the Wine
# prefix's system32. CLUSTERD_WINE=1 tells tests that need what Wine lacks
# (UDP multicast, named pipes) to skip.
set -eu
# Wine derives a file's access list from its Unix mode and ignores one set
# through the API: with umask 077 the files tests create are the owner's
# only, as Restrict makes them on Windows. First, before wineboot: the
# wineserver it starts creates the files, with its own umask.
umask 077
bin="$1"; shift
here="$(cd "$(dirname "$0")" && pwd)"
dll="${CLUSTERD_WINE_DLL:-$here/../../build/wine/bcryptprimitives.dll}"
wine=$(command -v wine || command -v wine64 || echo /usr/lib/wine/wine64)
export WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n" CLUSTERD_WINE=1
export WINEPREFIX="${WINEPREFIX:-${TMPDIR:-/tmp}/clusterd-wine}"
sys32="$WINEPREFIX/drive_c/windows/system32"
# Packages' test binaries start in parallel: one makes the prefix and puts
# the shim in, the others wait for it.
mkdir -p "$(dirname "$WINEPREFIX")"
(
	flock 9
	if [ ! -d "$sys32" ]; then
		"$wine" wineboot -i >/dev/null 2>&1 || true
	fi
	if ! cmp -s "$dll" "$sys32/bcryptprimitives.dll"; then
		cp "$dll" "$sys32/.bcryptprimitives.$$" && mv -f "$sys32/.bcryptprimitives.$$" "$sys32/bcryptprimitives.dll"
	fi
) 9>"$WINEPREFIX.lock"
exec "$wine" "$bin" "$@"
