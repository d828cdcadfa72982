#!/usr/bin/env bash
# A short narrated walk-through of the pkgstore blob store on a temporary
# store: add, list, verify, corrupt a blob on purpose, watch verify catch it,
# repair. Run it with `bash examples/demo-store.sh` after `make`; `make demo`
# runs the fleet demo (examples/demo.sh).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-demo-XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export COLLECTORCTRL_PACKAGES_DIR=$WORK/store

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "A store is a directory; the tools find it through \$COLLECTORCTRL_PACKAGES_DIR ($COLLECTORCTRL_PACKAGES_DIR)."
printf '#!/bin/sh\necho "otelcol-contrib 0.98.0"\n' >"$WORK/otelcol-contrib"
printf '#!/bin/sh\necho "log shipper 1.2.0"\n' >"$WORK/log-shipper"
chmod +x "$WORK/otelcol-contrib" "$WORK/log-shipper"

say "Add a collector binary as package otelcol-contrib 0.98.0 for linux/amd64. The blob is named by its SHA-256."
show "$BIN/pkgstore-add" --name otelcol-contrib --version 0.98.0 --platform linux/amd64 "$WORK/otelcol-contrib"

say "Add an addon, and the same collector again: an existing blob is a success that writes nothing."
show "$BIN/pkgstore-add" --name log-shipper --version 1.2.0 --type addon --platform linux/amd64 "$WORK/log-shipper"
show "$BIN/pkgstore-add" "$WORK/otelcol-contrib"

say "List blobs and package records."
show "$BIN/pkgstore-ls"

DIGEST=$("$BIN/pkgstore-add" "$WORK/otelcol-contrib")
HEX=${DIGEST#sha256:}
BLOB=$COLLECTORCTRL_PACKAGES_DIR/blobs/sha256/${HEX:0:2}/$HEX
say "On disk the blob is read-only and lives at blobs/sha256/${HEX:0:2}/<hex>:"
show ls -l "$BLOB"

say "Verify re-hashes it. Any file can be checked against a digest too."
show "$BIN/pkgstore-verify" "$DIGEST"
show "$BIN/pkgstore-verify" --sha256 "$HEX" "$WORK/otelcol-contrib"

say "Now corrupt the blob on purpose (as a failing disk or a careless admin would)."
chmod u+w "$BLOB"
printf 'X' | dd of="$BLOB" bs=1 seek=12 conv=notrunc status=none
printf '$ flip one byte of %s\n' "blobs/sha256/${HEX:0:2}/${HEX:0:12}..."

say "verify catches it (exit 1):"
set +e
"$BIN/pkgstore-verify" "$DIGEST" 2>&1; echo "exit status $?"
say "fsck of the whole store finds it too (exit 1):"
"$BIN/pkgstore-verify" --all; echo "exit status $?"
say "Repair moves the corrupt blob to quarantine/ and drops the record that pointed at it:"
"$BIN/pkgstore-verify" --all --repair; echo "exit status $?"
set -e
show ls "$COLLECTORCTRL_PACKAGES_DIR/quarantine"

say "Adding the original bytes again heals the store, and fsck is clean."
show "$BIN/pkgstore-add" --name otelcol-contrib --version 0.98.0 --platform linux/amd64 "$WORK/otelcol-contrib"
show "$BIN/pkgstore-verify" --all
say "Done. (The temporary store is removed on exit.)"
