#!/usr/bin/env bash
# Ingest benchmark: builds the server and the bench in release mode, then
# runs every cell. Options go to coffer-bench (see `--help`), e.g.
#   bench/ingest.sh --n1m 1024 --n64k 8192
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p coffer -p coffer-bench
exec "$target/release/coffer-bench" --coffer "$target/release/coffer" "$@"
