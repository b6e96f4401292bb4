#!/usr/bin/env bash
# Builds every image of docker-compose.yml on this machine, with no container
# registry: the binaries (cargo build --release), a Debian base image from the Debian
# mirror (deploy/build-base-image.sh) when it is missing, the sandbox image
# (sandbox/build-offline.sh) when it is missing, then the frontend, registry,
# executor, postgres and load balancer images FROM that base. Also installs
# docker-compose (Debian's 1.29) when no Compose is available. Idempotent:
# Docker's layer cache makes a second run quick.
#
# Usage: deploy/build-images.sh
#   DYNAMIC_MCP_BASE_IMAGE  base of every image (default local/debian:bookworm-slim;
#                           debian:bookworm-slim where the official image can be pulled)
#   DYNAMIC_MCP_TAG         tag of the built images (default latest)
#   DYNAMIC_MCP_CARGO_PROFILE  release (default), or dev for quick test images
#                           made from target/debug (the e2e tests use it with their own tag)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_image="${DYNAMIC_MCP_BASE_IMAGE:-local/debian:bookworm-slim}"
tag="${DYNAMIC_MCP_TAG:-latest}"
profile="${DYNAMIC_MCP_CARGO_PROFILE:-release}"
sandbox_image="dynamic-mcp-sandbox:latest"

say() { printf 'build-images: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

apt_install() {
  say "installing $* with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

case "$profile" in
  release) bin_dir=target/release ;;
  dev) bin_dir=target/debug ;;
  *) die "DYNAMIC_MCP_CARGO_PROFILE must be release or dev, not '$profile'" ;;
esac

command -v docker >/dev/null || die "the docker CLI is missing (scripts/setup.sh installs Docker)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? scripts/setup.sh starts it)"
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  apt_install docker-compose
fi

say "building the binaries ($profile profile)"
(cd "$repo_root" && cargo build --profile "$profile" --bins --quiet)

if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if [[ "$base_image" == local/* ]]; then
    "$repo_root/deploy/build-base-image.sh" "$base_image"
  else
    die "the base image $base_image is missing; pull it, or leave DYNAMIC_MCP_BASE_IMAGE unset to build one offline"
  fi
fi
if ! docker image inspect "$sandbox_image" >/dev/null 2>&1; then
  "$repo_root/sandbox/build-offline.sh" "$sandbox_image"
fi

# build IMAGE DOCKERFILE CONTEXT [BUILD-ARG...]: the legacy builder (no
# BuildKit here) and no --pull: the base exists only locally.
build() {
  local image="$1:$tag" dockerfile="$2" context="$3" old_id new_id arg
  local args=(--build-arg "BASE=$base_image")
  for arg in "${@:4}"; do
    args+=(--build-arg "$arg")
  done
  old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  say "building $image"
  docker build --quiet "${args[@]}" -t "$image" -f "$repo_root/$dockerfile" "$repo_root/$context" >/dev/null
  new_id="$(docker image inspect -f '{{.Id}}' "$image")"
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    # The replaced image is untagged now; drop it unless a container still uses it.
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
}

build dynamic-mcp-frontend Dockerfile.frontend . "BIN_DIR=$bin_dir"
build dynamic-mcp-registry Dockerfile.registry . "BIN_DIR=$bin_dir"
build dynamic-mcp-executor Dockerfile.executor . "BIN_DIR=$bin_dir"
build dynamic-mcp-postgres deploy/postgres/Dockerfile deploy
build dynamic-mcp-lb deploy/haproxy/Dockerfile deploy
say "done; next: deploy/configure.sh (once), then deploy/compose.sh up -d"
