#!/usr/bin/env bash
# The registry's part of signed packages (docs/trust.md, docs/api.md
# "Trust") against the real pkgstored: the trust routes with their roles
# and errors, roots kept across a restart, rotations and revocations
# checked as a node checks them, offers that carry the manifest digest and
# its signatures, pkgstore-push --sign-key and --signature, and
# --require-signatures refusing a policy on an unsigned version until it is
# signed. Keys and roots are made at test time with pkgstore-key and
# pkgstore-sign. Prints TAP.
. "$(dirname "$0")/server_common.sh"

K=$TMP/keys
mkdir -p "$K" "$TMP/sigs"
key() { "$BIN/pkgstore-key" "$@" >/dev/null 2>"$TMP/key.err"; }
for k in a b c evil; do key generate -o "$K/$k" || { echo "Bail out! pkgstore-key generate"; exit 1; }; done
key root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$TMP/root-1.json"
# rotation: a out, c in; old a+b and new b+c sign
key root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/a.key" --sign "$K/b.key" --sign "$K/c.key" -o "$TMP/root-2.json"
# a rotation signed by only one old key (b) and the new keys
key root create --version 3 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/b.key" --sign "$K/evil.key" -o "$TMP/root-3-weak.json"
[ -s "$TMP/root-1.json" ] && [ -s "$TMP/root-2.json" ] && [ -s "$TMP/root-3-weak.json" ] ||
    { echo "Bail out! pkgstore-key root create failed: $(cat "$TMP/key.err")"; exit 1; }
printf '#!/bin/sh\necho v1\n' >"$TMP/otelcol-1"
printf '#!/bin/sh\necho v2\n' >"$TMP/otelcol-2"

plan 94
start_server
error_code() { json .error.code; }
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE

# ---------------------------------------------------------------- roots
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-0","platform":"linux/amd64"}'
is "$STATUS $(json '.trust | tojson')" '200 {"revocations":0,"root_version":null}' \
    "before any root: the reply's trust is {revocations 0, root_version null}"
req GET /v1/trust/root
is "$STATUS $(error_code)" "404 NOTFOUND" "no root yet: 404 NOTFOUND"
"$BIN/pkgstore-show" --server "$URL" --trust --json >"$TMP/show.out" 2>"$TMP/show.err"
is "$? $(jq -c '[.roots, .generation, .revocations]' "$TMP/show.out")" '0 [[],0,[]]' \
    "pkgstore-show --server --trust before any root: none, generation 0"
req_as "$AGENT" PUT /v1/trust/root --data-binary @"$TMP/root-1.json"
is "$STATUS" 403 "the agent role may not PUT a root"
req PUT /v1/trust/root --data-binary 'garbage{'
is "$STATUS $(error_code)" "400 INVALID" "a garbage root: 400 INVALID"
req PUT /v1/trust/root --data-binary @"$SRC/tests/e2e/server_trust.t"
is "$STATUS" 400 "a file that is no JSON: 400"
jq -c '.signed.threshold = 1' "$TMP/root-1.json" | tr -d '\n' >"$TMP/root-edited.json"
req PUT /v1/trust/root --data-binary @"$TMP/root-edited.json"
is "$STATUS $(error_code)" "409 CONFLICT" "a hand-edited root (signatures no longer valid): 409"
req PUT /v1/trust/root --data-binary "$(cat "$TMP/root-1.json")"$'\n'
is "$STATUS $(error_code)" "400 INVALID" "a root with a trailing newline (not canonical): 400"
req PUT /v1/trust/root --data-binary @"$TMP/root-1.json"
is "$STATUS $(json .version)" "201 1" "root v1, self-signed to threshold: 201 {version:1}"
req PUT /v1/trust/root --data-binary @"$TMP/root-1.json"
is "$STATUS $(error_code)" "409 CONFLICT" "the same version again: 409"
req_as "$AGENT" GET /v1/trust/root
is "$STATUS" 200 "the agent role reads the root"
cmp -s "$TMP/body" "$TMP/root-1.json"
ok $? "... byte for byte as given"
req PUT /v1/trust/root --data-binary @"$TMP/root-3-weak.json"
is "$STATUS $(error_code)" "409 CONFLICT" "a rotation signed by too few old keys: 409"
grep -q 'threshold\|required' "$TMP/body"
ok $? "... saying why ($(json .error.message | cut -c1-100))"
req PUT /v1/trust/root --data-binary @"$TMP/root-2.json"
is "$STATUS $(json .version)" "201 2" "a valid rotation to v2: 201"
req GET /v1/trust/root
is "$(json .signed.version)" 2 "GET /v1/trust/root is now v2"
req GET /v1/trust/root/1
is "$STATUS $(json .signed.version)" "200 1" "GET /v1/trust/root/1 keeps v1 for the chain"
req GET /v1/trust/root/7
is "$STATUS $(error_code)" "404 NOTFOUND" "an unknown root version: 404"
req GET /v1/trust/root/x1
is "$STATUS $(error_code)" "400 INVALID" "a root version that is no number: 400"
req_as "" GET /v1/trust/root
is "$STATUS" 401 "no token: 401"
ls "$TMP/store.trust" | grep -q '\.json\.' ; test $? = 1
ok $? "no temporary file left in STORE.trust"

