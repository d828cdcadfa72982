#!/bin/bash
# The TUF attack list (issue 12, "Tests") against the REAL pkgstored and the
# real pkgstore-agent with trust.root (docs/trust.md, "The agent"). Each
# attack must fail safe: UpgradeFailed (or a refused root) with the reason
# in the node's state, the old collector still running, and, before the
# artifact is needed, no GET of the artifact at all (the server's debug
# access log says which blobs it served). At the end a well-signed version
# is installed, so every check above could have passed.
#
# One node, one root (keys a and b, threshold 2), cases in sequence; each
# case is a new version with its own artifact, so no verdict is reused.
# The attacker is a compromised registry, staged three ways:
#   REAL     the honest pkgstored serves it as the admin uploaded it
#            (unsigned, signed by an unknown key, by one key of two, a
#            rollback, a revoked version offered again);
#   STORE    the server's store or trust directory is tampered with on disk
#            while it runs, or across a restart, as a registry taken over
#            would (pkgstored does not re-hash blobs on read, and loads
#            STORE.trust/root.N.json at start without the rotation check its
#            PUT makes): a manifest blob rewritten under its signed digest, an
#            artifact blob's bytes swapped, STORE.trust/revocations.json
#            rewritten without a revocation (a newer generation), and a
#            root.2.json signed by too few old keys written into STORE.trust/;
#   PROXY    tests/fixtures/fake-pkgstored --proxy in front of the real
#            server (the node's server.url): every request goes to pkgstored
#            and back untouched, except that the heartbeat reply's offers of
#            a given version get a JSON merge patch. Used where the honest
#            server refuses to hold the attack (it keeps only envelopes over
#            the version's current manifest, refuses non-canonical ones, and
#            offers what its index says): a stripped manifest digest,
#            another package's signed manifest (mix-and-match), a changed
#            manifest under its own digest with the old signatures, garbage /
#            truncated / wrong-type signatures, and an absolute url to a
#            mirror (a fake-pkgstored serving a swapped blob).
# agent_trust.t runs the same checks against fake-pkgstored alone;
# agent_trust_server.t the admin's good path (revocation, rotation).
. "$(dirname "$0")/lib/agent.sh"
echo "1..43"
export RETRY_INITIAL=30

K=$T/keys; mkdir -p "$K"
for k in a b c x; do "$B/pkgstore-key" generate -o "$K/$k" > /dev/null || echo "Bail out! pkgstore-key"; done
"$B/pkgstore-key" root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$K/root.json" > /dev/null || echo "Bail out! root"

# --- the real server (debug log: one line per request, with its path)
S=$T/server
start_real_server "$S" --heartbeat-interval 1 --log-level debug ||
    { echo "Bail out! pkgstored did not start"; exit 1; }
