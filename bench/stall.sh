#!/usr/bin/env bash
# Another tenant's 64 KiB upload latency while one device commits a backup
# of a million block ids. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p coffer -p coffer-bench --bin coffer --bin coffer-stall-bench
exec target/release/coffer-stall-bench "$@"
