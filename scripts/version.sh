#!/bin/sh
# The version of this checkout, for ldflags and packages: a release tag
# (v1.2.3 -> 1.2.3), else 0.1.0~git<commit time>.<commit>, a version that
# dpkg and rpm sort by commit time and that sorts before 0.1.0. ".dirty"
# when the work tree has uncommitted changes.
cd "$(dirname "$0")/.."
if v=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	v=${v#v}
elif t=$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null); then
	v="0.1.0~git$t.$(git rev-parse --short=7 HEAD)"
else
	echo dev
	exit 0
fi
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	v="$v.dirty"
fi
echo "$v"
