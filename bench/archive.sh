#!/usr/bin/env bash
# bench/archive.sh - extracting the entrypoint from a 100 MB tar.zst with
# pkgstore's safe extraction, against `tar --zstd -xf` of the same file.
#
# The archive holds a 100 MB entrypoint (60 MB of random bytes, 40 MB of
# text, so zstd has something to do) plus a few small files. Each round
# extracts into a fresh directory with both tools, alternating which goes
# first; the page cache is warm for both. Prints every run, the medians and
# the ratio ours/tar (target: at most 1.1).
#
# Environment: ROUNDS (default 7), BUILD (default build), TMPDIR.
set -euo pipefail

src_dir=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
rounds=${ROUNDS:-7}
driver="$src_dir/$build/bench/archive_extract"

if [ ! -x "$driver" ]; then
    make -C "$src_dir" -s -j2 "$build/bench/archive_extract" >/dev/null
fi
command -v zstd >/dev/null || { echo "bench/archive.sh: zstd not installed (make deps)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-archive.XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir "$work/src"
{ head -c 60000000 /dev/urandom; (seq 1 20000000 || true) | head -c 40000000; } > "$work/src/otelcol-contrib"
chmod 0755 "$work/src/otelcol-contrib"
echo "# otelcol-contrib" > "$work/src/README.md"
echo "Apache-2.0" > "$work/src/LICENSE"
mkdir "$work/src/conf"
echo "receivers: {}" > "$work/src/conf/config.yaml"
tar -C "$work/src" --zstd -cf "$work/big.tar.zst" otelcol-contrib README.md LICENSE conf
archive_bytes=$(stat -c %s "$work/big.tar.zst")
entry_bytes=$(stat -c %s "$work/src/otelcol-contrib")

now() { date +%s.%N; }
ours=()
theirs=()

run_ours() {
    local out=$work/ours.$1 t0 t1 file
    mkdir "$out"
    t0=$(now)
    file=$("$driver" "$work/big.tar.zst" "$out" otelcol-contrib)
    t1=$(now)
    cmp -s "$file" "$work/src/otelcol-contrib" || { echo "bench/archive.sh: extracted entrypoint differs" >&2; exit 1; }
    [ -x "$file" ] || { echo "bench/archive.sh: exec bit lost" >&2; exit 1; }
    rm -rf "$out"
    ours+=("$(echo "$t1 - $t0" | bc -l)")
}

run_tar() {
    local out=$work/tar.$1 t0 t1
    mkdir "$out"
    t0=$(now)
    tar -C "$out" --zstd -xf "$work/big.tar.zst"
    t1=$(now)
    rm -rf "$out"
    theirs+=("$(echo "$t1 - $t0" | bc -l)")
}

# One untimed warm-up of each, so both start with the archive cached.
run_ours warm; run_tar warm; ours=(); theirs=()
for ((i = 0; i < rounds; i++)); do
    if ((i % 2)); then run_tar "$i"; run_ours "$i"; else run_ours "$i"; run_tar "$i"; fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_ours=$(median "${ours[@]}")
m_tar=$(median "${theirs[@]}")

printf 'archive: %d bytes tar.zst, entrypoint %d bytes, %d rounds\n' "$archive_bytes" "$entry_bytes" "$rounds"
printf 'pkgstore extract entrypoint (s): %s\n' "$(printf '%.3f ' "${ours[@]}")"
printf 'tar --zstd -xf (s):              %s\n' "$(printf '%.3f ' "${theirs[@]}")"
printf 'median: pkgstore %.3f s, tar %.3f s, ratio pkgstore/tar %.2f (target <= 1.10)\n' \
    "$m_ours" "$m_tar" "$(echo "$m_ours / $m_tar" | bc -l)"
