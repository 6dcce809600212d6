#!/usr/bin/env bash
# End-to-end backup and restore of a generated tree (many small files and some
# large ones), in the same run on the same tree:
#   coffer-agent -> coffer server over HTTP/2 + TLS (durable: fsync per block)
#   restic -> `rclone serve restic` over HTTPS (the like-for-like comparison)
#   restic -> a local directory (context: no network, no server)
# Prints throughput and the ratio to restic-over-REST for the first backup,
# an unchanged rerun and a restore: for each round, and the medians over the
# rounds (the three run interleaved, in a rotated order each round).
#
#   bench/agent.sh                 # about 2 GiB, 3 rounds
#   SIZE_MIB=512 ROUNDS=5 bench/agent.sh
#   BENCH_DIR=/var/tmp bench/agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
SIZE_MIB="${SIZE_MIB:-2048}"
ROUNDS="${ROUNDS:-3}"
cargo build --release -q -p coffer -p coffer-agent
for tool in restic rclone bc python3; do
    if ! command -v "$tool" >/dev/null; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "bench/agent.sh needs $tool: install it (Debian: apt-get install $tool)" >&2
            exit 1
        fi
        echo "$tool is not installed; installing Debian's package" >&2
        # A fresh machine may have no package lists yet.
        apt-get install -y "$tool" >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y "$tool" >/dev/null; }
    fi
done
W=$(mktemp -d "${BENCH_DIR:-.}/coffer-agent-bench.XXXXXX")
W=$(cd "$W" && pwd)
# The tree, one tool's store and its restore at a time (each tool's are
# removed after its round): about three copies and some room. A full disk
# mid-run fails without a useful message.
need_kib=$((SIZE_MIB * 1024 * 7 / 2))
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

now() { date +%s.%N; }
# Time one command; `sync` first, untimed, so writeback left by the previous
# phase (of either tool) does not land in this one's time.
t() {
    local s
    sync
    s=$(now)
    "$@" > "$W/last.log" 2>&1 || { cat "$W/last.log" >&2; exit 1; }
    echo "$(now) - $s" | bc
}
identical() { diff -r "$W/src" "$1$W/src" > /dev/null; }

# Every tool's round starts from the same state. On ext4 without a journal,
# creating a file skips each inode freed in the last minute that is still in
# the buffer cache (recently_deleted() in fs/ext4/ialloc.c), one lookup per
# skipped inode. Right after the previous round's thousands of files are
# removed, every new file costs such a scan: by the third round it made the
# agent's system time in a restore 2.5 times longer. So: write everything
# back, drop the clean caches (as root) and read the tree back in; without
# root, wait the minute out instead (a minute once the sync has cleaned the
# inode table's buffers).
fresh_start() {
    sync
    if (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null; then
        find "$W/src" -type f -exec cat {} + > /dev/null
    else
        sleep 61
    fi
}

# --- coffer: a fresh server, device and archive per round ---
coffer_round() {
    fresh_start
    local dir="$W/coffer-$1" tls=()
    [ -f "$W/tls/cert.pem" ] && tls=(--tls-cert "$W/tls/cert.pem" --tls-key "$W/tls/key.pem")
    "$target/release/coffer" serve --data-dir "$dir/server" --listen 127.0.0.1:0 "${tls[@]}" > "$dir.out" 2> "$dir.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$dir.out" 2>/dev/null && break; sleep 0.1; done
    if [ ! -f "$W/tls/cert.pem" ]; then
        # Round 1's self-signed certificate serves every later server and rclone.
        mkdir -p "$W/tls"
        cp "$dir/server/tls/cert.pem" "$dir/server/tls/key.pem" "$W/tls/"
    fi
    local url admin token
    url=$(sed -n 's/^listening on https:\/\/127.0.0.1/https:\/\/localhost/p' "$dir.out")
    admin=("$target/release/coffer" admin --server "$url" --data-dir "$dir/server" --ca-cert "$W/tls/cert.pem")
    "${admin[@]}" org create bench >/dev/null
    "${admin[@]}" user add --org bench bench >/dev/null
    token=$("${admin[@]}" device enroll --org bench --user bench --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    local agent=("$target/release/coffer-agent" --server "$url" --token "$token" --passphrase bench --ca-cert "$W/tls/cert.pem")
    export COFFER_PROFILE="$dir/agent.toml" COFFER_CACHE_DIR="$dir/agent-cache"
    "${agent[@]}" init >/dev/null
    C_FIRST+=("$(t "${agent[@]}" backup "$W/src")")
    C_RERUN+=("$(t "${agent[@]}" backup "$W/src")")
    C_RESTORE+=("$(t "${agent[@]}" restore --target "$dir/restore")")
    unset COFFER_PROFILE COFFER_CACHE_DIR
    identical "$dir/restore" || { echo "round $1: the coffer restore DIFFERS from the tree" >&2; exit 1; }
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    rm -rf "$dir"
}

# --- restic over REST (rclone serve restic, HTTPS with the same certificate) ---
rest_round() {
    fresh_start
    local port dir="$W/rest-$1"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/repo"
    rclone serve restic --addr "127.0.0.1:$port" --cert "$W/tls/cert.pem" --key "$W/tls/key.pem" "$dir/repo" 2> "$dir.log" &
    RCLONE_PID=$!
    sleep 1
    local r=(restic --cacert "$W/tls/cert.pem" -r "rest:https://localhost:$port/repo")
    export RESTIC_CACHE_DIR="$dir/cache"
    "${r[@]}" init >/dev/null
    R_FIRST+=("$(t "${r[@]}" backup "$W/src")")
    R_RERUN+=("$(t "${r[@]}" backup "$W/src")")
    R_RESTORE+=("$(t "${r[@]}" restore latest --target "$dir/restore")")
    unset RESTIC_CACHE_DIR
    identical "$dir/restore" || echo "round $1: the restic restore differs from the tree" >&2
    kill "$RCLONE_PID"; wait "$RCLONE_PID" 2>/dev/null || true; RCLONE_PID=
    rm -rf "$dir"
}

# --- restic to a local directory (context: no network, no server) ---
local_round() {
    fresh_start
    local dir="$W/local-$1"
    local r=(restic -r "$dir/repo")
    export RESTIC_CACHE_DIR="$dir/cache"
    "${r[@]}" init >/dev/null
    L_FIRST+=("$(t "${r[@]}" backup "$W/src")")
    L_RERUN+=("$(t "${r[@]}" backup "$W/src")")
    L_RESTORE+=("$(t "${r[@]}" restore latest --target "$dir/restore")")
    unset RESTIC_CACHE_DIR
    rm -rf "$dir"
}

# Rounds interleave the three, each round in a rotated order, so a slow
# stretch of this shared machine does not fall on one tool only.
export RESTIC_PASSWORD=bench
C_FIRST=() C_RERUN=() C_RESTORE=() R_FIRST=() R_RERUN=() R_RESTORE=() L_FIRST=() L_RERUN=() L_RESTORE=()
order=(coffer rest local)
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < 3; k++)); do
        "${order[$(((round - 1 + k) % 3))]}_round" "$round"
    done
    echo "round $round of $ROUNDS done"
