#!/usr/bin/env bash
# bench/ingest.sh - blob store ingest and verify against the standard tools,
# all in one run, each measured REPS times; prints medians and ratios.
#
#   1. 1 GiB random file, page cache warm: pkgstore-add --no-fsync vs
#      openssl dgst -sha256, sha256sum, git hash-object -w (scratch repo).
#      Target: pkgstore-add --no-fsync <= 1.0x openssl dgst -sha256.
#   2. Durable default mode: pkgstore-add throughput vs dd conv=fdatasync
#      writing the same bytes. Target: >= 0.8x dd.
#   3. pkgstore-verify of the 1 GiB blob vs openssl dgst -sha256.
#      Target: <= 1.0x.
#   4. 10,000 blobs of 4 KiB with pkgstore-add --batch vs
#      git hash-object -w --stdin-paths on the same files (blobs/s).
#
# Environment: BENCH_SIZE_MB (1024), BENCH_REPS (5), BENCH_SMALL_N (10000),
# BENCH_DIR (scratch parent on a real disk, default $TMPDIR or /tmp),
# PKGSTORE_BIN (default build/bin), BENCH_BASELINE_BIN (a bin/ directory of
# another build, e.g. the last release: its pkgstore-add is timed in the
# same run beside this one, for before/after ratios).
#
# Both ratios depend on the machine as much as on the code, so the header
# says what it was: the load (the ingest overlaps hashing and copying on two
# cores, which a busy machine does not give) and the filesystem's journal
# (ext4 without one makes every inode allocation scan past the inodes of
# recently deleted files of its group, here the previous repetition's).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
SIZE_MB=${BENCH_SIZE_MB:-1024}
REPS=${BENCH_REPS:-5}
SMALL_N=${BENCH_SMALL_N:-10000}
PARENT=${BENCH_DIR:-${TMPDIR:-/tmp}}
W=$(mktemp -d "$PARENT/pkgstore-bench-XXXXXX")
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT

for tool in openssl sha256sum git dd; do
    command -v "$tool" >/dev/null || { echo "bench/ingest.sh: $tool not found (make deps)" >&2; exit 1; }
done
[ -x "$BIN/pkgstore-add" ] || { echo "bench/ingest.sh: $BIN/pkgstore-add missing (make)" >&2; exit 1; }