SERVER_PID=${PIDS[-1]}
SERVER_PORT=$(cat "$S/port")
export TOKEN_FILE=$AGENT_TOKEN_FILE
put() { curl -sS -o "$T/put.out" -w '%{http_code}' -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$2" "$URL$1"; }
export -f put
[ "$(put /v1/trust/root "$K/root.json")" = 201 ] || echo "Bail out! PUT root 1: $(cat "$T/put.out")"

# --- the compromised registry's front: a proxy that patches offers
P=$T/proxy; mkdir -p "$P"; echo '{}' > "$P/patch.json"
"$B/fake-pkgstored" --port-file "$P/port" --proxy "$URL" --patch "$P/patch.json" 2> "$P/proxy.log" &
PIDS+=($!)
wait_until 5 test -s "$P/port" || echo "Bail out! proxy did not start"
PROXY_URL="http://127.0.0.1:$(cat "$P/port")"
# patch_offers VERSION JSON: from now on, offers of VERSION get the merge patch
# JSON (by version, so that an honest offer of VERSION is never seen unpatched)
patch_offers() {
    jq -c --arg v "$1" --argjson p "$2" '.[$v] = $p' "$P/patch.json" > "$P/patch.json.tmp" &&
        mv "$P/patch.json.tmp" "$P/patch.json"
}

# --- the node, through the proxy (which forwards untouched while the patch is empty)
d=$T/node
new_node "$d" "$PROXY_URL" 1
printf 'trust:\n  root: %s\n' "$K/root.json" >> "$d/agent.yaml"
V1=$(sha "$d/bin/otelcol")
start_agent "$d"; wait_until 10 node_healthy "$d" 2>/dev/null || diag "node not healthy"

export S d
# served DIGEST: pkgstored served GET /v1/blobs/DIGEST (its access log)
served() { grep -q "method=GET path=/v1/blobs/sha256:${1#sha256:} " "$S/server.log"; }
# running SHA: the node's collector is the binary SHA and is healthy, no swap begun since the mark
running() { [ "$(sha "$d/bin/otelcol")" = "$1" ] && [ "$(exe_sha "$(collector_pid "$d")")" = "$1" ] && node_healthy "$d"; }
message_has() { [[ "$(state_message "$d")" == *"$1"* ]]; }
export -f served running message_has
downloads() { log_count "$d" 'msg="downloaded"'; }
swaps() { log_count "$d" 'Swapping'; }
served_count() { grep -c "method=GET path=/v1/blobs/sha256:${1#sha256:} " "$S/server.log"; }
n=0
# artifact VERSION: a new binary for VERSION (its path in A, its digest in H)
artifact() { n=$((n + 1)); A=$T/art-$1; make_variant v2 "$A" "attack-$n-$1"; H=sha256:$(sha "$A"); }
target() { policy set p --package otelcol --version "$1" > /dev/null || diag "policy set $1 failed"; }
manifest_of() { admin "/v1/packages/$1/$2/signatures" | jq -r .manifest; }
signatures_of() { admin "/v1/packages/$1/$2/signatures" | jq -c .signatures; }
blob_file() { local h=${1#sha256:}; echo "$STORE/blobs/sha256/${h:0:2}/$h"; }
# tamper DIGEST FILE: the store's blob DIGEST now holds FILE's bytes (and no zstd copy)
tamper() {
    local f; f=$(blob_file "$1")
    [ -e "$f" ] || { diag "no blob $1"; return 1; }
    cp "$2" "$f.tamper" && chmod 0444 "$f.tamper" && mv -f "$f.tamper" "$f" && rm -f "$f.zst"
}
# safe DIGEST: refused before any byte of the artifact DIGEST, the old collector running
# (an empty DIGEST: only the rest)
safe() {
    { [ -z "$1" ] || ! served "$1"; } && [ "$(downloads)" = "$DL" ] && [ "$(swaps)" = "$SW" ] && running "$OLD"
}
mark() { export DL SW OLD; DL=$(downloads); SW=$(swaps); OLD=${1:-$OLD}; }
export -f downloads swaps served_count safe
mark "$V1"

# 1. an arbitrary package, unsigned (REAL)
artifact 2.0.1; push --name otelcol --version 2.0.1 "$A" > /dev/null
target 2.0.1
check "unsigned package: UpgradeFailed, unsigned (no signatures)" \
    wait_until 20 message_has "otelcol 2.0.1: 0 valid signatures"
check "unsigned package: never downloaded, old collector running" safe "$H"
check "unsigned package: the reason says unsigned" message_has "unsigned (no signatures)"

# 1b. a well-signed package whose manifest digest the registry strips (PROXY)
artifact 2.0.2; push --name otelcol --version 2.0.2 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
patch_offers 2.0.2 '{"manifest": null, "signatures": null}'
target 2.0.2
check "stripped manifest digest: UpgradeFailed, unsigned offer" \
    wait_until 20 message_has "signature: unsigned offer (no manifest digest"
check "stripped manifest digest: never downloaded, old collector running" safe "$H"

# 2. signed by a key the root does not list (REAL)
artifact 2.0.3; push --name otelcol --version 2.0.3 --sign-key "$K/x.key" "$A" > /dev/null
target 2.0.3
check "unknown key: UpgradeFailed, 0 valid signatures, naming the unknown key" \
    wait_until 20 bash -c 'message_has "2.0.3: 0 valid signatures, 2 required" && message_has "unknown key"'
check "unknown key: never downloaded, old collector running" safe "$H"

# 3. one compromised key of a threshold of 2, with the attacker's own key (REAL)
artifact 2.0.4; push --name otelcol --version 2.0.4 --sign-key "$K/a.key" --sign-key "$K/x.key" "$A" > /dev/null
target 2.0.4
check "one compromised key: UpgradeFailed, 1 valid signature, 2 required" \
    wait_until 20 message_has "2.0.4: 1 valid signature, 2 required"
check "one compromised key: never downloaded, old collector running" safe "$H"

# 4. mix-and-match: othercol's signed manifest and signatures on otelcol's offer (PROXY)
artifact 2.0.5; push --name otelcol --version 2.0.5 "$A" > /dev/null
make_variant v2 "$T/othercol" othercol-2.0.5
push --name othercol --version 2.0.5 --sign-key "$K/a.key" --sign-key "$K/b.key" "$T/othercol" > /dev/null
patch_offers 2.0.5 "$(jq -c -n --arg m "$(manifest_of othercol 2.0.5)" --argjson s "$(signatures_of othercol 2.0.5)" \
    '{manifest: $m, signatures: $s}')"
target 2.0.5
check "mix-and-match: UpgradeFailed, naming the difference" wait_until 20 message_has "mix-and-match: "
check "mix-and-match: neither artifact downloaded, old collector running" \
    bash -c 'safe "$0" && ! served "$1"' "$H" "sha256:$(sha "$T/othercol")"

# 5a. the manifest rewritten on the server under its signed digest (STORE)
artifact 2.0.6; push --name otelcol --version 2.0.6 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
make_variant v2 "$T/evil" evil-binary
EVIL=sha256:$(sha "$T/evil")
curl -fsS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$T/evil" "$URL/v1/blobs/$EVIL" > /dev/null
M=$(manifest_of otelcol 2.0.6)
# the same manifest with the artifact pointing at the evil binary
evil_manifest() {
    "$B/pkgstore-show" --store "$STORE" --canonical otelcol "$1" |
        jq -j -c -S --arg e "$EVIL" --argjson s "$(stat -c %s "$T/evil")" '.artifacts[0].digest = $e | .artifacts[0].size = $s'
}
evil_manifest 2.0.6 > "$T/m206"
tamper "$M" "$T/m206"
target 2.0.6
check "manifest rewritten under its digest: UpgradeFailed, the blob is not the signed digest" \
    wait_until 20 message_has "manifest: the server's blob is sha256:$(sha "$T/m206"), the offer names $M"
check "manifest rewritten: neither artifact downloaded, old collector running" \
    bash -c 'safe "$0" && ! served "$1"' "$H" "$EVIL"

# 5b. a manifest changed after signing, served under its own digest, with the old signatures (PROXY)
artifact 2.0.7; push --name otelcol --version 2.0.7 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
evil_manifest 2.0.7 > "$T/m207"
M207=sha256:$(sha "$T/m207")
curl -fsS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$T/m207" "$URL/v1/blobs/$M207" > /dev/null
patch_offers 2.0.7 "$(jq -c -n --arg m "$M207" --arg e "$EVIL" --argjson s "$(stat -c %s "$T/evil")" \
    '{manifest: $m, digest: $e, size: $s, url: ("/v1/blobs/" + $e)}')"
target 2.0.7
check "manifest changed after signing: UpgradeFailed, no signature counts" \
    wait_until 20 message_has "2.0.7: 0 valid signatures, 2 required"
check "manifest changed: the changed manifest was served, the evil artifact never" \
    bash -c 'served "$0" && safe "$1" && ! served "$2"' "$M207" "$H" "$EVIL"

# 6a. the artifact's bytes swapped in the server's store (STORE): the
# signature passes, the download is fetched and fails verify
artifact 2.0.8; push --name otelcol --version 2.0.8 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
cp "$A" "$T/swapped"; printf 'X' | dd of="$T/swapped" bs=1 seek=1000 conv=notrunc 2>/dev/null
tamper "$H" "$T/swapped"
target 2.0.8
check "blob swapped on the server: signature verified, then the download fails verify" \
    bash -c 'wait_until 20 bash -c "message_has \"verify: \" && message_has \"expected $0\"" && grep -q "offer signature verified\" package=otelcol version=2.0.8" "$1/agent.log"' "$H" "$d"
check "blob swapped on the server: fetched, never installed, old collector running" \
    bash -c 'served "$0" && [ "$(swaps)" = "$SW" ] && running "$OLD"' "$H"

# 6b. a mirror (an absolute offer url) serves swapped bytes (PROXY + mirror)
artifact 2.0.9; push --name otelcol --version 2.0.9 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
MI=$T/mirror; mkdir -p "$MI/blobs"
cp "$A" "$MI/blobs/${H#sha256:}"; printf 'Y' | dd of="$MI/blobs/${H#sha256:}" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$B/fake-pkgstored" --port-file "$MI/port" --blobs "$MI/blobs" 2> "$MI/mirror.log" &
PIDS+=($!)
wait_until 5 test -s "$MI/port" || diag "mirror did not start"
patch_offers 2.0.9 "$(jq -c -n --arg u "http://127.0.0.1:$(cat "$MI/port")/v1/blobs/$H" '{url: $u}')"
target 2.0.9
check "blob swapped on a mirror: fetched from the mirror, fails verify" \
    bash -c 'wait_until 20 bash -c "message_has \"verify: \" && message_has \"expected $0\"" && grep -q "GET $0" "$1"' "$H" "$MI/mirror.log"
check "blob swapped on a mirror: not from the server, never installed, old collector running" \
    bash -c '! served "$0" && [ "$(swaps)" = "$SW" ] && running "$OLD"' "$H"
mark

# 7. garbage, truncated and wrong-type signatures (PROXY)
artifact 2.1.0; push --name otelcol --version 2.1.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
# garbage, an object that is no envelope, a truncated signature, an envelope
# of another payload type, and a genuine signature by key a over root 1
# replayed as a's signature of this manifest
patch_offers 2.1.0 "$(signatures_of otelcol 2.1.0 | jq -c --argjson rs "$(jq -c '.signatures[0]' "$K/root.json")" \
    '{signatures: ["garbage", {keyid: "zz"}, (.[0] | .signature = .signature[0:20]),
      (.[1] | .payloadType = "application/vnd.pkgstore.root.v1+json"),
      (.[] | select(.keyid == $rs.keyid) | .signature = $rs.signature)]}')"
target 2.1.0
check "garbage, truncated, wrong-type and replayed signatures: UpgradeFailed, each named" \
    wait_until 20 bash -c 'message_has "2.1.0: 0 valid signatures, 2 required" && message_has "signatures[0]" && message_has "not a manifest signature" && message_has "signature does not verify"'
check "garbage signatures: never downloaded, old collector running" safe "$H"
artifact 2.1.1; push --name otelcol --version 2.1.1 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
patch_offers 2.1.1 '{"signatures": "AAAA"}'
target 2.1.1
check "signatures not an array: UpgradeFailed" wait_until 20 message_has "signatures: not an array"
check "signatures not an array: never downloaded, old collector running" safe "$H"

# 8. a well-signed version passes every check (REAL)
artifact 3.0.0; push --name otelcol --version 3.0.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
V3=$(sha "$A"); H300=$H
target 3.0.0
check "well signed: Upgraded to 3.0.0" bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded3.0.0 ]" && running "$1"' "$d" "$V3"
mark "$V3"

