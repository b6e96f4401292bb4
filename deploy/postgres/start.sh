#!/bin/bash
# Starts PostgreSQL for the registry. The first start (an empty PGDATA) also
# creates the cluster, the database and the registry's login role:
#   - superuser `postgres`: no password, reachable only through the local
#     socket as the postgres OS user (peer), i.e. `docker exec`;
#   - role $REGISTRY_DB_USER: LOGIN, CONNECT on $REGISTRY_DB_NAME, owner of
#     the schema $REGISTRY_DB_SCHEMA and nothing else, with the password in
#     $REGISTRY_DB_PASSWORD_FILE (deploy/configure.sh writes it);
#   - over TCP only that role, only that database, only scram-sha-256.
# Later starts use the volume as it is (the password is not changed again:
# to rotate it, ALTER ROLE and update the secret together).
set -euo pipefail

# Written last by a first start that finished; without it, PGDATA is either
# empty or the remains of an interrupted first start, which holds no data.
initialized_marker=".dynamic-mcp-initialized"

: "${PGDATA:?}" "${PGHOST:?}"
db="${REGISTRY_DB_NAME:-tools}"
user="${REGISTRY_DB_USER:-dynamic_mcp_registry}"
schema="${REGISTRY_DB_SCHEMA:-dynamic_mcp}"
password_file="${REGISTRY_DB_PASSWORD_FILE:-/run/secrets/registry_db_password}"

say() { printf 'start-postgres: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for name in "$db" "$user" "$schema"; do
  [[ "$name" =~ ^[a-z_][a-z0-9_]{0,47}$ ]] || die "'$name' is not a plain identifier (lowercase letters, digits, '_')"
done

initialize() {
  [[ -r "$password_file" ]] || die "cannot read $password_file (is the secret mounted, and owned by uid $(id -u)?)"
  local password
  password="$(head -n 1 "$password_file")"
  [[ -n "$password" ]] || die "$password_file is empty"

  say "initializing a new cluster in $PGDATA"
  initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --no-locale \
    --auth-local=peer --auth-host=reject >/dev/null

  # Set up over the socket only, then open TCP.
  pg_ctl --pgdata="$PGDATA" --wait --silent -o "-c listen_addresses='' -k $PGHOST" start
  psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 -h "$PGHOST" -U postgres -d postgres \
    -v db="$db" -v user="$user" -v schema="$schema" -v password="$password" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"user";
\connect :"db"
CREATE SCHEMA :"schema" AUTHORIZATION :"user";
SQL
  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop

  cat >"$PGDATA/pg_hba.conf" <<HBA
# TYPE  DATABASE  USER      ADDRESS    METHOD
local   all       postgres             peer
host    $db       $user     0.0.0.0/0  scram-sha-256
host    $db       $user     ::/0       scram-sha-256
HBA
  touch "$PGDATA/$initialized_marker"
  say "created database $db, role $user and schema $schema"
}

if [[ ! -e "$PGDATA/$initialized_marker" ]]; then
  if [[ -n "$(ls -A "$PGDATA")" ]]; then
    say "an earlier first start did not finish; starting over"
    find "$PGDATA" -mindepth 1 -delete
  fi
  initialize
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$PGHOST" "$@"
