#!/usr/bin/env bash
# CLI tests for the offline trust tools (docs/trust.md): pkgstore-key
# (generate, id, root create/sign/verify with the rotation rule) and
# pkgstore-sign (signatures kept in the store, --root, --revoke with
# co-signing), with gc and fsck over the stored signatures. Prints TAP; run
# by prove.
set -u
BIN=${PKGSTORE_BIN:-$(cd "$(dirname "$0")/../../build/bin" && pwd)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-trust-tools-XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
unset COLLECTORCTRL_PACKAGES_DIR
S=$WORK/store
K=$WORK/keys
mkdir -p "$K" "$WORK/sigs"

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
key() { "$BIN/pkgstore-key" "$@"; }
sign() { "$BIN/pkgstore-sign" --store "$S" "$@"; }

# ---------------------------------------------------------------- keys
for k in a b c evil; do
    expect 0 "generate key $k" key generate -o "$K/$k"
done
check "the private key is 0600, the public 0644" \
    "[ \"\$(stat -c %a '$K/a.key')\" = 600 ] && [ \"\$(stat -c %a '$K/a.pub')\" = 644 ]"
check "generate printed the key id" "grep -qx '[0-9a-f]\{64\}' '$WORK/out'"
expect 3 "generate never overwrites a key" key generate -o "$K/a"
check "the refusal says so" "grep -q 'a.key: already exists (never overwritten)' '$WORK/err'"
check "and left no temporary file" "[ \$(ls '$K' | wc -l) = 8 ]"
expect 0 "id of a private and a public key, JSON" key id --json "$K/a.key" "$K/a.pub"
check "both give the same id" "jq -e '.keys[0].keyid == .keys[1].keyid and .keys[0].private and (.keys[1].private | not)' '$WORK/out' >/dev/null"
check "the id is openssl's SHA-256 of the raw public key" \
    "[ \"\$(openssl pkey -pubin -in '$K/a.pub' -outform DER | tail -c 32 | sha256sum | cut -d' ' -f1)\" = \"\$(jq -r '.keys[0].keyid' '$WORK/out')\" ]"
cp "$K/a.key" "$WORK/open.key" && chmod 644 "$WORK/open.key"
expect 3 "a private key others can read is refused" key id "$WORK/open.key"
check "with the reason" "grep -q 'others may read it (chmod 600)' '$WORK/err'"
printf 'garbage' >"$WORK/garbage.key"
expect 3 "a file that is no key" key id "$WORK/garbage.key"
expect 2 "no command" key
expect 2 "an unknown command" key frobnicate
expect 0 "--version" key --version

# ---------------------------------------------------------------- roots
expect 0 "root v1: a and b, threshold 2, signed by both" key root create --version 1 \
    --threshold 2 --key "$K/a.pub" --name "release key A — Zürich" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$WORK/root.json"
expect 0 "root v1 verifies, JSON" key root verify --json "$WORK/root.json"
check "the JSON keeps the non-ASCII name" \
    "jq -e '.valid and .version == 1 and .threshold == 2 and .keys[0].name == \"release key A — Zürich\"' '$WORK/out' >/dev/null"
expect 2 "a threshold above the keys" key root create --version 1 --threshold 3 \
    --key "$K/a.pub" --key "$K/b.pub" -o "$WORK/bad.json"
expect 0 "root v2 (b and c) signed by b and c only" key root create --version 2 \
    --threshold 2 --key "$K/b.pub" --key "$K/c.pub" --sign "$K/b.key" --sign "$K/c.key" \
    -o "$WORK/root-2.json"
expect 0 "it is valid on its own" key root verify "$WORK/root-2.json"
expect 1 "a rotation signed by too few old keys is refused" key root verify \
    --trusted "$WORK/root.json" "$WORK/root-2.json"
check "the reason names the old keys' count" \
    "grep -q '1 valid signature by the trusted root.s keys, 2 required' '$WORK/err'"
expect 0 "the old key a co-signs" key root sign --sign "$K/a.key" "$WORK/root-2.json"
expect 0 "now the rotation is adopted" key root verify --trusted "$WORK/root.json" \
    "$WORK/root-2.json"
expect 1 "an older root never replaces a newer one" key root verify \
    --trusted "$WORK/root-2.json" "$WORK/root.json"
expect 0 "a root of the leaked key alone, version 3" key root create --version 3 \
    --threshold 1 --key "$K/evil.pub" --sign "$K/evil.key" --sign "$K/b.key" \
    -o "$WORK/root-evil.json"
expect 1 "one leaked key of two cannot rotate the root" key root verify \
    --trusted "$WORK/root-2.json" "$WORK/root-evil.json"
head -c 200 "$WORK/root.json" >"$WORK/root-cut.json"
expect 3 "a truncated root" key root verify "$WORK/root-cut.json"

# ---------------------------------------------------------------- signing
printf '#!/bin/sh\necho otelcol 1.0.0\n' >"$WORK/otelcol"
"$BIN/pkgstore-add" --store "$S" --name otelcol --version 1.0.0 --platform linux/amd64 \
    "$WORK/otelcol" >/dev/null
expect 1 "an unsigned version is not trusted" sign --root "$WORK/root.json" otelcol 1.0.0
check "the reason says 0 of 2" "grep -q 'otelcol 1.0.0: 0 valid signatures, 2 required' '$WORK/err'"
expect 0 "sign with the unknown key" sign --key "$K/evil.key" otelcol 1.0.0
expect 0 "sign with a" sign --key "$K/a.key" otelcol 1.0.0
expect 1 "one key of the root and one unknown: below the threshold" sign \
    --root "$WORK/root.json" otelcol 1.0.0
check "the unknown key is named" "grep -q 'unknown key' '$WORK/err'"
expect 0 "a again and b, into the store and a directory, JSON, checked" sign --json \
    --key "$K/a.key" --key "$K/b.key" --output-dir "$WORK/sigs" --root "$WORK/root.json" \
    otelcol 1.0.0
check "the JSON says trusted, 2 of 2" \
    "jq -e '.trusted and .valid_signatures == 2 and .threshold == 2 and (.signatures | length) == 2' '$WORK/out' >/dev/null"
check "two envelope files" "[ \$(ls '$WORK/sigs' | wc -l) = 2 ]"
check "an envelope is canonical JSON with the manifest digest" \
    "f=\$(ls '$WORK/sigs'/* | head -1); [ \"\$(jq -cS . \"\$f\" | tr -d '\n')\" = \"\$(cat \"\$f\")\" ] && [ \"\$(jq -r .payloadDigest \"\$f\")\" = \"\$('$BIN/pkgstore-show' --store '$S' --digest otelcol 1.0.0)\" ]"
expect 0 "check only" sign --root "$WORK/root.json" otelcol 1.0.0
expect 0 "pkgstore-show lists the signatures" "$BIN/pkgstore-show" --store "$S" otelcol 1.0.0
check "three distinct keys signed" "[ \$(sed -n '/^SIGNATURES/,\$p' '$WORK/out' | grep -c '^[0-9a-f]\{64\} sha256:') = 3 ]"
expect 1 "the rotated root no longer counts key a" sign --root "$WORK/root-2.json" otelcol 1.0.0
expect 1 "no such version" sign --key "$K/a.key" otelcol 9.9.9
expect 3 "a public key cannot sign" sign --key "$K/a.pub" otelcol 1.0.0
expect 2 "neither --key nor --root" sign otelcol 1.0.0
expect 2 "an invalid name" sign --key "$K/a.key" Otelcol 1.0.0

# ---------------------------------------------------------------- offline signing
mkdir -p "$WORK/offline"
"$BIN/pkgstore-add" --store "$S" --name otelcol --version 2.0.0 --platform linux/amd64 \
    "$WORK/otelcol" >/dev/null
"$BIN/pkgstore-show" --store "$S" --canonical otelcol 2.0.0 >"$WORK/offline/manifest.json"
expect 0 "sign the exported manifest where there is no store" "$BIN/pkgstore-sign" \
    --manifest "$WORK/offline/manifest.json" --key "$K/a.key" --key "$K/b.key" \
    --output-dir "$WORK/offline" otelcol 2.0.0
expect 1 "a manifest file of another version is refused" "$BIN/pkgstore-sign" \
    --manifest "$WORK/offline/manifest.json" --key "$K/a.key" --output-dir "$WORK/offline" \
    otelcol 2.0.1
check "naming both versions" "grep -q 'is the manifest of otelcol 2.0.0, not of otelcol 2.0.1' '$WORK/err'"
expect 1 "before the import the version is not trusted" sign --root "$WORK/root.json" \
    otelcol 2.0.0
expect 0 "import the envelopes into the store, checked" sign --root "$WORK/root.json" \
    $(for f in "$WORK"/offline/otelcol_2.0.0_*.sig; do printf -- '--import %s ' "$f"; done) \
    otelcol 2.0.0
check "two imported" "[ \$(grep -c '(imported)' '$WORK/out') = 2 ]"
expect 1 "an envelope of 2.0.0 is not imported for 1.0.0" sign \
    --import "$(ls "$WORK"/offline/otelcol_2.0.0_*.sig | head -1)" otelcol 1.0.0
check "the refusal says it signs another manifest" "grep -q 'another manifest' '$WORK/err'"

# ---------------------------------------------------------------- gc, fsck, removal
expect 0 "gc with no grace" "$BIN/pkgstore-gc" --store "$S" --grace 0
expect 0 "fsck" "$BIN/pkgstore-verify" --store "$S" --all
check "fsck finds nothing missing or orphaned" "grep -q '0 missing, 0 corrupt, 0 stray, 0 orphaned' '$WORK/out'"
expect 0 "the signatures survived gc" sign --root "$WORK/root.json" otelcol 1.0.0
expect 0 "remove the version" "$BIN/pkgstore-rm" --store "$S" otelcol 1.0.0
"$BIN/pkgstore-add" --store "$S" --name otelcol --version 1.0.0 --platform linux/amd64 \
    "$WORK/otelcol" >/dev/null
expect 1 "added again, it carries none of the old signatures" sign --root "$WORK/root.json" \
    otelcol 1.0.0

# ---------------------------------------------------------------- revocations
expect 0 "revoke with a" "$BIN/pkgstore-sign" --revoke --key "$K/a.key" \
    --reason "crashes on arm64 — incident №42" -o "$WORK/revoke.json" otelcol v1.0.0
check "the statement names the normalized version and the reason" \
    "jq -e '.signed.version == \"1.0.0\" and .signed.reason == \"crashes on arm64 — incident №42\" and (.signatures | length) == 1' '$WORK/revoke.json' >/dev/null"
expect 0 "b co-signs, JSON" "$BIN/pkgstore-sign" --revoke --key "$K/b.key" --json \
    -o "$WORK/revoke.json" otelcol 1.0.0
check "two signatures now" "jq -e '.signatures == 2' '$WORK/out' >/dev/null"
expect 2 "the file revokes another version" "$BIN/pkgstore-sign" --revoke --key "$K/b.key" \
    -o "$WORK/revoke.json" otelcol 1.0.1
expect 2 "the reason cannot change" "$BIN/pkgstore-sign" --revoke --key "$K/c.key" \
    --reason other -o "$WORK/revoke.json" otelcol 1.0.0
expect 2 "--revoke needs --output" "$BIN/pkgstore-sign" --revoke --key "$K/a.key" otelcol 1.0.0

# ---------------------------------------------------------------- pkgstore-show --trust
# STORE.trust as pkgstored keeps it (server/trust.c): root.N.json as
# accepted, revocations.json wrapping the signed statements.
show() { "$BIN/pkgstore-show" "$@"; }
expect 1 "--trust without a trust directory" show --store "$S" --trust
check "says where pkgstored keeps it" "grep -q 'store.trust: No such file or directory' '$WORK/err'"
mkdir "$S.trust"
expect 0 "an empty trust directory" show --store "$S" --trust --json
check "no roots, generation 0, no revocations" \
    "jq -e '.roots == [] and .generation == 0 and .revocations == []' '$WORK/out' >/dev/null"
cp "$WORK/root.json" "$S.trust/root.1.json"
cp "$WORK/root-2.json" "$S.trust/root.2.json"
printf '{"generation":4,"revocations":[%s]}' "$(cat "$WORK/revoke.json")" >"$S.trust/revocations.json"
expect 0 "roots and revocations" show --store "$S" --trust
check "each root with its threshold and validity" \
    "grep -q '^ROOT 1 .*threshold 2 of 2  self-signed to threshold' '$WORK/out' && grep -q '^ROOT 2 .*threshold 2 of 2  valid rotation' '$WORK/out'"
check "a key name is quoted (it may hold any UTF-8)" \
    "grep -q '\"release key A — Zürich\"' '$WORK/out'"
check "the revocation with its generation, reason and signers" \
    "grep -q '^REVOCATIONS  generation 4' '$WORK/out' && grep -q '^otelcol 1.0.0 .*NOT VALID under root 2: .*required' '$WORK/out' && grep -q 'reason     \"crashes on arm64 — incident №42\"' '$WORK/out' && [ \$(grep -c '^  signed by' '$WORK/out') = 7 ]"
expect 0 "the same as JSON, through --trust-dir" show --trust-dir "$S.trust" --json
A_ID=$(key id "$K/a.pub" | cut -c1-64); B_ID=$(key id "$K/b.pub" | cut -c1-64)
C_ID=$(key id "$K/c.pub" | cut -c1-64)
check "versions, thresholds, key ids and signers in the JSON" \
    "jq -e --arg a '$A_ID' --arg b '$B_ID' --arg c '$C_ID' '[.roots[].version] == [1,2] and .roots[0].threshold == 2 and [.roots[0].keys[].keyid] == [\$a,\$b] and .roots[0].keys[0].name == \"release key A — Zürich\" and (.roots[1].signed_by | sort) == ([\$a,\$b,\$c] | sort) and (.roots | all(.valid)) and .roots_complete' '$WORK/out' >/dev/null"
check "the revocation in the JSON" \
    "jq -e --arg a '$A_ID' --arg b '$B_ID' '.generation == 4 and (.revocations | length) == 1 and .revocations[0].name == \"otelcol\" and .revocations[0].version == \"1.0.0\" and .revocations[0].reason == \"crashes on arm64 — incident №42\" and (.revocations[0].created | test(\"^[0-9]{4}-\")) and (.revocations[0].signed_by | sort) == ([\$a,\$b] | sort)' '$WORK/out' >/dev/null"
check "signed by a and b, it no longer reaches root 2's threshold: not valid, and why" \
    "jq -e '.revocations[0].valid == false and (.revocations[0].why | test(\"required\"))' '$WORK/out' >/dev/null"
mv "$S.trust/root.1.json" "$WORK/held-root-1.json"
cp "$WORK/root-evil.json" "$S.trust/root.3.json"
expect 0 "a chain that does not hold" show --store "$S" --trust --json
check "root 3 is shown as no valid rotation of root 2, with the reason" \
    "jq -e '[.roots[].version] == [2,3] and .roots[0].valid and (.roots[1].valid | not) and (.roots[1].why | length) > 0' '$WORK/out' >/dev/null"
cp "$WORK/root.json" "$S.trust/root.4.json"
expect 3 "a root file whose version is not the one in its name" show --store "$S" --trust
check "names the file" "grep -q 'root.4.json: holds root version 1, not 4' '$WORK/err'"
rm "$S.trust/root.4.json"
printf '{"generation":1,"revocations":[{"signed":{}}]}' >"$S.trust/revocations.json"
expect 3 "a damaged revocations.json" show --store "$S" --trust
check "names the file and the entry" "grep -q 'revocations.json: revocations\[0\]' '$WORK/err'"
expect 2 "--trust takes no NAME" show --store "$S" --trust otelcol
expect 2 "--trust with --digest" show --store "$S" --trust --digest
expect 2 "--cacert without --server" show --store "$S" --trust --cacert /dev/null
expect 2 "--server with --store" show --server http://127.0.0.1:1 --store "$S" --trust

echo "1..$n"
[ "$fails" = 0 ]
