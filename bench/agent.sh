#!/usr/bin/env bash
# End-to-end backup and restore of a generated tree (many small files and some
# large ones), in the same run on the same tree:
#   coffer-agent -> coffer server over HTTP/2 + TLS (durable: fsync per block)
#   restic -> `rclone serve restic` over HTTPS (the like-for-like comparison)
#   restic -> a local directory (context: no network, no server)
# Prints throughput and the ratio to restic-over-REST for the first backup,
# an unchanged rerun and a restore.
#
#   bench/agent.sh                 # about 2 GiB
#   SIZE_MIB=512 bench/agent.sh    # smaller
#   BENCH_DIR=/var/tmp bench/agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
SIZE_MIB="${SIZE_MIB:-2048}"
cargo build --release -q -p coffer -p coffer-agent
for tool in restic rclone bc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is not installed; installing Debian's package" >&2
        apt-get install -y "$tool" >/dev/null
    fi
done
W=$(mktemp -d "${BENCH_DIR:-.}/coffer-agent-bench.XXXXXX")
W=$(cd "$W" && pwd)
# The tree, the coffer store, the two restic repositories and three restores:
# about seven copies. A full disk mid-run fails without a useful message.
need_kib=$((SIZE_MIB * 1024 * 15 / 2))
if [ "$(df --output=avail -k "$W" | tail -1)" -lt "$need_kib" ]; then
    echo "bench/agent.sh needs about $((need_kib / 1024)) MiB free in $W; set BENCH_DIR or SIZE_MIB" >&2
    rmdir "$W"
    exit 1
fi
cleanup() {
    [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null
    [ -n "${RCLONE_PID:-}" ] && kill "$RCLONE_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

echo "generating a ${SIZE_MIB} MiB tree in $W/src"
python3 - "$W/src" "$SIZE_MIB" <<'PY'
import os, random, sys
root, size = sys.argv[1], int(sys.argv[2]) << 20
random.seed(1)
large = int(size * 0.6)   # 60 % in large files
small = size - large      # 40 % in small files, 1 KiB .. 256 KiB
n = 0
while large > 0:
    s = min(large, 64 << 20)
    d = os.path.join(root, "large"); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"big{n:03}.bin"), "wb") as f: f.write(os.urandom(s))
    large -= s; n += 1
i = 0
while small > 0:
    s = min(small, random.randint(1 << 10, 256 << 10))
    d = os.path.join(root, "small", f"d{i // 200:03}"); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.dat"), "wb") as f: f.write(os.urandom(s))
    small -= s; i += 1
print(f"{n} large files, {i} small files")
PY
sync

# --- coffer ---
"$target/release/coffer" serve --data-dir "$W/server" --listen 127.0.0.1:0 > "$W/server.out" 2> "$W/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$W/server.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on https:\/\/127.0.0.1/https:\/\/localhost/p' "$W/server.out")
ADMIN=("$target/release/coffer" admin --server "$URL" --data-dir "$W/server")
"${ADMIN[@]}" org create bench >/dev/null
"${ADMIN[@]}" user add --org bench bench >/dev/null
TOKEN=$("${ADMIN[@]}" device enroll --org bench --user bench --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export COFFER_PROFILE="$W/agent.toml" COFFER_CACHE_DIR="$W/agent-cache"
AGENT=("$target/release/coffer-agent" --server "$URL" --token "$TOKEN" --passphrase bench --ca-cert "$W/server/tls/cert.pem")
"${AGENT[@]}" init >/dev/null

now() { date +%s.%N; }
t() { local s; s=$(now); "$@" > "$W/last.log" 2>&1 || { cat "$W/last.log"; exit 1; }; echo "$(now) - $s" | bc; }
c_first=$(t "${AGENT[@]}" backup "$W/src")
c_rerun=$(t "${AGENT[@]}" backup "$W/src")
c_restore=$(t "${AGENT[@]}" restore --target "$W/restore-coffer")

# --- restic over REST (rclone serve restic, HTTPS with the same certificate) ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/rclone-repo"
rclone serve restic --addr "127.0.0.1:$PORT" --cert "$W/server/tls/cert.pem" --key "$W/server/tls/key.pem" "$W/rclone-repo" 2> "$W/rclone.log" &
RCLONE_PID=$!
sleep 1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$W/restic-cache"
export RESTIC_REPOSITORY="rest:https://localhost:$PORT/repo"
R=(restic --cacert "$W/server/tls/cert.pem")
"${R[@]}" init >/dev/null
r_first=$(t "${R[@]}" backup "$W/src")
r_rerun=$(t "${R[@]}" backup "$W/src")
r_restore=$(t "${R[@]}" restore latest --target "$W/restore-restic")

# --- restic to a local directory (context) ---
export RESTIC_REPOSITORY="$W/restic-local" RESTIC_CACHE_DIR="$W/restic-cache-local"
restic init >/dev/null
l_first=$(t restic backup "$W/src")
l_rerun=$(t restic backup "$W/src")
l_restore=$(t restic restore latest --target "$W/restore-local")

diff -r "$W/src" "$W/restore-coffer$W/src" > /dev/null && echo "coffer restore: identical" || { echo "coffer restore DIFFERS"; exit 1; }
diff -r "$W/src" "$W/restore-restic$W/src" > /dev/null && echo "restic restore: identical" || echo "restic restore differs"

mib=$SIZE_MIB
printf '\n%-16s %14s %18s %8s %18s\n' "phase" "coffer MiB/s" "restic REST MiB/s" "ratio" "restic local MiB/s"
rate() { echo "$mib / $1" | bc -l; }
row() { printf '%-16s %14.1f %18.1f %7.2fx %18.1f\n' "$1" "$(rate "$2")" "$(rate "$3")" "$(echo "$3 / $2" | bc -l)" "$(rate "$4")"; }
row "first backup" "$c_first" "$r_first" "$l_first"
row "unchanged rerun" "$c_rerun" "$r_rerun" "$l_rerun"
row "restore" "$c_restore" "$r_restore" "$l_restore"
echo
echo "targets (against restic over REST): first backup >= 1.5x, unchanged rerun >= 3x, restore >= 1.5x"
echo "restic $(restic version | cut -d' ' -f2), coffer-agent $("$target/release/coffer-agent" --version | cut -d' ' -f2); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
