#!/usr/bin/env bash
# Ten minutes of mixed load against one server: backups, restores, aborted
# sessions, slow readers and 2 000 idle connections; reports answers by
# error code, p99 latency, the server's RSS and open descriptors over time,
# then checks the server is ready and every committed backup verifies.
# Not part of CI. Options: `bench/soak.sh --help` (e.g. --secs 60).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p coffer -p coffer-bench --bin coffer --bin coffer-soak
exec target/release/coffer-soak "$@"
