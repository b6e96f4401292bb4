#!/usr/bin/env bash
# Runs every test against the real things: a Docker engine and the sandbox
# image (started or built here when missing) and the Python MCP client.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

DYNAMIC_MCP_SETUP_TESTS=1 "$repo_root/scripts/setup.sh"
python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

echo "== format and lint"
python3 scripts/module_cycles.py --self-test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== Rust tests"
cargo build --workspace --bins --quiet
cargo test --workspace

echo "== end-to-end tests (Python MCP client)"
python3 -m pytest tests/e2e -q