# ---------------------------------------------------------------- revocations
req GET /v1/trust/revocations
is "$STATUS $(json .generation) $(json '.revocations | length')" "200 0 0" "no revocations: generation 0"
"$BIN/pkgstore-sign" --revoke --key "$K/b.key" --key "$K/c.key" --reason 'bad build' \
    --output "$TMP/revoke-1.json" otelcol 1.0.0 >/dev/null 2>&1
"$BIN/pkgstore-sign" --revoke --key "$K/a.key" --key "$K/evil.key" \
    --output "$TMP/revoke-bad.json" otelcol 1.0.0 >/dev/null 2>&1
req PUT /v1/trust/revocations --data-binary @"$TMP/revoke-bad.json"
is "$STATUS $(error_code)" "403 DENIED" "a revocation not signed to threshold by the current root: 403"
req_as "$AGENT" PUT /v1/trust/revocations --data-binary @"$TMP/revoke-1.json"
is "$STATUS" 403 "the agent role may not PUT a revocation"
req PUT /v1/trust/revocations --data-binary '{"signed":{}}'
is "$STATUS $(error_code)" "400 INVALID" "a malformed revocation: 400"
req PUT /v1/trust/revocations --data-binary @"$TMP/root-2.json"
is "$STATUS" 400 "a root sent as a revocation (wrong type): 400"
req PUT /v1/trust/revocations --data-binary @"$TMP/revoke-1.json"
is "$STATUS $(json .generation) $(json .version)" "201 1 1.0.0" "a revocation signed by b and c: 201, generation 1"
req PUT /v1/trust/revocations --data-binary @"$TMP/revoke-1.json"
is "$STATUS $(json .generation)" "200 1" "the same revocation again: 200, generation unchanged"
req_as "$AGENT" GET /v1/trust/revocations
is "$STATUS $(json .generation) $(json '.revocations[0].signed.reason')" "200 1 bad build" \
    "the agent role reads the revocations"
"$BIN/pkgstore-show" --server "$URL" --trust --json >"$TMP/show.out" 2>"$TMP/show.err"
is "$? $(jq -c '[[.roots[] | .version, .threshold, .valid], .generation, [.revocations[] | .name, .version, .reason, (.signed_by | length), .valid]]' "$TMP/show.out")" \
    '0 [[1,2,true,2,2,true],1,["otelcol","1.0.0","bad build",2,true]]' \
    "pkgstore-show --server --trust: roots 1 and 2 (walked down from the newest), the revocation"
is "$(jq -r '.roots[1].keys | map(.keyid) | join(" ")' "$TMP/show.out")" \
    "$(jq -r '.signed.keys | map(.keyid) | join(" ")' "$TMP/root-2.json")" "... with root 2's key ids"
PKGSTORE_TOKEN_FILE= PKGSTORE_TOKEN=$AGENT "$BIN/pkgstore-show" --server "$URL" --trust \
    >"$TMP/show.out" 2>"$TMP/show.err"
is "$? $(grep -c '^ROOT [12] ' "$TMP/show.out") $(grep -c '^otelcol 1.0.0 .*signed to threshold by root 2' "$TMP/show.out")" \
    "0 2 1" "... and as text with the agent's token"
