#!/usr/bin/env bash
# Kept-alive HTTP throughput and latency of the frontend, measured with wrk:
# stateless 2026-07-28 `tools/call system.health` (bench/mcp_tools_call.lua)
# and `GET /healthz`, each on the same number of kept-alive connections.
# Prints wrk's latency distribution and one RESULT line per target; asserts
# nothing about the figures (see docs/BENCHMARKS.md).
#
#   bench/http_keepalive.sh [--connections 16] [--threads 2] [--duration 20s]
#                           [--binary target/release/dynamic-mcp]
#
# Installs Debian's wrk when it is missing. The server runs with its own
# registry and executor (no Docker work: system.health never reaches it) and
# a rate budget large enough that no call is refused by the guard.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
connections=16
threads=2
duration=20s
binary="$repo_root/target/release/dynamic-mcp"
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) connections="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk with apt-get" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
[ -x "$binary" ] || { echo "no $binary: run cargo build --release --bins first" >&2; exit 1; }

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MCP_TRANSPORT=http MCP_PORT="$port" MCP_DYNAMIC_STORE="$work/tools.json" MCP_AUDIT_FILE="$work/audit.log" \
  MCP_EXECUTOR_ID="bench-keepalive-$$" MCP_TOOL_MAX_CALLS_PER_WINDOW=1000000000 MCP_TOOL_RATE_WINDOW_MS=1000 \
  "$binary" </dev/null >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fs "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs "$base/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

echo "== tools/call system.health (2026-07-28, stateless), $connections kept-alive connections, $duration"
wrk --latency -t "$threads" -c "$connections" -d "$duration" -s "$repo_root/bench/mcp_tools_call.lua" "$base/mcp"
echo
echo "== GET /healthz, $connections kept-alive connections, $duration"
wrk --latency -t "$threads" -c "$connections" -d "$duration" "$base/healthz"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