# 9. a rollback to an older signed version, not revoked (REAL)
artifact 2.5.0; push --name otelcol --version 2.5.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
V25=$(sha "$A"); H250=$H
target 2.5.0
check "rollback: UpgradeFailed, 2.5.0 is lower than 3.0.0, which is not revoked" \
    wait_until 20 message_has "rollback: otelcol 2.5.0 is lower than 3.0.0"
check "rollback: never downloaded, 3.0.0 running" safe "$H250"

# 10. a revoked version offered again (REAL): revoking 3.0.0 lets the node
# go back to 2.5.0; then 3.0.0 is offered again
"$B/pkgstore-sign" --revoke --key "$K/a.key" --key "$K/b.key" --reason "incident 42" \
    --output "$T/rev.json" otelcol 3.0.0 > /dev/null
[ "$(put /v1/trust/revocations "$T/rev.json")" = 201 ] || diag "PUT revocation: $(cat "$T/put.out")"
check "revocation: verified by the node, the way back to 2.5.0 installed" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded2.5.0 ]" && running "$1"' "$d" "$V25"
mark "$V25"
target 3.0.0
check "revoked version offered again: UpgradeFailed, revoked with the reason" \
    wait_until 20 message_has "revoked: otelcol 3.0.0 is revoked: incident 42"
