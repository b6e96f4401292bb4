#!/usr/bin/env bash
# Runs dynamic-mcp locally: prepares Docker and the sandbox image, builds the
# three binaries, and starts the frontend, which starts the registry (file
# backend) and the executor itself. Arguments go to `dynamic-mcp`
# (try --help); so does the environment (see .env.example).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

"$repo_root/scripts/setup.sh"
# Build output goes to stderr: stdout is the MCP channel in stdio mode.
cargo build --release --quiet --bins 1>&2
exec "$repo_root/target/release/dynamic-mcp" "$@"
