#!/usr/bin/env bash
# pkgstore-pack end to end: deterministic output, what tar sees, refusals,
# exit codes. Needs $PKGSTORE_BIN (make test sets it).
set -u
bin=${PKGSTORE_BIN:?set PKGSTORE_BIN}
pack=$bin/pkgstore-pack
work=$(mktemp -d "${TMPDIR:-/tmp}/pack.t.XXXXXX")
trap 'rm -rf "$work"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }

echo "1..19"

mkdir -p "$work/src/share"
printf '#!/bin/sh\necho v1\n' > "$work/src/otelcol"
chmod 0755 "$work/src/otelcol"
echo a > "$work/src/share/a.txt"
ln -s a.txt "$work/src/share/link"

check "--help exits 0" bash -c "'$pack' --help > /dev/null"
check "--version prints the version like the other tools" \
    bash -c "'$pack' --version | grep -q '^pkgstore-pack (pkgstore) [0-9]'"

"$pack" -o "$work/one.tar.zst" -C "$work/src" otelcol share > "$work/out1" 2>&1
check "packs files and a directory" test -s "$work/one.tar.zst"
check "summary names the digest" grep -q 'sha256:[0-9a-f]\{64\}' "$work/out1"

touch -d '2001-01-01' "$work/src/share/a.txt"
"$pack" -o "$work/two.tar.zst" -C "$work/src" share/ ./otelcol > /dev/null 2>&1
check "same inputs give the same bytes" cmp -s "$work/one.tar.zst" "$work/two.tar.zst"

listing=$(tar --zstd -tvf "$work/one.tar.zst" 2>/dev/null | awk '{print $1, $2, $6}' | tr '\n' ';')
expected='-rwxr-xr-x 0/0 otelcol;drwxr-xr-x 0/0 share/;-rw-r--r-- 0/0 share/a.txt;lrwxrwxrwx 0/0 share/link;'
check "tar sees sorted entries, mode kept, owner 0" test "$listing" = "$expected"

json=$("$pack" --json -o "$work/j.tar.zst" -C "$work/src" otelcol)
check "--json names the sole executable" bash -c "echo '$json' | grep -q '\"entrypoint\":\"otelcol\"'"

odd=$work/$(printf 'out\351').tar.zst
"$pack" --json -o "$odd" -C "$work/src" otelcol > "$work/odd.json"
# JSON is UTF-8: iconv refuses any other byte (jq would quietly replace it).
check "--json stays valid JSON for an output name that is not UTF-8" \
    bash -c "iconv -f UTF-8 -t UTF-8 '$work/odd.json' > /dev/null &&
             jq -e '.entrypoint == \"otelcol\" and (.path | endswith(\".tar.zst\"))' '$work/odd.json' > /dev/null"

"$pack" -o "$work/x.tar.zst" /etc/hostname 2> "$work/err"; rc=$?
check "absolute input refused with exit 1" test $rc = 1
check "error is one line naming the input" bash -c "[ \$(wc -l < '$work/err') = 1 ] && grep -q '^pkgstore-pack: /etc/hostname: absolute path' '$work/err'"

ln -s ../../etc/passwd "$work/src/escape"
"$pack" -o "$work/x.tar.zst" -C "$work/src" escape 2> "$work/err"; rc=$?
check "escaping symlink refused, no output left" bash -c "[ $rc = 1 ] && [ ! -e '$work/x.tar.zst' ] && ! ls '$work' | grep -q tmp"

"$pack" -o "$work/x.tar.zst" 2> /dev/null; rc=$?
check "no FILE is a usage error (exit 2)" test $rc = 2
"$pack" --bogus 2> /dev/null; rc=$?
check "unknown option is a usage error (exit 2)" test $rc = 2
"$pack" --bogus 2> "$work/err"; rc=$?
check "unknown option: exit 2, one line naming it (not argv[0]) and the --help pointer" \
    bash -c "[ $rc = 2 ] && [ \$(wc -l < '$work/err') = 2 ] &&
             [ \"\$(head -1 '$work/err')\" = \"pkgstore-pack: unknown option '--bogus'\" ] &&
             grep -q \"^Try 'pkgstore-pack --help'\" '$work/err'"
"$pack" -x -o "$work/x.tar.zst" otelcol 2> "$work/err"; rc=$?
check "unknown short option named as -x" \
    bash -c "[ $rc = 2 ] && [ \"\$(head -1 '$work/err')\" = \"pkgstore-pack: unknown option '-x'\" ]"
"$pack" -o "$work/x.tar.zst" --level 2> "$work/err"; rc=$?
check "--level without a value: exit 2, says it needs a value" \
    bash -c "[ $rc = 2 ] && [ \"\$(head -1 '$work/err')\" = \"pkgstore-pack: option '--level' needs a value\" ]"
"$pack" -o "$work/x.tar.zst" --level 42 otelcol 2> "$work/err"; rc=$?
check "--level out of range: exit 2, one line" \
    bash -c "[ $rc = 2 ] && head -1 '$work/err' | grep -q \"^pkgstore-pack: --level: '42' is not a number in 1..19\$\""

mkdir -p "$work/outdir/full"
"$pack" -o "$work/outdir/full" -C "$work/src" otelcol 2> "$work/err"; rc=$?
check "an output that cannot be written (a directory is there) exits 3" \
    bash -c "[ $rc = 3 ] && [ \$(wc -l < '$work/err') = 1 ] && grep -q '^pkgstore-pack: ' '$work/err'"
check "no temporary file is left beside it" bash -c "[ \$(ls '$work/outdir' | wc -l) = 1 ]"
