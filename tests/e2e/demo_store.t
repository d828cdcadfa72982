#!/bin/bash
# examples/demo-store.sh (the store walk-through in examples/README.md) keeps
# working: it runs to the end, verify and fsck catch the flipped byte, repair
# quarantines the blob, re-adding heals the store, and the temporary store
# is removed.
set -u
echo "1..5"
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
LOG=$(mktemp "${TMPDIR:-/tmp}/pkgstore-demo-store-log-XXXXXX")
trap 'rm -f "$LOG"' EXIT
PKGSTORE_BIN=${PKGSTORE_BIN:?} bash "$SRC/examples/demo-store.sh" >"$LOG" 2>&1; rc=$?
n=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; tail -5 "$LOG" | sed 's/^/# /'; fi; }
check "demo-store.sh exits 0 (exit $rc)" "[ $rc = 0 ]"
check "verify, fsck and fsck --repair all see the corrupt blob (exit 1 each)" \
    "[ \$(grep -c '^exit status 1\$' '$LOG') = 3 ] && grep -q '^checked 4 blobs .* 1 corrupt' '$LOG'"
check "repair quarantines it and drops the record" \
    "grep -q '; moved to quarantine/.* (repaired)\$' '$LOG' && grep -q '^missing index/packages/otelcol-contrib .* (repaired)\$' '$LOG'"
check "after re-adding, fsck is clean" \
    "tail -3 '$LOG' | grep -q '^checked 4 blobs ([0-9]* bytes): 0 missing, 0 corrupt, 0 stray, 0 orphaned, 0 repaired\$'"
dir=$(grep -o '/[^ )]*/pkgstore-demo-[A-Za-z0-9]*' "$LOG" | head -1)
check "the temporary store is removed ($dir)" "[ -n '$dir' ] && [ ! -e '$dir' ]"