PKGSTORE_TOKEN_FILE= PKGSTORE_TOKEN=wrong "$BIN/pkgstore-show" --server "$URL" --trust \
    >/dev/null 2>"$TMP/show.err"
is "$?" 3 "pkgstore-show --server with a wrong token: exit 3"
grep -q '/v1/trust/root: .*401' "$TMP/show.err"
ok $? "... naming the route and the status ($(head -c 100 "$TMP/show.err"))"

# ---------------------------------------------------------------- signatures
"$BIN/pkgstore-push" --quiet --name otelcol --version 1.0.0 --platform linux/amd64 "$TMP/otelcol-1" >/dev/null
ok $? "push otelcol 1.0.0"
req GET /v1/packages/otelcol/1.0.0/signatures
MANIFEST=$(json .manifest)
is "$STATUS $(json '.signatures | length')" "200 0" "no signatures yet"
req GET /v1/packages/otelcol/1.0.0
printf '%s' "$BODY" >"$TMP/m1.json"
"$BIN/pkgstore-sign" --manifest "$TMP/m1.json" --key "$K/b.key" --key "$K/c.key" \
    --output-dir "$TMP/sigs" otelcol 1.0.0 >/dev/null 2>&1
SIG_B=$(ls "$TMP/sigs"/*.sig | head -1)
req_as "$AGENT" PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$SIG_B"
is "$STATUS" 403 "the agent role may not PUT a signature"
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary 'garbage'
is "$STATUS $(error_code)" "400 INVALID" "a garbage envelope: 400"
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$TMP/revoke-1.json"
is "$STATUS" 400 "a revocation sent as an envelope (wrong type): 400"
jq -c '.signature = "AAAA"' "$SIG_B" | tr -d '\n' >"$TMP/short.sig"
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$TMP/short.sig"
is "$STATUS" 400 "a truncated signature: 400"
req PUT /v1/packages/otelcol/9.9.9/signatures --data-binary @"$SIG_B"
is "$STATUS $(error_code)" "404 NOTFOUND" "a signature for a version that does not exist: 404"
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$SIG_B"
is "$STATUS $(json .manifest)" "201 $MANIFEST" "an envelope for the version's manifest: 201"
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$SIG_B"
is "$STATUS" 200 "the same envelope again: 200"

# ---------------------------------------------------------------- /metrics
# every refusal above that reached a route, by class (the agent's 403s
# are the roles', counted only in pkgstored_requests_total)
metric() { printf '%s\n' "$BODY" | awk -v k="$1" '$1 == k {print $2}'; }
trust_refused() { metric "pkgstored_trust_refused_total{document=\"$1\",reason=\"$2\"}"; }
req GET /metrics
is "$(trust_refused root malformed) $(trust_refused root untrusted) $(trust_refused root conflict) $(trust_refused root error)" \
    "3 2 1 0" "/metrics: roots refused: 3 malformed, 2 untrusted (hand-edited, weak rotation), 1 conflict"
is "$(trust_refused revocation malformed) $(trust_refused revocation untrusted) $(trust_refused revocation conflict)" \
    "2 1 0" "/metrics: revocations refused: 2 malformed, 1 untrusted"
is "$(trust_refused signature malformed) $(trust_refused signature not_found) $(trust_refused signature conflict)" \
    "3 1 0" "/metrics: signatures refused: 3 malformed, 1 for a version that does not exist"
is "$(metric 'pkgstored_unsigned_refused_total{request="policy"}') $(metric 'pkgstored_unsigned_refused_total{request="upload"}')" \
    "0 0" "/metrics: nothing refused by --require-signatures (not given)"

# ---------------------------------------------------------------- offers
hb() { req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-1","labels":{"env":"test"},"platform":"linux/amd64","packages":[{"name":"otelcol","type":"primary","version":"0.1.0","status":"Upgraded"}]}'; }
"$BIN/pkgstore-policy" set p1 --selector env=test --package otelcol --version 1.0.0 >/dev/null 2>&1
ok $? "a policy targets otelcol 1.0.0 (no --require-signatures yet)"
hb
is "$STATUS $(json '.trust.root_version') $(json '.trust.revocations')" "200 2 1" \
    "the heartbeat reply carries trust {root_version 2, revocations 1}"
is "$(json '.offers[0].manifest')" "$MANIFEST" "the offer names the manifest digest"
is "$(json '.offers[0].signatures | length') $(json '.offers[0].signatures[0].keyid')" \
    "1 $(jq -r .keyid "$SIG_B")" "the offer carries the stored envelope"
SIG_C=$(ls "$TMP/sigs"/*.sig | tail -1)
req PUT /v1/packages/otelcol/1.0.0/signatures --data-binary @"$SIG_C"
hb
is "$(json '.offers[0].signatures | length')" 2 "a second signature shows in the next offer (cache moved)"
req_as "$AGENT" GET "/v1/blobs/$MANIFEST"
printf '%s' "$BODY" | cmp -s - "$TMP/m1.json"
ok $? "the manifest blob the offer names is the signed manifest"

# ---------------------------------------------------------------- push --sign-key
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.0 --platform linux/amd64 \
    --sign-key "$K/b.key" --sign-key "$K/c.key" --json "$TMP/otelcol-2" >"$TMP/push.out" 2>"$TMP/push.err"
ok $? "pkgstore-push --sign-key b --sign-key c"
req GET /v1/packages/otelcol/2.0.0/signatures
is "$(json '.signatures | length')" 2 "both signatures are on the server"
"$BIN/pkgstore-sign" --root "$TMP/root-2.json" --store "$TMP/store" otelcol 2.0.0 >/dev/null 2>&1
ok $? "they reach root v2's threshold (pkgstore-sign --root on the store)"
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.1 --platform linux/amd64 \
    --sign-key "$TMP/nokey" "$TMP/otelcol-2" >/dev/null 2>"$TMP/push.err"
is "$?" 2 "--sign-key with a missing key file: exit 2, before the upload"
req GET /v1/packages/otelcol/2.0.1
is "$STATUS" 404 "... and nothing was uploaded"
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.1 --platform linux/amd64 \
    --sign-key "$K/b.pub" "$TMP/otelcol-2" >/dev/null 2>"$TMP/push.err"
is "$?" 2 "--sign-key with a public key: exit 2"
grep -q 'signing needs the private key' "$TMP/push.err"
ok $? "... saying the private key is needed"
"$BIN/pkgstore-push" --quiet --name otelcol --version 1.0.0 --sign-key "$K/a.key" >/dev/null 2>&1
req GET /v1/packages/otelcol/1.0.0/signatures
is "$(json '.signatures | length')" 3 "pkgstore-push --sign-key without FILE signs the version as it is"
# how each signature stands, for the console: against the newest stored
# root (v2: keys b and c, threshold 2; no --trust-root, so not pinned)
is "$(json '.check | [.root_version, .root_pinned, .threshold, .valid, .signed, .revoked] | tojson')" \
    '[2,false,2,2,true,true]' "check: root v2 (not pinned), threshold 2, 2 valid: signed, and revoked (revoke-1)"
is "$(json '[.signatures, .check.states] | transpose | map(.[0].keyid[0:8] + "=" + .[1]) | sort | join(" ")')" \
    "$(for k in a b c; do s=valid; [ $k = a ] && s='unknown key'; echo "$("$BIN/pkgstore-key" id "$K/$k.pub" | cut -c1-8)=$s"; done | sort | paste -sd' ')" \
    "check.states line up with signatures: b and c valid, a (not in root v2) an unknown key"
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.2.0 --platform linux/amd64 \
    --sign-key "$K/b.key" --sign-key "$K/c.key" "$TMP/otelcol-2" >/dev/null 2>&1
req GET /v1/packages/otelcol/2.2.0/signatures
printf '%s' "$BODY" | jq -cj '.signatures[0].signature = .signatures[1].signature | .signatures[0]' >"$TMP/forged.sig"
req PUT /v1/packages/otelcol/2.2.0/signatures --data-binary @"$TMP/forged.sig"
is "$STATUS" 201 "an envelope with another key's signature is stored (signatures are checked by who trusts a root)"
req GET /v1/packages/otelcol/2.2.0/signatures
is "$(json '[(.check.states | sort | join(",")), .check.valid, .check.signed, .check.revoked] | tojson')" \
    '["bad signature,valid,valid",2,true,false]' \
    "a stored envelope whose signature does not verify is a bad signature; 2.2.0 is signed and not revoked"
"$BIN/pkgstore-push" --quiet --name otelcol --version 1.0.0 --signature "$SIG_C" >/dev/null 2>"$TMP/push.err"
ok $? "pkgstore-push --signature FILE uploads an envelope made offline"

# ---------------------------------------------------------------- --require-signatures
stop_server
start_server --trust-root "$TMP/root-1.json" --require-signatures
export PKGSTORE_SERVER=$URL
req GET /v1/trust/root
is "$STATUS $(json .signed.version)" "200 2" "roots survive a restart"
req GET /v1/trust/revocations
is "$(json .generation)" 1 "revocations survive a restart"
"$BIN/pkgstore-push" --quiet --name otelcol --version 3.0.0 --platform linux/amd64 "$TMP/otelcol-2" >/dev/null
req PUT /v1/policies/p3 -d '{"selector":"env=prod","package":"otelcol","version":"3.0.0"}'
is "$STATUS $(error_code)" "409 CONFLICT" "--require-signatures: a policy on an unsigned version is 409"
json .error.message | grep -q 'not signed to threshold'
ok $? "... saying why ($(json .error.message | cut -c1-80))"
req GET /v1/policies/p3
is "$STATUS" 404 "... and no policy was stored"
"$BIN/pkgstore-push" --quiet --name otelcol --version 3.0.0 --signature /dev/null >/dev/null 2>&1
test $? != 0
ok $? "--signature with an empty file fails"
req GET /v1/packages/otelcol/3.0.0
printf '%s' "$BODY" >"$TMP/m3.json"
rm -f "$TMP/sigs"/*
"$BIN/pkgstore-sign" --manifest "$TMP/m3.json" --key "$K/a.key" --key "$K/b.key" \
    --output-dir "$TMP/sigs" otelcol 3.0.0 >/dev/null 2>&1
for s in "$TMP/sigs"/*.sig; do req PUT /v1/packages/otelcol/3.0.0/signatures --data-binary @"$s"; done
req PUT /v1/policies/p3 -d '{"selector":"env=prod","package":"otelcol","version":"3.0.0"}'
is "$STATUS" 409 "signed by a and b (a rotated out in root v2): still refused"
"$BIN/pkgstore-push" --quiet --name otelcol --version 3.0.0 --signature \
    "$(ls "$TMP/sigs"/*.sig | head -1)" >/dev/null 2>&1 # idempotent
rm -f "$TMP/sigs"/*
"$BIN/pkgstore-sign" --manifest "$TMP/m3.json" --key "$K/c.key" \
    --output-dir "$TMP/sigs" otelcol 3.0.0 >/dev/null 2>&1
"$BIN/pkgstore-push" --quiet --name otelcol --version 3.0.0 --signature "$TMP/sigs"/*.sig >/dev/null 2>&1
req PUT /v1/policies/p3 -d '{"selector":"env=prod","package":"otelcol","version":"3.0.0"}'
is "$STATUS $(json .version)" "200 3.0.0" "once signed by b and c (root v2's threshold): the policy is stored"
"$BIN/pkgstore-push" --quiet --name otelcol --version 4.0.0 --platform linux/amd64 \
    --sign-key "$K/b.key" --sign-key "$K/c.key" "$TMP/otelcol-2" >/dev/null 2>&1
"$BIN/pkgstore-policy" set p4 --selector env=dev --package otelcol --version 4.0.0 >/dev/null 2>"$TMP/pol.err"
ok $? "push --sign-key then pkgstore-policy set: accepted under --require-signatures"
req PUT /v1/policies/p1 -d '{"selector":"env=test","package":"otelcol","version":"2.0.0"}'
is "$STATUS" 200 "a policy moved to 2.0.0 (signed by push --sign-key): accepted"
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.0 --platform linux/arm64 \
    "$TMP/otelcol-2" >/dev/null 2>"$TMP/push.err"
is "$?" 1 "--require-signatures: another platform for a targeted version is refused"
grep -q 'targeted by policy p1' "$TMP/push.err"
ok $? "... saying which policy and why ($(cut -c1-90 "$TMP/push.err"))"
req GET /v1/packages/otelcol/2.0.0/signatures
is "$(json '.signatures | length')" 2 "... and its signatures are untouched"
req GET /metrics
is "$(metric 'pkgstored_unsigned_refused_total{request="policy"}') $(metric 'pkgstored_unsigned_refused_total{request="upload"}')" \
    "2 1" "/metrics: --require-signatures refused 2 policies (unsigned, then below threshold) and 1 upload"

# An upload that passed its check (no policy targeted the version yet)
# while a policy is put on that version: the upload must not then change
# the manifest under the policy (it would drop the signatures the policy
# was checked against). The body is held back until the policy is stored;
# the upload's writer being open (a file of the store's tmp/) is the
# sign that the upload passed its check.
"$BIN/pkgstore-push" --quiet --name otelcol --version 5.0.0 --platform linux/amd64 \
    --sign-key "$K/b.key" --sign-key "$K/c.key" "$TMP/otelcol-2" >/dev/null 2>&1
mkfifo "$TMP/gate"
( printf '#!/bin/sh\n'; read -r _ <"$TMP/gate"; printf 'echo v5 arm64\n' ) |
    curl -s -o "$TMP/race.body" -w '%{http_code}' -X PUT -T - -H "Authorization: Bearer $ADMIN" \
        "$URL/v1/packages/otelcol/5.0.0?platform=linux/arm64" >"$TMP/race.status" &
race_pid=$!
open_uploads() { ls -l "/proc/$SERVER_PID/fd" 2>/dev/null | grep -c "$TMP/store/tmp/"; }
for _ in $(seq 1 500); do [ "$(open_uploads)" -ge 1 ] && break; sleep 0.01; done
is "$(open_uploads)" 1 "an upload of another platform for 5.0.0 has passed its check and is open"
req PUT /v1/policies/p5 -d '{"selector":"env=prod5","package":"otelcol","version":"5.0.0"}'
is "$STATUS" 200 "meanwhile a policy on the signed 5.0.0 is stored"
echo go >"$TMP/gate"
wait "$race_pid"
is "$(cat "$TMP/race.status") $(jq -r .error.code "$TMP/race.body")" "409 CONFLICT" \
    "the upload, finished after the policy, is refused (409)"
req GET /v1/packages/otelcol/5.0.0/signatures
is "$(json '.signatures | length')" 2 "... and the version keeps its manifest and signatures"

stop_server
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --require-signatures \
    >/dev/null 2>"$TMP/start.err" &
pid=$!
wait "$pid"
is "$?" 1 "--require-signatures without --trust-root does not start"
grep -q 'needs --trust-root' "$TMP/start.err"
ok $? "... and says why"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --trust-root "$TMP/root-edited.json" \
    >/dev/null 2>"$TMP/start.err" &
pid=$!
wait "$pid"
is "$?" 1 "a --trust-root that is not signed to its own threshold does not start"

rm -rf "$TMP/store.trust"
start_server --trust-root "$TMP/root-2.json"
req GET /v1/packages/otelcol/2.0.0/signatures
is "$(json '.check | [.root_version, .root_pinned, .valid, .signed, .revoked] | tojson')" '[2,true,2,true,false]' \
    "with --trust-root and no root held, signatures are checked against the pinned root (no revocations held)"
req GET /v1/packages/otelcol/1.0.0/signatures
is "$(json '.check | [.valid, .revoked] | tojson')" '[2,false]' "... so 1.0.0 shows signed, its revocation gone with STORE.trust"
req PUT /v1/trust/root --data-binary @"$TMP/root-1.json"
is "$STATUS $(error_code)" "409 CONFLICT" "with --trust-root v2 and no root held: root v1 (older) is 409"
json .error.message | grep -q 'older than the server.s --trust-root'
ok $? "... saying why"
req PUT /v1/trust/root --data-binary @"$TMP/root-2.json"
is "$STATUS $(json .version)" "201 2" "... and the --trust-root itself is accepted"
stop_server
printf '{"generation":1,"revocations":[{"signed":{}}]}' >"$TMP/store.trust/revocations.json"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 >/dev/null 2>"$TMP/start.err" &
pid=$!
wait "$pid"
is "$?" 1 "a damaged STORE.trust/revocations.json: pkgstored does not start"
grep -q 'revocations.json: revocations\[0\]' "$TMP/start.err"
ok $? "... and names the file and the entry"

exit $TEST_FAILED
