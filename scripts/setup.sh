#!/usr/bin/env bash
# Installs and starts what dynamic-mcp needs on a Debian machine: a running
# Docker engine, Node and npm (the offline sandbox image is built from them),
# the sandbox image and, for the tests (DYNAMIC_MCP_SETUP_TESTS=1), pip and
# the PostgreSQL 15 server binaries. Idempotent; safe to run every time.
# All output goes to stderr, because run.sh may be an MCP client's stdio command.
set -euo pipefail
exec 3>&1 1>&2

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sandbox_image="${MCP_SANDBOX_IMAGE_TO_BUILD:-dynamic-mcp-sandbox:latest}"
dockerd_log="${DYNAMIC_MCP_DOCKERD_LOG:-/var/log/dynamic-mcp-dockerd.log}"

log() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $* with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_docker_engine() {
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  if docker info >/dev/null 2>&1; then
    return
  fi
  log "starting dockerd (log: $dockerd_log)"
  # A session of its own: Ctrl-C on run.sh, or the end of the shell that ran
  # this, must not take the engine (and every container) down with it.
  as_root setsid -f sh -c "exec dockerd >>'$dockerd_log' 2>&1 </dev/null"
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
      log "Docker engine is up"
      return
    fi
    sleep 1
  done
  log "the Docker engine did not come up within 60 s; see $dockerd_log"
  exit 1
}

# The offline sandbox image is built from this host's Node and npm.
ensure_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    return
  fi
  apt_install nodejs npm
}

# The end-to-end tests install their Python client with pip.
ensure_pip() {
  if python3 -m pip --version >/dev/null 2>&1; then
    return
  fi
  apt_install python3-pip
}

ensure_sandbox_image() {
  if docker image inspect "$sandbox_image" >/dev/null 2>&1; then
    return
  fi
  log "building the sandbox image $sandbox_image offline"
  "$repo_root/sandbox/build-offline.sh" "$sandbox_image"
}

# Tests start their own throwaway clusters, so only the binaries are needed;
# no default cluster is created.
ensure_postgres_binaries() {
  if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && id postgres >/dev/null 2>&1; then
    return
  fi
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/dynamic-mcp.conf >/dev/null
  apt_install postgresql-15
}

ensure_docker_engine
ensure_node
ensure_sandbox_image
if [ "${DYNAMIC_MCP_SETUP_TESTS:-0}" = 1 ]; then
  ensure_pip
  ensure_postgres_binaries
fi