done
echo "every coffer restore is identical to the tree"

mib=$SIZE_MIB
rate() { echo "$mib / $1" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Per round: MiB/s of each tool and the ratio of that round.
printf '\n%-6s %-16s %14s %18s %8s %18s\n' "round" "phase" "coffer MiB/s" "restic REST MiB/s" "ratio" "restic local MiB/s"
declare -A RATIOS
for ((i = 0; i < ROUNDS; i++)); do
    for phase in first rerun restore; do
        case $phase in
        first) c=${C_FIRST[$i]} r=${R_FIRST[$i]} l=${L_FIRST[$i]} name="first backup" ;;
        rerun) c=${C_RERUN[$i]} r=${R_RERUN[$i]} l=${L_RERUN[$i]} name="unchanged rerun" ;;
        restore) c=${C_RESTORE[$i]} r=${R_RESTORE[$i]} l=${L_RESTORE[$i]} name="restore" ;;
        esac
        ratio=$(echo "$r / $c" | bc -l)
        RATIOS[$phase]+=" $ratio"
        printf '%-6s %-16s %14.1f %18.1f %7.2fx %18.1f\n' "$((i + 1))" "$name" "$(rate "$c")" "$(rate "$r")" "$ratio" "$(rate "$l")"
    done
done
# The medians over the rounds: of each tool's time, and of the per-round ratios.
printf '\nmedian of %s rounds\n%-16s %14s %18s %8s %18s\n' "$ROUNDS" "phase" "coffer MiB/s" "restic REST MiB/s" "ratio" "restic local MiB/s"
row() {
    # shellcheck disable=SC2086
    printf '%-16s %14.1f %18.1f %7.2fx %18.1f\n' "$1" "$(rate "$(median $2)")" "$(rate "$(median $3)")" "$(median ${RATIOS[$4]})" "$(rate "$(median $5)")"
}
row "first backup" "${C_FIRST[*]}" "${R_FIRST[*]}" first "${L_FIRST[*]}"
row "unchanged rerun" "${C_RERUN[*]}" "${R_RERUN[*]}" rerun "${L_RERUN[*]}"
row "restore" "${C_RESTORE[*]}" "${R_RESTORE[*]}" restore "${L_RESTORE[*]}"
echo
echo "targets (against restic over REST, median ratio): first backup >= 1.5x, unchanged rerun >= 3x, restore >= 1.5x"
echo "restic $(restic version | cut -d' ' -f2), coffer-agent $("$target/release/coffer-agent" --version | cut -d' ' -f2); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
