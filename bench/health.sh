#!/usr/bin/env bash
# Health at fleet size: builds the server and the bench in release mode,
# then measures 10 000 and 100 000 devices in one run (ratios printed), and
# ingest with the evaluator running against idle. Options go to
# coffer-health-bench (see `--help`), e.g.
#   bench/health.sh --sizes 10000,100000 --reps 15
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p coffer -p coffer-bench
exec "$target/release/coffer-health-bench" --coffer "$target/release/coffer" "$@"
