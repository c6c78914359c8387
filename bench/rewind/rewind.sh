#!/bin/bash
# rewind.sh — how long pg_rewind takes to bring a crashed old primary back,
# and how much it copies (docs/benchmarks.md, "What a rewind costs").
#
# As root, with PostgreSQL 15 installed (the server's own tools, run as the
# postgres user). Two servers on 127.0.0.1 (ports 6001, 6002) under a
# scratch directory: a primary with a streaming standby; the standby stops,
# the primary commits a row the standby never gets and is killed (-9); the
# standby is promoted and takes a write; then the old primary is rewound
# from it, timed.
#
#   bench/rewind/rewind.sh [-k wal_keep_size] [-r rows] [-n]
#     -k  wal_keep_size of both servers (default 128MB, what clusterd writes)
#     -r  rows (~0.6 kB of WAL each) written while the standby streams,
#         the WAL the new primary holds at the failover (default 200000)
#     -n  pg_rewind --no-sync (how much of the time is the final fsync)
set -euo pipefail
KEEP=128MB ROWS=200000 NOSYNC=
while getopts "k:r:n" o; do
	case $o in
	k) KEEP=$OPTARG ;;
	r) ROWS=$OPTARG ;;
	n) NOSYNC=--no-sync ;;
	*) exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "rewind.sh: run as root (it runs the servers as the postgres user)" >&2; exit 2; }
B=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null) || { echo "rewind.sh: PostgreSQL 15 not found (apt-get install postgresql-15)" >&2; exit 2; }
D=$(mktemp -d /tmp/clusterd-rewind-XXXXXX)
chown postgres "$D"
as() { runuser -u postgres -- "$@"; }
sql() { as "$B/psql" -X -h "$D" -p "$1" -d postgres -qc "$2"; }
cleanup() {
	for s in a b; do
		if [ -f "$D/$s/postmaster.pid" ]; then kill -9 "$(head -1 "$D/$s/postmaster.pid")" 2>/dev/null || true; fi
	done
	rm -rf "$D"
}
trap cleanup EXIT

as "$B/initdb" -D "$D/a" --data-checksums -U postgres >/dev/null
cat >>"$D/a/postgresql.conf" <<C
port = 6001
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
wal_level = replica
wal_keep_size = '$KEEP'
wal_log_hints = on
hot_standby = on
C
echo "host replication postgres 127.0.0.1/32 trust" >>"$D/a/pg_hba.conf"
echo "host all postgres 127.0.0.1/32 trust" >>"$D/a/pg_hba.conf"
as "$B/pg_ctl" -D "$D/a" -l "$D/a.log" -w start >/dev/null
sql 6001 "create table t(id int, pad text)"
sql 6001 "insert into t select g, repeat('x', 500) from generate_series(1, 100000) g; checkpoint"
as "$B/pg_basebackup" -h 127.0.0.1 -p 6001 -U postgres -D "$D/b" -X stream -R >/dev/null
sed -i 's/^port = 6001/port = 6002/' "$D/b/postgresql.conf"
as "$B/pg_ctl" -D "$D/b" -l "$D/b.log" -w start >/dev/null
sql 6001 "insert into t select g, repeat('y', 500) from generate_series(1, $ROWS) g; checkpoint"
sleep 2 # the standby catches up
as "$B/pg_ctl" -D "$D/b" -w stop -m fast >/dev/null
sql 6001 "insert into t values (0, 'only on the old primary')"
kill -9 "$(head -1 "$D/a/postmaster.pid")"
sleep 1
# Where init reaps lazily the killed postmaster lingers as a zombie and
# PostgreSQL takes its pid for a running server (the agent checks /proc).
rm -f "$D/a/postmaster.pid"
as "$B/pg_ctl" -D "$D/b" -l "$D/b.log" -w start >/dev/null
as "$B/pg_ctl" -D "$D/b" -w promote >/dev/null
sql 6002 "insert into t values (1, 'on the new primary')"
echo "new primary's pg_wal: $(du -sh "$D/b/pg_wal" | cut -f1) in $(find "$D/b/pg_wal" -name '0000*' -type f | wc -l) files (wal_keep_size $KEEP)"
start=$(date +%s%N)
# bash's time: wall clock and the CPU pg_rewind used (runuser waits for it,
# so its rusage counts) — beside a busy cluster it mostly waits for the source.
TIMEFORMAT='pg_rewind: %R s wall, %U s user + %S s sys CPU'
time as "$B/pg_rewind" $NOSYNC -D "$D/a" --source-server="host=127.0.0.1 port=6002 user=postgres dbname=postgres" --progress >"$D/rewind.log" 2>&1 || { cat "$D/rewind.log"; exit 1; }
end=$(date +%s%N)
grep -E "need to copy" "$D/rewind.log" | sed 's/^pg_rewind: //'
echo "pg_rewind ${NOSYNC:+(--no-sync) }took $(( (end - start) / 1000000 )) ms"