now() { date +%s.%N; }
# time_it CMD...: seconds of wall time, output discarded
time_it() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fmt() { printf '%.3f' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

BASE=${BENCH_BASELINE_BIN:-}
[ -z "$BASE" ] || [ -x "$BASE/pkgstore-add" ] || { echo "bench/ingest.sh: $BASE/pkgstore-add missing" >&2; exit 1; }

BIG=$W/big.bin
fs_dev=$(df "$W" | awk 'NR==2 {print $1}')
journal=unknown
[ -r "/sys/fs/ext4/${fs_dev##*/}/journal_task" ] && journal=$( [ "$(cat "/sys/fs/ext4/${fs_dev##*/}/journal_task")" = "<none>" ] && echo none || echo yes)
echo "# pkgstore ingest benchmark: ${SIZE_MB} MiB file, $REPS repetitions, $SMALL_N small blobs"
echo "# $(uname -srm), $(nproc) CPUs, $(openssl version), filesystem $(df -T "$W" | awk 'NR==2 {print $2}') (ext4 journal: $journal)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)${BASE:+, baseline: $BASE}"
head -c $((SIZE_MB * 1048576)) /dev/urandom >"$BIG"
cat "$BIG" >/dev/null
DIGEST=sha256:$(openssl dgst -sha256 -r "$BIG" | cut -d' ' -f1)

declare -A T
run_reps() { # name setup-cmd cmd...   (setup runs untimed before each rep)
    local name=$1 setup=$2 times=() i
    shift 2
    for ((i = 0; i < REPS; i++)); do
        eval "$setup"
        cat "$BIG" >/dev/null
        times+=("$(time_it "$@")")
    done
    T[$name]=$(median "${times[@]}")
}

# ---- 1. warm 1 GiB: hash-only tools and the no-fsync ingest, interleaved per tool
git init -q "$W/repo"
run_reps openssl ":" openssl dgst -sha256 "$BIG"
run_reps sha256sum ":" sha256sum "$BIG"
run_reps add_nofsync "{ chmod -R u+w $W/s1 2>/dev/null || true; }; rm -rf $W/s1" \
    "$BIN/pkgstore-add" --no-fsync --store "$W/s1" "$BIG"
[ -z "$BASE" ] || run_reps base_nofsync "{ chmod -R u+w $W/s0 2>/dev/null || true; }; rm -rf $W/s0" \
    "$BASE/pkgstore-add" --no-fsync --store "$W/s0" "$BIG"
run_reps git_hash "rm -rf $W/repo/.git/objects/??" git -C "$W/repo" hash-object -w "$BIG"

# ---- 2. durable default mode vs dd conv=fdatasync of the same bytes
run_reps add_fsync "{ chmod -R u+w $W/s2 2>/dev/null || true; }; rm -rf $W/s2; sync" \
    "$BIN/pkgstore-add" --store "$W/s2" "$BIG"
run_reps dd_fdatasync "rm -f $W/dd.out; sync" \
    dd if="$BIG" of="$W/dd.out" bs=4M conv=fdatasync status=none
rm -f "$W/dd.out"

# ---- 3. verify the stored blob vs openssl
run_reps verify ":" "$BIN/pkgstore-verify" --store "$W/s1" "$DIGEST"
run_reps openssl2 ":" openssl dgst -sha256 "$BIG"

# ---- 4. small blobs
mkdir -p "$W/small"
head -c $((SMALL_N * 4096)) /dev/urandom | (cd "$W/small" && split -a 5 -d -b 4096 - f)
(cd "$W/small" && ls) | sed "s|^|$W/small/|" >"$W/small.list"
cat "$W/small"/* >/dev/null
mapfile -t SMALL_FILES <"$W/small.list"
# one process, one batch: the whole list on one command line
small_add() { "$BIN/pkgstore-add" --batch --store "$W/s3" "${SMALL_FILES[@]}" >/dev/null; }
small_git() { git -C "$W/repo" hash-object -w --stdin-paths <"$W/small.list" >/dev/null; }
small_base() { "$BASE/pkgstore-add" --batch --store "$W/s4" "${SMALL_FILES[@]}" >/dev/null; }
times_a=() times_g=() times_b=()
for ((i = 0; i < REPS; i++)); do
    chmod -R u+w "$W/s3" "$W/s4" 2>/dev/null || true
    rm -rf "$W/s3" "$W/s4" "$W/repo/.git/objects"/??; sync
    times_a+=("$(time_it small_add)")
    times_g+=("$(time_it small_git)")
    [ -z "$BASE" ] || times_b+=("$(time_it small_base)")
done
T[small_add]=$(median "${times_a[@]}")
T[small_git]=$(median "${times_g[@]}")
[ -z "$BASE" ] || T[small_base]=$(median "${times_b[@]}")
n_small=$(find "$W/s3/blobs" -type f | wc -l)

MB=$SIZE_MB
tp() { awk -v a="$MB" -v b="$1" 'BEGIN {printf "%.0f", a / b}'; }
bps() { awk -v a="$SMALL_N" -v b="$1" 'BEGIN {printf "%.0f", a / b}'; }

echo
printf '| %-44s | %9s | %10s | %-28s |\n' "benchmark (median of $REPS)" "seconds" "MiB/s" "ratio"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------" "-----------" "------------" "------------------------------"
row() { printf '| %-44s | %9s | %10s | %-28s |\n' "$1" "$(fmt "$2")" "$3" "$4"; }
row "openssl dgst -sha256 (${MB} MiB, warm)" "${T[openssl]}" "$(tp "${T[openssl]}")" "1.00 (reference)"
row "sha256sum" "${T[sha256sum]}" "$(tp "${T[sha256sum]}")" "$(ratio "${T[sha256sum]}" "${T[openssl]}")x openssl"
row "git hash-object -w" "${T[git_hash]}" "$(tp "${T[git_hash]}")" "$(ratio "${T[git_hash]}" "${T[openssl]}")x openssl"
row "pkgstore-add --no-fsync" "${T[add_nofsync]}" "$(tp "${T[add_nofsync]}")" "$(ratio "${T[add_nofsync]}" "${T[openssl]}")x openssl (target <= 1.0)"
[ -z "$BASE" ] || row "baseline pkgstore-add --no-fsync" "${T[base_nofsync]}" "$(tp "${T[base_nofsync]}")" "$(ratio "${T[base_nofsync]}" "${T[openssl]}")x openssl"
row "dd conv=fdatasync (same bytes)" "${T[dd_fdatasync]}" "$(tp "${T[dd_fdatasync]}")" "1.00 (reference)"
row "pkgstore-add (durable, default)" "${T[add_fsync]}" "$(tp "${T[add_fsync]}")" \
    "$(ratio "${T[dd_fdatasync]}" "${T[add_fsync]}")x dd throughput (target >= 0.8)"
row "openssl dgst -sha256 (again)" "${T[openssl2]}" "$(tp "${T[openssl2]}")" "1.00 (reference)"
row "pkgstore-verify (${MB} MiB blob)" "${T[verify]}" "$(tp "${T[verify]}")" "$(ratio "${T[verify]}" "${T[openssl2]}")x openssl (target <= 1.0)"
echo
printf '| %-44s | %9s | %10s | %-28s |\n' "small blobs: $SMALL_N x 4 KiB" "seconds" "blobs/s" "ratio"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------" "-----------" "------------" "------------------------------"
row "git hash-object -w --stdin-paths" "${T[small_git]}" "$(bps "${T[small_git]}")" "1.00 (reference)"
row "pkgstore-add --batch" "${T[small_add]}" "$(bps "${T[small_add]}")" "$(ratio "${T[small_git]}" "${T[small_add]}")x git blobs/s (target >= 5)"
[ -z "$BASE" ] || row "baseline pkgstore-add --batch" "${T[small_base]}" "$(bps "${T[small_base]}")" "$(ratio "${T[small_git]}" "${T[small_base]}")x git blobs/s"
echo
echo "# store after the small-blob run holds $n_small files"
