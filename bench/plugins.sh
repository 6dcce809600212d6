#!/usr/bin/env bash
# Plugin benchmark: fresh-instance call latency of Rust plugins, event
# delivery throughput, and ingest with a slow integration plugin versus none.
# Builds the server, the bench and the guest plugins in release mode.
#   bench/plugins.sh [--calls 5000] [--sessions 300] [--concurrency 8]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
export CARGO_TARGET_DIR="$target"
plugins/guest/ensure-target
cargo build --release -q -p coffer -p coffer-bench
exec "$target/release/coffer-plugin-bench" --coffer "$target/release/coffer" "$@"
