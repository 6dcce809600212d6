#!/usr/bin/env bash
# Garbage collection at size: archives of 100 000 and 1 000 000 blocks (1 000
# and 10 000 backups, half of which expire) on disk with packs, on disk with a
# file per block, and on S3 (a local s3s-fs, installed like the tests do),
# both sizes in one run with the ratios printed; bytes given back against
# the expired backups' bytes; ingest while a collection runs against ingest
# with the collection held, in alternating rounds. Options go to
# coffer-gc-bench (see `--help`), e.g.
#   bench/gc.sh --sizes 10000,100000 --stores packed,files
# Needs about 12 GB of free disk for the default sizes, and up to 37 GB more
# for the ingest rounds while collecting (fewer rounds with less). The
# collections took about half an hour on a 2-core machine (three runs at each
# size: `--repeat 1` for one); the ingest comparison alone, about seven minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
tools="${COFFER_TOOLS_DIR:-$HOME/.cache/coffer-tools}"
s3s="${COFFER_S3S_FS:-$tools/s3s-fs-0.14.1/bin/s3s-fs}"
if [ ! -x "$s3s" ]; then
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$tools/s3s-fs-0.14.1"
fi
cargo build --release -p coffer-bench --bin coffer-gc-bench
exec "$target/release/coffer-gc-bench" --s3s-fs "$s3s" "$@"
