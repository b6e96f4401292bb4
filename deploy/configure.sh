#!/usr/bin/env bash
# Prepares this host for `docker compose up`: generates the secrets the stack
# reads and writes the settings Compose takes from .env. Never overwrites
# what exists, so it is safe to run again (delete a file to regenerate it).
#
# Secrets, in DYNAMIC_MCP_SECRETS_DIR (default deploy/secrets/), each mode 0400
# and owned by the user of the container that reads it (uid 10001 in the
# dynamic-mcp images, 10002 in the postgres image), so run this as root:
#   internal_token        frontends, registry, executor (MCP_INTERNAL_TOKEN_FILE)
#   admin_token           frontends: unlocks dynamic.tool.* and sandbox.*
#                         (X-MCP-Admin-Token header or adminToken argument)
#   pgpass                registry: its database password in pgpass format (PGPASSFILE)
#   registry_db_password  postgres: the same password, set on the registry's role
#   sandbox_secrets.json  executor: the operator's secrets for tools (MCP_SANDBOX_SECRETS_FILE),
#                         {"secrets": []} until you add some (see docs/SECURITY.md)
#
# The egress directory, DYNAMIC_MCP_EGRESS_DIR (default /var/lib/dynamic-mcp-egress),
# owned by uid 10001 and mode 0711: where the executor puts each egress run's proxy socket.
#
# Settings, in DYNAMIC_MCP_ENV_FILE (default .env next to docker-compose.yml):
#   DOCKER_GID      the group of the Docker socket, for the executor
#   DYNAMIC_MCP_PORT, DYNAMIC_MCP_BASE_IMAGE, DYNAMIC_MCP_SECRETS_DIR, DYNAMIC_MCP_EXECUTOR_ID,
#   DYNAMIC_MCP_EGRESS_DIR
# taken from the environment when set there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secrets_dir="${DYNAMIC_MCP_SECRETS_DIR:-$repo_root/deploy/secrets}"
env_file="${DYNAMIC_MCP_ENV_FILE:-$repo_root/.env}"
docker_socket="${DOCKER_SOCKET:-/var/run/docker.sock}"
dynamic_mcp_uid=10001
postgres_uid=10002

say() { printf 'configure: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# Writes a secret file unless it exists: mode 0400, owned by uid $2. (sqlx,
# like libpq, ignores a pgpass file that its group or others may read.)
write_secret() {
  local path="$secrets_dir/$1" owner="$2" content="$3"
  if [[ -s "$path" ]]; then
    say "kept $path"
    return
  fi
  (umask 077 && printf '%s\n' "$content" >"$path")
  chown "$owner:$owner" "$path"
  chmod 0400 "$path"
  say "generated $path"
}

[[ "$(id -u)" -eq 0 ]] || die "run as root (sudo): the secret files must belong to the containers' users"
mkdir -p "$secrets_dir"
write_secret internal_token "$dynamic_mcp_uid" "$(random_hex)"
write_secret admin_token "$dynamic_mcp_uid" "$(random_hex)"
if [[ ! -s "$secrets_dir/pgpass" || ! -s "$secrets_dir/registry_db_password" ]]; then
  # A new pair: the two files must hold the same password.
  rm -f "$secrets_dir/pgpass" "$secrets_dir/registry_db_password"
fi
db_password="$(random_hex)"
# Any host, port and database; the user must match MCP_DYNAMIC_PG_URL in docker-compose.yml.
write_secret pgpass "$dynamic_mcp_uid" "*:*:*:dynamic_mcp_registry:$db_password"
write_secret registry_db_password "$postgres_uid" "$db_password"
write_secret sandbox_secrets.json "$dynamic_mcp_uid" '{"secrets": []}'

egress_dir="${DYNAMIC_MCP_EGRESS_DIR:-/var/lib/dynamic-mcp-egress}"
if [[ ! -d "$egress_dir" ]]; then
  mkdir -p "$egress_dir"
  say "created $egress_dir"
fi
chown "$dynamic_mcp_uid:$dynamic_mcp_uid" "$egress_dir"
chmod 0711 "$egress_dir"

if [[ -e "$env_file" ]]; then
  say "kept $env_file (edit it, or delete it to write a new one)"
  exit 0
fi
[[ -S "$docker_socket" ]] || die "$docker_socket is not a socket: is Docker running here? (set DOCKER_SOCKET if it lives elsewhere)"
docker_gid="${DOCKER_GID:-$(stat -c %g "$docker_socket")}"
if [[ "$docker_gid" == 0 ]]; then
  say "warning: $docker_socket belongs to group 0 (root); the executor gets that group. Prefer a 'docker' group."
fi
base_image="${DYNAMIC_MCP_BASE_IMAGE:-}"
if [[ -z "$base_image" ]] && docker image inspect local/debian:bookworm-slim >/dev/null 2>&1; then
  # So that `docker compose build` works offline too.
  base_image=local/debian:bookworm-slim
fi
{
  echo "# Written by deploy/configure.sh; read by docker compose. No secrets here."
  echo "DOCKER_GID=$docker_gid"
  echo "DYNAMIC_MCP_PORT=${DYNAMIC_MCP_PORT:-8788}"
  [[ -n "$base_image" ]] && echo "DYNAMIC_MCP_BASE_IMAGE=$base_image"
  [[ -n "${DYNAMIC_MCP_SECRETS_DIR:-}" ]] && echo "DYNAMIC_MCP_SECRETS_DIR=$secrets_dir"
  [[ -n "${DYNAMIC_MCP_EXECUTOR_ID:-}" ]] && echo "DYNAMIC_MCP_EXECUTOR_ID=$DYNAMIC_MCP_EXECUTOR_ID"
  [[ -n "${DYNAMIC_MCP_EGRESS_DIR:-}" ]] && echo "DYNAMIC_MCP_EGRESS_DIR=$egress_dir"
  true
} >"$env_file"
say "wrote $env_file"
