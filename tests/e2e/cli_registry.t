#!/usr/bin/env bash
# CLI tests for the registry tools: pkgstore-add --name/--version (manifests,
# archives, dependencies), pkgstore-show, pkgstore-cat, pkgstore-resolve,
# pkgstore-rm and the pkgstore front command. Prints TAP; run by prove.
set -u
BIN=${PKGSTORE_BIN:-$(cd "$(dirname "$0")/../../build/bin" && pwd)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-cli-registry-XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
unset COLLECTORCTRL_PACKAGES_DIR
S=$WORK/store

n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
run() { "$@" >"$WORK/out" 2>"$WORK/err"; rc=$?; }
expect() {
    local want=$1 desc=$2; shift 2
    run "$@"
    if [ "$rc" = "$want" ]; then ok "$desc (exit $want)"; else
        not_ok "$desc: exit $rc, want $want"; sed 's/^/# /' "$WORK/err" "$WORK/out" | head -5; fi
}
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
add() { "$BIN/pkgstore-add" --store "$S" --no-fsync "$@"; }

# inputs: binaries per version and platform, and archives
for v in 0.97.0 0.98.0 0.99.0; do
    for p in amd64 arm64; do
        printf '#!/bin/sh\necho otelcol %s %s\n' "$v" "$p" >"$WORK/otelcol-$v-$p"
    done
done
printf '#!/bin/sh\necho helper\n' >"$WORK/helper.sh"
mkdir -p "$WORK/tree/otelcol/bin" "$WORK/two" "$WORK/sub"
printf '#!/bin/sh\necho from tar\n' >"$WORK/tree/otelcol/bin/otelcol"
chmod 755 "$WORK/tree/otelcol/bin/otelcol"
printf 'docs\n' >"$WORK/tree/otelcol/README"
tar --zstd -C "$WORK/tree" -cf "$WORK/otelcol.tar.zst" otelcol
tar -czf "$WORK/otelcol.tgz" -C "$WORK/tree" otelcol
printf 'a\n' >"$WORK/two/a" && printf 'b\n' >"$WORK/two/b" && chmod 755 "$WORK/two/a" "$WORK/two/b"
tar -C "$WORK/two" -cf "$WORK/two.tar" a b
printf 'evil\n' >"$WORK/evil"
(cd "$WORK/sub" && tar -P -cf "$WORK/evil.tar" ../evil 2>/dev/null)

# ---------------------------------------------------------------- pkgstore-add
for v in 0.97.0 0.98.0; do
    for p in amd64 arm64; do
        expect 0 "add otelcol $v linux/$p" add --name otelcol --version "$v" \
            --platform "linux/$p" "$WORK/otelcol-$v-$p"
    done
done
check "add prints the manifest digest" "grep -q '^manifest sha256:[0-9a-f]\{64\}$' '$WORK/out'"
expect 0 "add 0.99.0 for amd64 only, as v0.99.0, JSON" add --json --name otelcol \
    --version v0.99.0 --platform linux/x86_64 "$WORK/otelcol-0.99.0-amd64"
check "the JSON names the normalized version, platform and the manifest" \
    "jq -e '.package.version == \"0.99.0\" and .package.platform == \"linux/amd64\" and (.package.manifest_digest | startswith(\"sha256:\"))' '$WORK/out' >/dev/null"
OLD_099=$(jq -r .package.digest "$WORK/out")
expect 3 "another artifact for 0.99.0 amd64 without --replace" add --name otelcol \
    --version 0.99.0 --platform linux/amd64 "$WORK/otelcol-0.98.0-amd64"
check "the refusal names the version, the platform, the old artifact and --replace, once" \
    "[ \"\$(cat '$WORK/err')\" = \"pkgstore-add: otelcol 0.99.0 linux/amd64: already has a different artifact ($OLD_099, binary, entrypoint otelcol-0.99.0-amd64); an existing version changes its artifacts only with replace (--replace replaces it)\" ]"
expect 0 "the same artifact again is fine" add --name otelcol --version 0.99.0 \
    --platform linux/amd64 "$WORK/otelcol-0.99.0-amd64"
check "and says nothing on stderr" "[ ! -s '$WORK/err' ]"
expect 0 "replace the 0.99.0 amd64 artifact with --replace" add --json --replace --name otelcol \
    --version 0.99.0 --platform linux/amd64 --entrypoint otelcol-0.99.0-amd64 \
    "$WORK/otelcol-0.98.0-amd64"
NEW_099=$(jq -r .package.digest "$WORK/out")
check "the replacement is said on stderr" \
    "[ \"\$(cat '$WORK/err')\" = 'pkgstore-add: otelcol 0.99.0 linux/amd64: replaced $OLD_099 with $NEW_099' ]"
check "and in the JSON" "jq -e '.package.replaced == \"$OLD_099\"' '$WORK/out' >/dev/null"
expect 0 "add a tar.zst without --format or --entrypoint" add --name archived --version 1.0.0 \
    --platform linux/amd64 "$WORK/otelcol.tar.zst"
check "the format is detected and the only executable is the entrypoint" \
    "grep -q '^package archived 1.0.0 linux/amd64 primary sha256:[0-9a-f]* [0-9]* tar+zstd otelcol/bin/otelcol$' '$WORK/out'"
expect 0 "add a tar.gz with an explicit entrypoint" add --name archived --version 1.0.0 \
    --platform linux/arm64 --entrypoint ./otelcol/bin/otelcol "$WORK/otelcol.tgz"
check "tar+gzip, entrypoint normalized" "grep -q ' tar+gzip otelcol/bin/otelcol$' '$WORK/out'"
expect 3 "an entrypoint that is not in the archive" add --name archived --version 1.0.1 \
    --platform linux/amd64 --entrypoint otelcol/bin/nope "$WORK/otelcol.tar.zst"
check "the error names the entrypoint" "grep -q 'nope' '$WORK/err'"
expect 3 "two executables and no --entrypoint" add --name archived --version 1.0.1 \
    --platform linux/amd64 "$WORK/two.tar"
check "the error asks for --entrypoint" "grep -q 'entrypoint: required' '$WORK/err'"
expect 0 "two executables with --entrypoint" add --name archived --version 1.0.1 \
    --platform linux/amd64 --entrypoint b "$WORK/two.tar"
expect 3 "an archive with ../ is refused at upload" add --name archived --version 1.0.2 \
    --platform linux/amd64 --entrypoint evil "$WORK/evil.tar"
check "the error names the unsafe entry" "grep -q '\.\./evil' '$WORK/err'"
check "the error is one line" "[ \$(wc -l <'$WORK/err') = 1 ]"
expect 3 "a declared format that is not the content" add --name archived --version 1.0.2 \
    --platform linux/amd64 --format zip "$WORK/otelcol.tar.zst"
expect 3 "an archive with ../ declared binary is refused too" add --name archived \
    --version 1.0.2 --platform linux/amd64 --format binary --entrypoint evil "$WORK/evil.tar"
check "the error says the content is a tar" \
    "grep -q '^pkgstore-add: archived 1.0.2: artifact.format: declared binary, but blob sha256:[0-9a-f]* is a tar archive$' '$WORK/err'"
expect 3 "a binary declared an archive is refused" add --name archived --version 1.0.2 \
    --platform linux/amd64 --format tar+gzip --entrypoint x "$WORK/helper.sh"
check "the error says it is no archive" "grep -q 'declared tar+gzip, but blob .* is not an archive' '$WORK/err'"
expect 1 "none of the refused adds made 1.0.2" "$BIN/pkgstore-show" --store "$S" archived 1.0.2
expect 2 "--format must be a known one" add --name archived --version 1.0.2 --format rar \
    "$WORK/otelcol.tar.zst"
expect 2 "--version must be SemVer" add --name otelcol --version 1.0 "$WORK/helper.sh"
expect 2 "--depends needs a valid constraint" add --name helper --version 1.0.0 \
    --depends 'otelcol >>1' "$WORK/helper.sh"
check "the error names --depends, the text and the library's reason" \
    "grep -q \"^pkgstore-add: --depends: 'otelcol >>1': constraint: \" '$WORK/err'"
expect 2 "--depends may not name a package twice" add --name helper --version 1.0.0 \
    --depends 'otelcol >=1.0.0' --depends otelcol "$WORK/helper.sh"
check "the error names the package given twice" \
    "grep -q \"^pkgstore-add: --depends: 'otelcol' is given twice\$\" '$WORK/err'"
expect 2 "--force needs --name" add --force "$WORK/helper.sh"

# dependencies
expect 3 "an addon with unmet dependencies" add --name helper --version 1.0.0 --type addon \
    --platform any/any --depends 'otelcol >=1.0.0' --depends 'missing ^2' "$WORK/helper.sh"
check "the error lists every unmet dependency" \
    "grep -q 'otelcol >=1.0.0 (no matching version)' '$WORK/err' && grep -q 'missing ^2 (no such package)' '$WORK/err'"
expect 1 "nothing was recorded" "$BIN/pkgstore-show" --store "$S" helper
expect 0 "an addon whose dependency is met" add --name helper --version 1.0.0 --type addon \
    --platform any/any --depends 'otelcol >=0.98.0 <1.0.0' "$WORK/helper.sh"
expect 0 "--force skips the check" add --name helper --version 1.1.0 --type addon \
    --platform any/any --depends 'otelcol >=5' --force "$WORK/helper.sh"
expect 3 "a version keeps its type" add --name helper --version 1.0.0 --type primary \
    --platform linux/amd64 "$WORK/helper.sh"

# ---------------------------------------------------------------- pkgstore-show
expect 0 "show --help" "$BIN/pkgstore-show" --help
check "show --help shows the usage" "grep -q '^Usage: pkgstore-show' '$WORK/out'"
expect 0 "show --version" "$BIN/pkgstore-show" --version
expect 2 "show with an unknown option" "$BIN/pkgstore-show" --bogus
for tool in show resolve rm cat; do
    expect 2 "$tool with an unknown short option" "$BIN/pkgstore-$tool" -x
    check "$tool calls -x unknown, not short of a value" \
        "[ \"\$(head -n1 '$WORK/err')\" = \"pkgstore-$tool: unknown option '-x'\" ]"
done
expect 2 "show without a store" "$BIN/pkgstore-show"
expect 2 "show with an invalid name" "$BIN/pkgstore-show" --store "$S" 'Bad/Name'
expect 2 "show with three arguments" "$BIN/pkgstore-show" --store "$S" a b c
expect 0 "show lists the packages" "$BIN/pkgstore-show" --store "$S"
check "every package is listed with its versions" \
    "grep -q '^otelcol  *0.97.0 0.98.0 0.99.0$' '$WORK/out' && grep -q '^helper  *1.0.0 1.1.0$' '$WORK/out'"
expect 0 "show --json lists the packages" "$BIN/pkgstore-show" --store "$S" --json
check "the packages as JSON, sorted" \
    "jq -e '[.packages[].name] == [\"archived\", \"helper\", \"otelcol\"] and .packages[2].versions == [\"0.97.0\", \"0.98.0\", \"0.99.0\"]' '$WORK/out' >/dev/null"
expect 0 "show NAME lists the versions" "$BIN/pkgstore-show" --store "$S" otelcol
check "versions in precedence order with their platforms" \
    "[ \"\$(awk 'NR>1 {print \$1, \$NF}' '$WORK/out')\" = '0.97.0 linux/amd64,linux/arm64
0.98.0 linux/amd64,linux/arm64
0.99.0 linux/amd64' ]"
expect 0 "show NAME --json" "$BIN/pkgstore-show" --store "$S" --json archived
check "versions as JSON" \
    "jq -e '.versions[0].version == \"1.0.0\" and .versions[0].platforms == [\"linux/amd64\", \"linux/arm64\"]' '$WORK/out' >/dev/null"
expect 1 "show an unknown package" "$BIN/pkgstore-show" --store "$S" nothing
check "the error says so" "grep -q '^pkgstore-show: nothing: .*no such package' '$WORK/err'"
check "the error names the package once" \
    "[ \"\$(cat '$WORK/err')\" = 'pkgstore-show: nothing: no such package' ]"
expect 0 "show NAME VERSION" "$BIN/pkgstore-show" --store "$S" otelcol v0.98.0
check "the manifest table has the artifacts" \
    "grep -q '^linux/amd64  *binary ' '$WORK/out' && grep -q '^linux/arm64  *binary ' '$WORK/out' && grep -q '^version:   0.98.0' '$WORK/out'"
expect 0 "show helper 1.0.0 has the dependency" "$BIN/pkgstore-show" --store "$S" helper 1.0.0
check "the dependency is shown" "grep -q '^otelcol  *>=0.98.0 <1.0.0$' '$WORK/out'"
expect 0 "show NAME VERSION --json" "$BIN/pkgstore-show" --store "$S" --json otelcol 0.98.0
check "--json is the manifest" \
    "jq -e '.schemaVersion == 1 and .name == \"otelcol\" and (.artifacts | length) == 2' '$WORK/out' >/dev/null"
expect 0 "show --digest" "$BIN/pkgstore-show" --store "$S" --digest otelcol 0.98.0
MANIFEST=$(cat "$WORK/out")
expect 0 "show --canonical" "$BIN/pkgstore-show" --store "$S" --canonical otelcol 0.98.0
check "the digest is the SHA-256 of the canonical bytes" \
    "[ \"sha256:\$(sha256sum <'$WORK/out' | cut -d' ' -f1)\" = '$MANIFEST' ]"
cp "$WORK/out" "$WORK/canonical"
expect 1 "show an unknown version" "$BIN/pkgstore-show" --store "$S" otelcol 9.9.9
expect 2 "--digest needs NAME VERSION" "$BIN/pkgstore-show" --store "$S" --digest otelcol

# ---------------------------------------------------------------- pkgstore-cat
expect 0 "cat --help" "$BIN/pkgstore-cat" --help
expect 0 "cat --version" "$BIN/pkgstore-cat" --version
expect 0 "cat the manifest blob" "$BIN/pkgstore-cat" --store "$S" "$MANIFEST"
check "it is the canonical manifest" "cmp -s '$WORK/out' '$WORK/canonical'"
D=sha256:$(sha256sum <"$WORK/otelcol-0.97.0-arm64" | cut -d' ' -f1)
expect 0 "cat an artifact" "$BIN/pkgstore-cat" --store "$S" "$D"
check "the bytes are the input's" "cmp -s '$WORK/out' '$WORK/otelcol-0.97.0-arm64'"
expect 1 "cat a missing blob" "$BIN/pkgstore-cat" --store "$S" "sha256:$(printf '%064d' 0)"
expect 2 "cat a malformed digest" "$BIN/pkgstore-cat" --store "$S" sha256:xyz
expect 2 "cat without a digest" "$BIN/pkgstore-cat" --store "$S"
check "it says the digest is missing" "grep -q 'missing DIGEST' '$WORK/err'"
expect 2 "cat with two digests" "$BIN/pkgstore-cat" --store "$S" "$D" "$D"
check "it names the extra argument" "grep -q \"unexpected argument '$D'\" '$WORK/err'"
COLLECTORCTRL_PACKAGES_DIR=$S expect 0 "cat with the store from the environment" \
    "$BIN/pkgstore-cat" "$D"

# ---------------------------------------------------------------- pkgstore-resolve
expect 0 "resolve --help" "$BIN/pkgstore-resolve" --help
expect 0 "resolve --version" "$BIN/pkgstore-resolve" --version
expect 0 "resolve the newest for amd64" "$BIN/pkgstore-resolve" --store "$S" --platform linux/amd64 otelcol
check "0.99.0 for amd64" "grep -q '^version:    0.99.0$' '$WORK/out'"
expect 0 "resolve the newest for arm64" "$BIN/pkgstore-resolve" --store "$S" --platform linux/aarch64 otelcol
check "0.98.0 for arm64 (0.99.0 has no arm64)" \
    "grep -q '^version:    0.98.0$' '$WORK/out' && grep -q '^platform:   linux/arm64$' '$WORK/out'"
expect 0 "resolve with a constraint, as JSON" "$BIN/pkgstore-resolve" --store "$S" --json \
    --platform linux/amd64 otelcol '>=0.97.0 <0.98.0'
check "the offer fields" \
    "jq -e '.version == \"0.97.0\" and .platform == \"linux/amd64\" and .format == \"binary\" and .entrypoint == \"otelcol-0.97.0-amd64\" and (.digest | startswith(\"sha256:\")) and (.manifest_digest | startswith(\"sha256:\"))' '$WORK/out' >/dev/null"
expect 0 "an any/any addon resolves anywhere" "$BIN/pkgstore-resolve" --store "$S" \
    --platform darwin/arm64 helper '^1.0'
check "helper 1.1.0 any/any" "grep -q '^version:    1.1.0$' '$WORK/out' && grep -q '^platform:   any/any$' '$WORK/out'"
expect 1 "nothing for windows" "$BIN/pkgstore-resolve" --store "$S" --platform windows/amd64 otelcol
check "the error names the platform" "grep -q 'windows/amd64' '$WORK/err'"
expect 1 "no version matches" "$BIN/pkgstore-resolve" --store "$S" --platform linux/amd64 otelcol '>=2'
expect 1 "no such package" "$BIN/pkgstore-resolve" --store "$S" --platform linux/amd64 nothing
expect 2 "a bad constraint" "$BIN/pkgstore-resolve" --store "$S" --platform linux/amd64 otelcol '>>1'
expect 2 "a bad platform" "$BIN/pkgstore-resolve" --store "$S" --platform linux otelcol
expect 2 "resolve without a name" "$BIN/pkgstore-resolve" --store "$S"
run "$BIN/pkgstore-resolve" --store "$S" otelcol
check "the default platform is this host's (resolved or not found)" "[ $rc = 0 ] || [ $rc = 1 ]"

# ---------------------------------------------------------------- pkgstore-rm
expect 0 "rm --help" "$BIN/pkgstore-rm" --help
expect 0 "rm --version" "$BIN/pkgstore-rm" --version
expect 2 "rm without a version" "$BIN/pkgstore-rm" --store "$S" otelcol
expect 2 "rm with a bad version" "$BIN/pkgstore-rm" --store "$S" otelcol 1.0
expect 0 "the 0.99.0 manifest digest" "$BIN/pkgstore-show" --store "$S" --digest otelcol 0.99.0
M99=$(cat "$WORK/out")
expect 0 "rm otelcol 0.99.0" "$BIN/pkgstore-rm" --store "$S" otelcol 0.99.0
check "rm prints nothing" "[ ! -s '$WORK/out' ]"
expect 1 "rm it again" "$BIN/pkgstore-rm" --store "$S" otelcol v0.99.0
expect 1 "rm it once more" "$BIN/pkgstore-rm" --store "$S" otelcol 0.99.0
check "the error names the version once" \
    "[ \"\$(cat '$WORK/err')\" = 'pkgstore-rm: otelcol 0.99.0: no such version' ]"
expect 0 "resolve falls back to 0.98.0" "$BIN/pkgstore-resolve" --store "$S" --platform linux/amd64 otelcol
check "0.98.0 now" "grep -q '^version:    0.98.0$' '$WORK/out'"
expect 0 "show no longer lists 0.99.0" "$BIN/pkgstore-show" --store "$S"
check "0.99.0 is gone" "grep -q '^otelcol  *0.97.0 0.98.0$' '$WORK/out'"
expect 0 "ls has no record of 0.99.0" "$BIN/pkgstore-ls" --store "$S" --json
check "no 0.99.0 package record" "jq -e '[.packages[] | select(.version == \"0.99.0\")] | length == 0' '$WORK/out' >/dev/null"
expect 0 "the blobs stay: verify --all is clean" "$BIN/pkgstore-verify" --store "$S" --all

# gc after rm: the removed version's blobs go, everything still listed stays
D99=sha256:$(sha256sum <"$WORK/otelcol-0.99.0-amd64" | cut -d' ' -f1)
# gc never deletes a blob dated in the second its run starts (an add may be
# between its blob and its record): let the second of the last write pass
now=$(date +%s)
while [ "$(date +%s)" = "$now" ]; do sleep 0.05; done
expect 0 "gc --grace 0 after rm" "$BIN/pkgstore-gc" --store "$S" --grace 0
expect 1 "the manifest of the removed 0.99.0 is gone" "$BIN/pkgstore-cat" --store "$S" "$M99"
expect 1 "the artifact replaced in 0.99.0 is gone" "$BIN/pkgstore-cat" --store "$S" "$D99"
expect 0 "the manifest of 0.98.0 is kept" "$BIN/pkgstore-cat" --store "$S" "$MANIFEST"
expect 0 "an artifact of 0.97.0 is kept" "$BIN/pkgstore-cat" --store "$S" "$D"
expect 0 "every kept version still resolves" "$BIN/pkgstore-resolve" --store "$S" \
    --platform linux/amd64 otelcol '0.97.0'
expect 0 "verify --all is clean after gc" "$BIN/pkgstore-verify" --store "$S" --all

# ---------------------------------------------------------------- pkgstore front command
expect 0 "pkgstore --help" "$BIN/pkgstore" --help
check "it lists the commands" "grep -q '^  resolve ' '$WORK/out'"
expect 0 "pkgstore --version" "$BIN/pkgstore" --version
expect 2 "pkgstore without a command" "$BIN/pkgstore"
expect 0 "pkgstore show runs pkgstore-show" "$BIN/pkgstore" show --store "$S" otelcol 0.98.0 --digest
check "same answer" "[ \"\$(cat '$WORK/out')\" = '$MANIFEST' ]"
expect 0 "pkgstore help rm" "$BIN/pkgstore" help rm
check "it is pkgstore-rm's help" "grep -q '^Usage: pkgstore-rm' '$WORK/out'"
expect 2 "an unknown command" "$BIN/pkgstore" frobnicate
check "the error names it" "grep -q '^pkgstore: frobnicate: not a pkgstore command' '$WORK/err'"
expect 2 "a command that is a path" "$BIN/pkgstore" ../bin/pkgstore-show
expect 1 "the command's exit status is passed on" "$BIN/pkgstore" rm --store "$S" otelcol 5.0.0
mkdir -p "$WORK/path"
printf '#!/bin/sh\necho "extra $*"\n' >"$WORK/path/pkgstore-extra" && chmod 755 "$WORK/path/pkgstore-extra"
PATH="$WORK/path:$PATH" expect 0 "a command on PATH" "$BIN/pkgstore" extra one two
check "it got the arguments" "[ \"\$(cat '$WORK/out')\" = 'extra one two' ]"

echo "1..$n"
[ "$fails" = 0 ]
