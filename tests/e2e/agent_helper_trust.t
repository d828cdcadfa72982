#!/usr/bin/env bash
# pkgstore-agent-helper's trust commands (root-check, root-rotate,
# verify-offer, verify-revocations): the checks the resident agent cannot
# make itself, with one JSON answer and a clear reason for every refusal.
. "$(dirname "$0")/lib/agent.sh"
echo "1..16"

H=$B/pkgstore-agent-helper
run() { out=$("$H" "$@" 2>"$T/stderr"); rc=$?; }
runin() { local input=$1; shift; out=$("$H" "$@" <<<"$input" 2>"$T/stderr"); rc=$?; }
code() { jq -r '.code // empty' <<<"$out"; }
err() { jq -r '.error // empty' <<<"$out"; }

K=$T/keys; mkdir -p "$K"
for k in a b c; do "$B/pkgstore-key" generate -o "$K/$k" > /dev/null; done
"$B/pkgstore-key" root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$K/root1.json" > /dev/null
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/a.key" --sign "$K/b.key" --sign "$K/c.key" -o "$K/root2.json" > /dev/null
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/b.key" --sign "$K/c.key" -o "$K/root2-weak.json" > /dev/null

# ---------------------------------------------------------------- roots
run root-check "$K/root1.json"
check "root-check: version, threshold and keys" \
    bash -c '[ "$0" = 0 ] && jq -e ".version == 1 and .threshold == 2 and .keys == 2" <<<"$1" >/dev/null' "$rc" "$out"
jq -c '.signatures |= .[0:1]' "$K/root1.json" | tr -d '\n' > "$T/one-sig.json"
run root-check "$T/one-sig.json"
check "root-check: one signature of two is DENIED (-13), exit 1, and says so" \
    bash -c '[ "$0" = 1 ] && [ "$1" = -13 ] && [[ "$2" == *"1 valid signature"*"2 required"* ]]' "$rc" "$(code)" "$(err)"
run root-rotate "$K/root2.json" "$K/root1.json"
check "root-rotate: a rotation signed by old and new keys" \
    bash -c '[ "$0" = 0 ] && jq -e ".version == 2" <<<"$1" >/dev/null' "$rc" "$out"
run root-rotate "$K/root2-weak.json" "$K/root1.json"
check "root-rotate: too few old keys is DENIED" test "$rc" = 1 -a "$(code)" = -13
run root-rotate "$K/root1.json" "$K/root1.json"
check "root-rotate: the same version again is DENIED (no replay)" test "$(code)" = -13

# ---------------------------------------------------------------- offers
S=$T/store
cp "$B/fake-otelcol-v2" "$T/v2"
"$B/pkgstore-add" --store "$S" --no-fsync --name otelcol --version 2.0.0 --platform linux/amd64 \
    --entrypoint otelcol "$T/v2" > /dev/null
"$B/pkgstore-show" --store "$S" --canonical otelcol 2.0.0 > "$T/m.json"
md=sha256:$(sha "$T/m.json")
mkdir -p "$T/sigs"
"$B/pkgstore-sign" --manifest "$T/m.json" --key "$K/a.key" --key "$K/b.key" --output-dir "$T/sigs" otelcol 2.0.0 > /dev/null
sigs=$(jq -s -c . "$T/sigs"/*.sig)
runin "$sigs" verify-offer "$K/root1.json" "$T/m.json" "$md" otelcol 2.0.0 primary linux/amd64
check "verify-offer: the artifact of the signed manifest" \
    bash -c '[ "$0" = 0 ] && jq -e --arg d "sha256:$2" ".digest == \$d and .size == $3 and .valid == 2 and .format == \"binary\"" <<<"$1" >/dev/null' \
    "$rc" "$out" "$(sha "$T/v2")" "$(stat -c %s "$T/v2")"
runin "$sigs" verify-offer "$K/root1.json" "$T/m.json" "$md" otelcol 2.0.0 addon linux/amd64
check "verify-offer: another type is mix-and-match" bash -c '[[ "$0" == "mix-and-match: "* ]]' "$(err)"
runin "$sigs" verify-offer "$K/root1.json" "$T/m.json" "$md" otelcol 2.0.0 primary linux/arm64
check "verify-offer: no artifact for the node's platform" bash -c '[[ "$0" == *"no artifact for linux/arm64"* ]]' "$(err)"
runin "$sigs" verify-offer "$K/root1.json" "$T/m.json" "sha256:$(printf '0%.0s' $(seq 64))" otelcol 2.0.0 primary linux/amd64
check "verify-offer: a manifest of another digest is DIGEST_MISMATCH (-7)" test "$(code)" = -7
cp "$T/m.json" "$T/m-nl.json"; echo >> "$T/m-nl.json"
runin "$sigs" verify-offer "$K/root1.json" "$T/m-nl.json" "sha256:$(sha "$T/m-nl.json")" otelcol 2.0.0 primary linux/amd64
check "verify-offer: a manifest not in canonical form is refused" bash -c '[ "$0" = 1 ] && [[ "$1" == *"canonical"* ]]' "$rc" "$(err)"
runin "$(jq -c '[range(65)] | map("x")' <<<null)" verify-offer "$K/root1.json" "$T/m.json" "$md" otelcol 2.0.0 primary linux/amd64
check "verify-offer: more than 64 signatures is LIMIT (-15)" test "$(code)" = -15
runin "$sigs" verify-offer "$K/root2.json" "$T/m.json" "$md" otelcol 2.0.0 primary linux/amd64
check "verify-offer: key a is not in root 2: one valid of two" bash -c '[[ "$0" == *"1 valid signature, 2 required"* ]]' "$(err)"
runin "$sigs" verify-offer "$K/root1.json" "$T/m.json" "$md" otelcol 2.0.0 sidecar linux/amd64
check "verify-offer: a bad TYPE is refused (FORMAT, exit 1)" test "$(code)" = -10 -a "$rc" = 1

# ---------------------------------------------------------------- revocations
"$B/pkgstore-sign" --revoke --key "$K/a.key" --key "$K/b.key" --reason "r" --output "$T/r1.json" otelcol 2.0.0 > /dev/null
"$B/pkgstore-sign" --revoke --key "$K/a.key" --output "$T/r2.json" otelcol 1.0.0 > /dev/null
body=$(jq -c -n --slurpfile a "$T/r1.json" --slurpfile b "$T/r2.json" '{generation: 2, revocations: [$a[0], $b[0], "junk"]}')
runin "$body" verify-revocations "$K/root1.json"
check "verify-revocations: only the one signed to threshold counts" \
    bash -c 'jq -e "(.revoked | length) == 1 and .revoked[0].version == \"2.0.0\" and .revoked[0].reason == \"r\" and (.ignored | length) == 2" <<<"$0" >/dev/null' "$out"
runin '[]' verify-revocations "$K/root1.json"
check "verify-revocations: a body without a list is FORMAT (-10)" test "$(code)" = -10
runin "$body" verify-revocations "$T/nope.json"
check "verify-revocations: a missing root is NOTFOUND (-1)" test "$(code)" = -1
