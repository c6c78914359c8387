#!/bin/sh
# Before removal (not before an upgrade): stop the agent, which hands its
# groups over and takes its VIPs off.
set -e
case "$1" in
upgrade | 1) exit 0 ;; # deb: upgrade; rpm: $1 = 1 means an upgrade
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now clusterd >/dev/null 2>&1 || true
fi
exit 0
