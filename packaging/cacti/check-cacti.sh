#!/bin/sh
# Import-test the templates into a local Cacti 1.2 and poll a clusterd
# agent with it. Not part of CI (it needs Cacti, MariaDB and PHP); run it
# on a machine with Debian's cacti package installed and configured:
#
#   sudo packaging/cacti/check-cacti.sh HOST:PORT
#
# HOST:PORT is a clusterd built-in SNMP agent (snmp.agent.listen,
# community public) that Cacti's poller can reach.
set -eu
cd "$(dirname "$0")"
target=${1:-127.0.0.1:1161}
host=${target%:*}; port=${target#*:}
site=/usr/share/cacti/site
cp clusterd_members.xml clusterd_vips.xml clusterd_groups.xml "$site/resource/snmp_queries/"
php /usr/share/cacti/cli/import_template.php --filename="$PWD/clusterd_templates.xml" --with-profile
php /usr/share/cacti/cli/add_device.php --description=clusterd-check --ip="$host" --port="$port" \
	--community=public --version=2 --template=0 --avail=snmp
dev=$(mysql -N cacti -e "select id from host where description='clusterd-check' order by id desc limit 1")
for q in "clusterd - Members" "clusterd - Failover groups" "clusterd - VIPs"; do
	qid=$(mysql -N cacti -e "select id from snmp_query where name='$q'")
	php /usr/share/cacti/cli/add_data_query.php --host-id="$dev" --data-query-id="$qid" --reindex-method=1
done
mysql cacti -e "select q.name, c.field_name, c.field_value, c.snmp_index from host_snmp_cache c join snmp_query q on q.id=c.snmp_query_id where c.host_id=$dev"
php -q "$site/cmd.php" --poller=1 --first="$dev" --last="$dev" --debug 2>&1 | grep -v DEPRECATED
