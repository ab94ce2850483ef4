#!/usr/bin/env bash
# Run once by the official postgres image on an empty data directory (/docker-entrypoint-initdb.d): the roles and
# databases of the local platform (deploy/local/vigie-local bootstrap_sql), least privilege: <db>_owner owns the
# database and runs the migrations, <db>_app is the runtime role, vigie_monitor reads statistics, vigie_probe only logs in (the fresh-session probe). Passwords come
# from the environment (deploy/compose/.env), psql reads them with \getenv, never from argv.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv users_owner USERS_OWNER_PASSWORD
\getenv users_app USERS_APP_PASSWORD
\getenv orders_owner ORDERS_OWNER_PASSWORD
\getenv orders_app ORDERS_APP_PASSWORD
\getenv monitor MONITOR_PASSWORD
\getenv probe PROBE_PASSWORD
SELECT format('CREATE ROLE users_owner LOGIN PASSWORD %L', :'users_owner') \gexec
SELECT format('CREATE ROLE users_app LOGIN PASSWORD %L', :'users_app') \gexec
SELECT format('CREATE ROLE orders_owner LOGIN PASSWORD %L', :'orders_owner') \gexec
SELECT format('CREATE ROLE orders_app LOGIN PASSWORD %L', :'orders_app') \gexec
SELECT format('CREATE ROLE vigie_monitor LOGIN PASSWORD %L', :'monitor') \gexec
GRANT pg_monitor TO vigie_monitor;
SELECT format('CREATE ROLE vigie_probe LOGIN PASSWORD %L CONNECTION LIMIT 2', :'probe') \gexec
CREATE DATABASE users OWNER users_owner;
CREATE DATABASE orders OWNER orders_owner;
REVOKE ALL ON DATABASE users FROM PUBLIC;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
GRANT CONNECT ON DATABASE users TO users_app, vigie_monitor;
GRANT CONNECT ON DATABASE orders TO orders_app, vigie_monitor;
\connect users
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO users_app;
\connect orders
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orders_app;
SQL
# The blackbox exporter's fresh-session probe speaks no SCRAM: its role logs in with a clear-text password from the
# compose network only, to database postgres only (first match wins, so these go before the image's own rules).
sed -i '1i host all vigie_probe all reject' "$PGDATA/pg_hba.conf"
sed -i '1i host postgres vigie_probe samenet password' "$PGDATA/pg_hba.conf"
