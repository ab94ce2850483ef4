#!/usr/bin/env bash
# First start: initdb, then the same roles and databases as the local platform (least privilege: <db>_owner runs
# the migrations, <db>_app is the runtime role), every role with the password in $VIGIE_DB_PASSWORD (test only).
set -euo pipefail
: "${VIGIE_DB_PASSWORD:?VIGIE_DB_PASSWORD must be set}"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    initdb -U postgres --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/tmp" -w start >/dev/null
    psql -X -q -h /tmp -U postgres -d postgres -v ON_ERROR_STOP=1 -f /usr/local/share/vigie/bootstrap.sql
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
