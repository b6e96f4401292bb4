#!/usr/bin/env bash
# Builds a Debian bookworm base image without any container registry:
# mmdebstrap installs a minimal bookworm from the Debian mirror apt already
# uses on this host, and the result is imported with `docker import`. The
# dynamic-mcp Dockerfiles then build FROM it (--build-arg BASE=...). With
# registry access, use the official debian:bookworm-slim instead.
#
# Usage: deploy/build-base-image.sh [IMAGE]   (default local/debian:bookworm-slim)
# Mirrors: DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR, by default the ones in
# apt's sources (/etc/apt/sources.list and /etc/apt/sources.list.d/).
# Replaces the tag on every run (fresh security updates); build-images.sh
# only calls it when the image is missing.
set -euo pipefail

image="${1:-local/debian:bookworm-slim}"
suite=bookworm

say() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root: mmdebstrap needs it to create device nodes and set file owners"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? try 'docker info')"
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

# The URI of the first enabled source whose suites include $1, in either the
# one-line format or deb822 (.sources).
apt_source_uri() {
  local wanted="$1"
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v s="$wanted" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == s) print $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk -v s="$wanted" '
          /^[[:space:]]*$/ { if (uri && hit && on) print uri; uri = ""; hit = 0; on = 1; next }
          /^URIs:/ { uri = $2 }
          /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
          /^Enabled:[[:space:]]*no/ { on = 0 }
          BEGIN { on = 1 }
          END { if (uri && hit && on) print uri }'
  } | head -n 1
}

mirror="${DEBIAN_MIRROR:-$(apt_source_uri "$suite")}"
security="${DEBIAN_SECURITY_MIRROR:-$(apt_source_uri "$suite-security")}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${security:-http://deb.debian.org/debian-security}"
say "building $image from $mirror (security: $security)"

include=()
if [[ "$mirror$security" == *https://* ]]; then
  include=(--include=ca-certificates)
fi

old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
# Like the official slim image: no docs, man pages or translations (these
# dpkg settings stay in the image, so later installs skip them too), merged
# /usr, and apt's lists and caches emptied (mmdebstrap's default cleanup).
mmdebstrap --quiet --variant=minbase --format=tar "${include[@]}" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --aptopt='Acquire::Languages "none"' \
  "$suite" - \
  "deb $mirror $suite main" \
  "deb $mirror $suite-updates main" \
  "deb $security $suite-security main" \
  | docker import -c 'CMD ["bash"]' - "$image" >/dev/null

new_id="$(docker image inspect -f '{{.Id}}' "$image")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  # Images built on the old base keep it alive; otherwise it goes.
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
docker run --rm --network none "$image" true || die "the new image $image cannot run a command"
say "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%d MB", $1 / 1e6 }'))"
