#!/usr/bin/env bash
# bench/registry_txn.sh: what one `pkgstore-add --name` costs in LMDB
# commits and in sync calls (fsync, fdatasync, syncfs; strace -f -c), for
# a new version, a second platform of it, the same artifact again, and
# the same with --batch. The commits are counted by the index's last
# transaction id (bench/index_txnid.c) before and after each command.
#
#   bash bench/registry_txn.sh [--before OLD_BIN_DIR]
#
# With --before, the same commands also run with the programs of an older
# build (e.g. a checkout of the commit before issue 10's one transaction
# per change), side by side with this build's, on stores of their own.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PKGSTORE_BUILD:-$ROOT/build}
BEFORE=
if [ "${1:-}" = "--before" ]; then BEFORE=${2:?--before needs a bin directory}; fi
if ! command -v strace >/dev/null; then
    echo "registry_txn.sh: strace is needed (make deps installs it)" >&2
    exit 1
fi
make -C "$ROOT" -s BUILD="$BUILD" all "$BUILD/bench/index_txnid" >/dev/null
TXNID=$BUILD/bench/index_txnid
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-bench-txn-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

printf '#!/bin/sh\necho amd64\n' >"$WORK/amd64"
printf '#!/bin/sh\necho arm64\n' >"$WORK/arm64"

# measure BIN STORE LABEL ARGS...: one pkgstore-add, its commits and syncs
measure() {
    local bin=$1 store=$2 label=$3
    shift 3
    local before after syncs
    before=$("$TXNID" "$store" 2>/dev/null || echo 0)
    strace -f -c -o "$WORK/strace" -e trace=fsync,fdatasync,syncfs \
        "$bin/pkgstore-add" --store "$store" "$@" >/dev/null
    after=$("$TXNID" "$store")
    syncs=$(awk '$NF ~ /^(fsync|fdatasync|syncfs)$/ {n += $4} END {print n + 0}' "$WORK/strace")
    printf '  %-44s %7s commits %7s syncs\n' "$label" "$((after - before))" "$syncs"
}

run() {
    local bin=$1 name=$2
    local store=$WORK/store-$name
    echo "$name ($bin)"
    measure "$bin" "$store" "new version, creating the store" \
        --name otelcol --version 1.0.0 --platform linux/amd64 "$WORK/amd64"
    measure "$bin" "$store" "new version of an existing package" \
        --name otelcol --version 1.1.0 --platform linux/amd64 "$WORK/amd64"
    measure "$bin" "$store" "second platform of that version" \
        --name otelcol --version 1.1.0 --platform linux/arm64 "$WORK/arm64"
    measure "$bin" "$store" "the same artifact again" \
        --name otelcol --version 1.1.0 --platform linux/arm64 "$WORK/arm64"
    measure "$bin" "$store" "--batch, new version" \
        --batch --name otelcol --version 2.0.0 --platform linux/amd64 "$WORK/amd64"
}

echo "== pkgstore-add --name: LMDB commits and sync calls per command (FSYNC unless --batch)"
[ -n "$BEFORE" ] && run "$BEFORE" before
run "$BUILD/bin" after
