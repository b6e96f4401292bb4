#!/usr/bin/env bash
# Builds the sandbox image without any registry access: a root filesystem made
# of this host's Node binary, the libraries it links, this host's npm (for
# dependency installs) and a static busybox, imported with `docker import`. It
# is equivalent to sandbox/Dockerfile for the executor, which relies on
# nothing but `node`, `npm` and `/bin/sh` (with the usual tools) being present.
#
# Usage: sandbox/build-offline.sh [IMAGE]   (default dynamic-mcp-sandbox:latest)
#   SANDBOX_BUSYBOX  a static busybox binary to use instead of Debian's
#                    busybox-static package (fetched with apt-get download)
# Safe to run again: it replaces the tag and removes the image it replaced.
set -euo pipefail

image="${1:-dynamic-mcp-sandbox:latest}"

say() { printf 'build-offline: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in docker node ldd tar; do
  command -v "$tool" >/dev/null || die "'$tool' is needed but not on PATH"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? try 'docker info')"

node_bin="$(readlink -f "$(command -v node)")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,home/node,tmp,work}

say "copying $node_bin ($(node --version)) and the libraries it links"
cp -L "$node_bin" "$rootfs/usr/bin/node"
# ldd lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
ldd "$node_bin" | grep -o '/[^ ]*' | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

# npm is plain JavaScript: its package directory and a wrapper are enough.
npm_dir=""
if command -v npm >/dev/null; then
  npm_dir="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
fi
if [[ -n "$npm_dir" && -f "$npm_dir/bin/npm-cli.js" ]]; then
  say "copying npm $(npm --version) from $npm_dir"
  mkdir -p "$rootfs/usr/lib/node_modules"
  cp -a "$npm_dir" "$rootfs/usr/lib/node_modules/npm"
  printf '#!/bin/sh\nexec node /usr/lib/node_modules/npm/bin/npm-cli.js "$@"\n' >"$rootfs/usr/bin/npm"
  chmod 755 "$rootfs/usr/bin/npm"
else
  say "warning: no npm on this host; tools with npm dependencies will fail to install in $image"
fi

# A static busybox gives /bin/sh and the usual tools without more libraries.
# It comes from SANDBOX_BUSYBOX when set, else from Debian's busybox-static
# package; never from whatever this host happens to have installed.
busybox="${SANDBOX_BUSYBOX:-}"
if [[ -n "$busybox" ]]; then
  [[ -f "$busybox" && -x "$busybox" ]] || die "SANDBOX_BUSYBOX=$busybox is not an executable file"
  say "using the busybox at $busybox (SANDBOX_BUSYBOX)"
else
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "apt-get and dpkg-deb are needed to fetch Debian's busybox-static (or set SANDBOX_BUSYBOX to a static busybox)"
  say "fetching Debian's busybox-static package"
  fetch_busybox() { (cd "$work" && apt-get download busybox-static 2>&1 | grep -v 'unsandboxed as root' >&2; exit "${PIPESTATUS[0]}"); }
  if ! fetch_busybox; then
    # A new machine may have no package lists yet.
    [[ "$(id -u)" -eq 0 ]] || die "'apt-get download busybox-static' failed; run 'apt-get update' as root, or set SANDBOX_BUSYBOX"
    apt-get update -qq
    fetch_busybox || die "'apt-get download busybox-static' failed even after 'apt-get update'"
  fi
  mkdir -p "$work/busybox"
  dpkg-deb --fsys-tarfile "$work"/busybox-static_*.deb | tar -x -C "$work/busybox" ./bin/busybox
  busybox="$work/busybox/bin/busybox"
fi
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked; the image needs a static busybox"
cp "$busybox" "$rootfs/bin/busybox"
chmod 755 "$rootfs/bin/busybox"
# Links are absolute inside the image, so every test below looks at the link
# itself (-L) or at its target under the rootfs, never through it on this host.
"$rootfs/bin/busybox" --list-full | while read -r applet; do
  [[ -e "$rootfs/$applet" || -L "$rootfs/$applet" ]] || ln -s /bin/busybox "$rootfs/$applet"
done
provides_in_rootfs() {
  local path="$rootfs$1" target
  [[ -L "$path" ]] || { [[ -f "$path" && -x "$path" ]]; return; }
  target="$(readlink "$path")"
  [[ "$target" == /* ]] || target="$(dirname "$1")/$target"
  [[ -f "$rootfs$target" && -x "$rootfs$target" ]]
}
for needed in /bin/sh /usr/bin/env; do
  provides_in_rootfs "$needed" || die "busybox did not provide $needed inside the image"
done

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000:node:/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
node:x:1000:
nogroup:x:65534:
EOF
chown 1000:1000 "$rootfs/home/node"
chmod 1777 "$rootfs/tmp" "$rootfs/work"

old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
say "importing $image"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'USER 1000' \
  -c 'WORKDIR /work' \
  -c 'CMD ["node"]' \
  -c 'LABEL dynamic-mcp.sandbox-version=2' \
  - "$image" >/dev/null
new_id="$(docker image inspect -f '{{.Id}}' "$image")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  # The replaced image is now untagged; drop it unless a container still uses it.
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi

docker run --rm --network none "$image" node -e 'process.stdout.write("ok")' | grep -qx ok \
  || die "the new image $image cannot run node"
if [[ -n "$npm_dir" ]]; then
  docker run --rm --network none "$image" npm --version >/dev/null \
    || die "the new image $image cannot run npm"
fi
say "built $image ($new_id)"