check "revoked version offered again: not downloaded again, 2.5.0 running" \
    bash -c '[ "$(served_count "$0")" = 1 ] && safe ""' "$H300"

# 10b. the registry withdraws the revocation (STORE, across a restart):
# revocations.json rewritten with a newer generation and an empty list. A
# signed revocation cannot be withdrawn (docs/trust.md): the node keeps it.
restart_server() { # the store or trust directory is changed while pkgstored is down
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
    "$@"
    start_real_server "$S" --heartbeat-interval 1 --log-level debug --listen "127.0.0.1:$SERVER_PORT" ||
        { echo "Bail out! pkgstored did not restart"; exit 1; }
    SERVER_PID=${PIDS[-1]}
}
withdraw() { echo '{"generation":2,"revocations":[]}' > "$STORE.trust/revocations.json"; }
restart_server withdraw
check "withdrawn revocation: the server serves generation 2 without it" \
    bash -c 'admin /v1/trust/revocations | jq -e ".generation == 2 and (.revocations | length) == 0" > /dev/null'
check "withdrawn revocation: the node read generation 2 and still holds 3.0.0 revoked" \
    bash -c 'wait_until 20 grep -q "msg=\"revocations\" generation=2 revoked=1" "$0/agent.log"' "$d"
# the verdict is taken again at each heartbeat: wait for two more
wait_heartbeats 2 20 > /dev/null
check "withdrawn revocation: 3.0.0 is still refused as revoked, 2.5.0 running" \
    bash -c 'message_has "revoked: otelcol 3.0.0 is revoked: incident 42" && [ "$(served_count "$0")" = 1 ] && safe ""' "$H300"
