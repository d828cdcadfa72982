#!/bin/bash
# pkgstore-gc end to end: counts, dry run, grace, pins, JSON, exit codes.
set -u
BIN=${PKGSTORE_BIN:?PKGSTORE_BIN is not set}
WORK=$(mktemp -d /tmp/e2e-gc.XXXXXX)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
STORE=$WORK/store
n=0 fails=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi; }
is() { [ "$1" = "$2" ]; local r=$?; ok $r "$3"; [ $r = 0 ] || echo "#   got '$1', expected '$2'"; }
gc() { "$BIN/pkgstore-gc" --store "$STORE" "$@"; }
echo "1..27"

printf 'artifact\n' > "$WORK/a"; printf 'orphan one\n' > "$WORK/b"; printf 'orphan two\n' > "$WORK/c"
"$BIN/pkgstore-add" --store "$STORE" --no-fsync --name demo --version 1.0.0 --platform linux/amd64 "$WORK/a" >/dev/null
ok $? "add a registered artifact"
B=$("$BIN/pkgstore-add" --store "$STORE" --no-fsync "$WORK/b")
C=$("$BIN/pkgstore-add" --store "$STORE" --no-fsync "$WORK/c")
ok $? "add two unregistered blobs"

gc --help | grep -q -- '--dry-run'; ok $? "--help shows the usage"
gc --version | grep -q 'pkgstore'; ok $? "--version"
gc --grace 1y 2>"$WORK/err"; is $? 2 "bad --grace is a usage error"
grep -q "^pkgstore-gc: --grace: '1y'" "$WORK/err"; ok $? "one-line usage message"
gc --bogus 2>"$WORK/err"; is $? 2 "unknown option is a usage error"
is "$(head -n1 "$WORK/err")" "pkgstore-gc: unknown option '--bogus'" "it names the option, once"
gc --grace 2>"$WORK/err"; is $? 2 "an option without its value is a usage error"
is "$(head -n1 "$WORK/err")" "pkgstore-gc: option '--grace' needs a value" "it says the value is missing"
env -u COLLECTORCTRL_PACKAGES_DIR "$BIN/pkgstore-gc" 2>"$WORK/err"; is $? 2 "no store given"
grep -q COLLECTORCTRL_PACKAGES_DIR "$WORK/err"; ok $? "the message names the variable"
"$BIN/pkgstore-gc" --store "$WORK/none" 2>/dev/null; is $? 3 "a missing store is an error"

out=$(gc); ok $? "default grace run"
echo "$out" | grep -q '^deleted 0 blobs'; ok $? "nothing is older than an hour"

sleep 1
out=$(gc --pin "$B" --reason "keep b"); ok $? "pin b"
gc --pin sha256:$(printf '%064d' 0) 2>/dev/null; is $? 1 "pin of a missing blob exits 1"
gc --pins | grep -q "$B keep b"; ok $? "--pins lists the pin"

json=$(gc --grace 0 --dry-run --json)
# referenced: the artifact, its manifest blob and the pin
is "$(echo "$json" | jq -r '.blobs_deleted, .dry_run, .blobs_referenced, .blobs_young' | tr '\n' ' ')" "1 true 3 0 " "dry run: counts"
is "$(echo "$json" | jq -r '.items[0].digest')" "$C" "dry run lists the orphan"
[ -e "$STORE/blobs/sha256/${C:7:2}/${C:7}" ]; ok $? "dry run deleted nothing"

out=$(gc --grace 0 -v)
echo "$out" | grep -q "^deleted blob $C (11 bytes)"; ok $? "verbose run lists the deletion"
[ ! -e "$STORE/blobs/sha256/${C:7:2}/${C:7}" ] && [ -e "$STORE/blobs/sha256/${B:7:2}/${B:7}" ]
ok $? "the orphan went, the pinned blob stayed"

gc --unpin "$B" >/dev/null && gc --unpin "$B" 2>/dev/null; is $? 1 "unpin twice: the second exits 1"
gc --dry-run >/dev/full 2>"$WORK/err"; is $? 3 "output that cannot be written is an error"
is "$(cat "$WORK/err")" "pkgstore-gc: writing output failed" "it says so on one line"
"$BIN/pkgstore-verify" --store "$STORE" --all >/dev/null; ok $? "fsck is clean afterwards"
exit $((fails > 0))
