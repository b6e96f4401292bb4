#!/usr/bin/env bash
# Installs and starts what dynamic-mcp needs on a Debian machine: a running
# Docker engine and the sandbox image. Idempotent; safe to run every time.
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
  as_root sh -c "nohup dockerd >'$dockerd_log' 2>&1 &"
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

ensure_sandbox_image() {
  if docker image inspect "$sandbox_image" >/dev/null 2>&1; then
    return
  fi
  log "building the sandbox image $sandbox_image offline"
  "$repo_root/sandbox/build-offline.sh" "$sandbox_image"
}

ensure_docker_engine
ensure_sandbox_image