# and across a restart of the agent, while the registry still leaves it out
stop_agent "$d"; start_agent "$d"
check "withdrawn revocation: a restarted agent keeps it (state_dir/trust/state.json)" \
    bash -c 'wait_until 20 grep -q "msg=\"verified trust state\" path=$0/state/trust/state.json revocations_generation=[0-9]* revoked=1 " "$0/agent.log" && wait_until 20 node_healthy "$0" 2>/dev/null' "$d"
wait_heartbeats 2 20 > /dev/null
check "withdrawn revocation: after the restart 3.0.0 is still refused, 2.5.0 running" \
    bash -c 'message_has "revoked: otelcol 3.0.0 is revoked: incident 42" && [ "$(served_count "$0")" = 1 ] && safe ""' "$H300"

# 11. a root rotation signed by too few old keys (STORE, across a restart):
# root 2 = keys b and c, signed by b (one old key of two) and c
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/b.key" --sign "$K/c.key" -o "$K/root2.json" > /dev/null 2>&1
check "bad rotation: the honest server refuses it on PUT (409)" \
    bash -c '[ "$(put /v1/trust/root "$0")" = 409 ]' "$K/root2.json"
restart_server cp "$K/root2.json" "$STORE.trust/root.2.json"
check "bad rotation: the server now announces root 2" bash -c 'admin /v1/trust/root/2 | cmp -s - "$0"' "$K/root2.json"
check "bad rotation: refused by the node with the reason, root 1 kept" \
    bash -c 'wait_until 20 grep -q "msg=\"root rotation refused; keeping the current root\" version=1 offered=2 error=\"root version 2: .*1 valid signature" "$0/agent.log" && [ ! -e "$0/state/trust/root.json" ]' "$d"
artifact 3.1.0; push --name otelcol --version 3.1.0 --sign-key "$K/b.key" --sign-key "$K/c.key" "$A" > /dev/null
target 3.1.0
check "bad rotation: a version signed by the new keys is refused under root 1" \
    wait_until 20 message_has "3.1.0: 1 valid signature, 2 required"
check "bad rotation: never downloaded, 2.5.0 running" safe "$H"

# 12. and at the end, a well-signed version is installed
artifact 3.2.0; push --name otelcol --version 3.2.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$A" > /dev/null
target 3.2.0
check "well signed: Upgraded to 3.2.0 after every attack" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded3.2.0 ]" && running "$1"' "$d" "$(sha "$A")"
check "every attack was refused before its artifact, with the reason logged" \
    bash -c '[ "$(log_count "$0" "msg=\"offer refused\"")" -ge 10 ]' "$d"
# a manifest is fetched once per check, without encoding (its size is
# unknown: a zstd transfer of it could not be checked for a short body)
check "each manifest fetched once, without a failed zstd attempt" \
    bash -c '! grep -q "zstd transfer failed" "$0/agent.log" && [ "$(served_count "$1")" = 1 ]' "$d" "$M207"
# the reasons reached the fleet view too (the node's last 32 statuses)
admin /v1/agents/node | jq -r '.history[] | select(.status == "UpgradeFailed") | .message' > "$T/history"
check "the node reported each refusal's reason to the server" \
    bash -c 'for r in "mix-and-match: " "manifest: the server'"'"'s blob is" "signs another manifest" "verify: " \
        "signatures: not an array" "rollback: " "revoked: otelcol 3.0.0" "3.1.0: 1 valid signature"; do
        grep -qF "$r" "$0" || { echo "# no \"$r\" in the history"; exit 1; }; done' "$T/history"
