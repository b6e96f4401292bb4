#!/usr/bin/env bash
# Runs Compose with whatever this host has: Compose v2 (`docker compose`) or
# the standalone `docker-compose` (Debian 12 ships 1.29, which has no
# `docker compose`). Installs Debian's docker-compose when there is neither.
# Every argument goes to Compose, e.g. `deploy/compose.sh up -d`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
fi
if ! command -v docker-compose >/dev/null; then
  printf 'compose: installing docker-compose with apt-get\n' >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
exec docker-compose "$@"
