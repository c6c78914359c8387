#!/bin/sh
# After removal; on purge, what the agent kept: its state directory and the
# key the package made. The system group stays (Debian policy: files may
# still belong to it).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = "purge" ]; then
	rm -rf /var/lib/clusterd /run/clusterd
	rm -f /etc/clusterd/cluster.key
	rmdir /etc/clusterd 2>/dev/null || true
fi
exit 0
