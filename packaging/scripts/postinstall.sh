#!/bin/sh
# After install or upgrade: the control socket's group, a cluster key for a
# first node, systemd told about the unit. The service is not started: the
# config must be edited first (see /etc/clusterd/clusterd.yaml).
set -e
if ! getent group clusterd >/dev/null 2>&1; then
	if command -v groupadd >/dev/null 2>&1; then
		groupadd --system clusterd
	elif command -v addgroup >/dev/null 2>&1; then
		addgroup --system clusterd
	fi
fi
install -d -m 0750 /etc/clusterd
if [ ! -e /etc/clusterd/cluster.key ]; then
	/usr/bin/clusterd keygen --out /etc/clusterd/cluster.key
	echo "clusterd: made a new cluster key /etc/clusterd/cluster.key; every node needs the same file (copy it to the others)"
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-active --quiet clusterd; then
		# An upgrade: the running agent goes on with the old binary until
		# restarted (docs/operations.md: rolling upgrade, one node at a time).
		echo "clusterd: upgraded; restart it when this node is drained: systemctl restart clusterd"
	fi
fi
exit 0
