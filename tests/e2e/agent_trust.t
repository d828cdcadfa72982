#!/bin/bash
# pkgstore-agent with trust.root (docs/trust.md, "The agent"): an offer is
# acted on only when its manifest is signed to threshold by the current
# root's keys and matches the offer; every other case is UpgradeFailed with
# the reason, before any byte of the artifact is fetched, with the old
# collector running. Root rotations are adopted only when valid.
#
# TEST DOUBLE: this runs against tests/fixtures/fake-pkgstored, which serves
# the wire contract's offer fields ("manifest", "signatures"), "trust" and
# GET /v1/trust/root/V as written in its files: quick to script, and the
# place for the agent's configuration checks and corner cases. The same
# attacks against the REAL pkgstored (its store tampered with, or behind
# fake-pkgstored --proxy) are tests/e2e/agent_trust_attacks.t; the admin's
# good path against it is agent_trust_server.t.
. "$(dirname "$0")/lib/agent.sh"
echo "1..41"
W=1
export RETRY_INITIAL=30

K=$T/keys; mkdir -p "$K"
for k in a b c x; do "$B/pkgstore-key" generate -o "$K/$k" > /dev/null || echo "Bail out! pkgstore-key"; done
# root 1: keys a and b, threshold 2
"$B/pkgstore-key" root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$K/root.json" > /dev/null || echo "Bail out! root"

# signed_offer DIR FILE NAME VERSION KEY...: the package in a scratch store,
# its canonical manifest as a blob of the fake server, signed by each KEY;
# prints the offer with "manifest" and "signatures" (as the contract says)
signed_offer() {
    local dir=$1 file=$2 name=$3 version=$4; shift 4
    local st=$dir/pkg-$name-$version sigs='[]' mh k
    "$B/pkgstore-add" --store "$st" --no-fsync --name "$name" --version "$version" \
        --entrypoint "$name" "$file" > /dev/null || return 1
    "$B/pkgstore-show" --store "$st" --canonical "$name" "$version" > "$st.manifest" || return 1
    mh=$(sha "$st.manifest"); cp "$st.manifest" "$dir/blobs/$mh"
    mkdir -p "$st.sigs"
    for k in "$@"; do
        "$B/pkgstore-sign" --manifest "$st.manifest" --key "$K/$k.key" --output-dir "$st.sigs" \
            "$name" "$version" > /dev/null || return 1
    done
    [ $# -eq 0 ] || sigs=$(jq -s -c . "$st.sigs"/*.sig)
    offer_json "$dir" "$file" "$name" "$version" |
        jq -c --arg m "sha256:$mh" --argjson s "$sigs" '. + {manifest: $m, signatures: $s}'
}
trust_node() { # DIR: new_node with trust.root
    new_node "$1" "$FAKE_URL" $W
    printf 'trust:\n  root: %s\n' "${ROOT_FILE:-$K/root.json}" >> "$1/agent.yaml"
}
message_has() { [[ "$(state_message "$1")" == *"$2"* ]]; }
fetched() { grep -q "GET sha256:$(sha "$2")" "$1/server.log"; }
old_running() { [ "$(collector_version "$1")" = 1.0.0 ] && node_healthy "$1" && ! grep -q Swapping "$1/heartbeats.jsonl"; }
export -f message_has fetched old_running

# --- configuration: the pinned root is checked at start
d=$T/config; mkdir -p "$d"; start_fake_server "$d"
trust_node "$d"
check "config: a valid root passes --check-config and shows its version" \
    bash -c '"$B/pkgstore-agent" --check-config --json --config "$0/agent.yaml" | jq -e ".trust.root_version == 1" > /dev/null' "$d"
head -c 200 "$K/root.json" > "$d/truncated.json"
sed -i "s|  root: .*|  root: $d/truncated.json|" "$d/agent.yaml"
out=$("$B/pkgstore-agent" --check-config --config "$d/agent.yaml" 2>&1); rc=$?
check "config: a truncated root is a configuration error naming trust.root (exit 2)" \
    bash -c '[ "$0" = 2 ] && [[ "$1" == *"trust.root: "*"truncated.json"* ]]' "$rc" "$out"
# a root whose signatures do not reach its own threshold (1 of 2)
"$B/pkgstore-key" root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" -o "$d/weak.json" > /dev/null 2>&1
sed -i "s|  root: .*|  root: $d/weak.json|" "$d/agent.yaml"
"$B/pkgstore-agent" --config "$d/agent.yaml" > "$d/start.log" 2>&1; rc=$?
check "config: the agent refuses to start with a root below its own threshold, and says why" \
    bash -c '[ "$0" = 2 ] && grep -q "trust.root: .*1 valid signature.*2 required" "$1"' "$rc" "$d/start.log"
sed -i "s|  root: .*|  root: $d/missing.json|" "$d/agent.yaml"
"$B/pkgstore-agent" --check-config --config "$d/agent.yaml" > "$d/missing.log" 2>&1; rc=$?
check "config: a missing root file is a configuration error" \
    bash -c '[ "$0" = 2 ] && grep -q "trust.root: .*missing.json: cannot read" "$1"' "$rc" "$d/missing.log"

# --- the attacks, one node: each offer is a new artifact (a new digest)
d=$T/attacks; mkdir -p "$d"; start_fake_server "$d"; trust_node "$d"
start_agent "$d"; wait_until 10 node_healthy "$d" || diag "node not healthy"
n=0
variant() { n=$((n + 1)); make_variant v2 "$d/art$n" "attack-$n"; A=$d/art$n; }

variant  # unsigned: no manifest, no signatures
set_offers "$d" "$(offer_json "$d" "$A" otelcol 2.0.0)"
check "unsigned offer: UpgradeFailed with the reason" wait_until 15 message_has "$d" "unsigned offer"
check "unsigned offer: artifact never fetched, old collector running" bash -c '! fetched "$0" "$1" && old_running "$0"' "$d" "$A"

variant  # a manifest, no signatures
set_offers "$d" "$(signed_offer "$d" "$A" otelcol 2.0.1)"
check "no signatures: UpgradeFailed (unsigned)" wait_until 15 message_has "$d" "unsigned (no signatures)"

variant  # one good key and one the root does not list
set_offers "$d" "$(signed_offer "$d" "$A" otelcol 2.0.2 a x)"
check "unknown key: refused below threshold, naming the unknown key" \
    wait_until 15 bash -c 'message_has "$0" "1 valid signature, 2 required" && message_has "$0" "unknown key"' "$d"
check "unknown key: artifact never fetched, old collector running" bash -c '! fetched "$0" "$1" && old_running "$0"' "$d" "$A"

variant  # one key of a threshold of 2 (one compromised key)
set_offers "$d" "$(signed_offer "$d" "$A" otelcol 2.0.3 a)"
check "below threshold: one key of two is refused" wait_until 15 message_has "$d" "2.0.3: 1 valid signature, 2 required"

variant  # mix-and-match: a valid signature over another package's manifest
offer=$(signed_offer "$d" "$A" othercol 2.0.4 a b | jq -c '.name = "otelcol"')
set_offers "$d" "$offer"
check "mix-and-match: refused, naming the difference" wait_until 15 message_has "$d" "mix-and-match: "
check "mix-and-match: artifact never fetched, old collector running" bash -c '! fetched "$0" "$1" && old_running "$0"' "$d" "$A"

variant  # the manifest changed after signing (a new digest, the old signatures)
offer=$(signed_offer "$d" "$A" otelcol 2.0.5 a b)
m=$(jq -r .manifest <<< "$offer"); jq -j -c -S '.annotations = {"evil": "yes"}' "$d/blobs/${m#sha256:}" > "$d/changed.json"
mh=$(sha "$d/changed.json"); cp "$d/changed.json" "$d/blobs/$mh"
set_offers "$d" "$(jq -c --arg m "sha256:$mh" '.manifest = $m' <<< "$offer")"
check "changed manifest: no signature counts" wait_until 15 message_has "$d" "2.0.5: 0 valid signatures, 2 required"

variant  # the manifest changed on the server under the signed digest
offer=$(signed_offer "$d" "$A" otelcol 2.0.6 a b)
m=$(jq -r .manifest <<< "$offer"); jq -j -c -S '.annotations = {"evil": "yes"}' "$d/blobs/${m#sha256:}" > "$d/blobs/${m#sha256:}.new"
mv "$d/blobs/${m#sha256:}.new" "$d/blobs/${m#sha256:}"
set_offers "$d" "$offer"
check "manifest swapped on the server: digest mismatch" wait_until 15 message_has "$d" "manifest: the server's blob is sha256:"
check "manifest swapped: artifact never fetched, old collector running" bash -c '! fetched "$0" "$1" && old_running "$0"' "$d" "$A"

variant  # the offer names another artifact than the signed manifest
offer=$(signed_offer "$d" "$A" otelcol 2.0.7 a b)
make_variant v2 "$d/other" other-artifact
other=$(offer_json "$d" "$d/other" otelcol 2.0.7)
set_offers "$d" "$(jq -c --argjson o "$other" '.digest = $o.digest | .size = $o.size | .url = $o.url' <<< "$offer")"
check "another artifact: the offer's digest is not the signed one" wait_until 15 message_has "$d" "is not the signed manifest's"
check "another artifact: neither artifact fetched" bash -c '! fetched "$0" "$1" && ! fetched "$0" "$2" && old_running "$0"' "$d" "$A" "$d/other"

variant  # garbage and truncated signatures
offer=$(signed_offer "$d" "$A" otelcol 2.0.8 a b)
set_offers "$d" "$(jq -c '.signatures = ["garbage", {"keyid": "zz"}, (.signatures[0] | .signature = .signature[0:20]), (.signatures[1] | .payloadType = "application/vnd.pkgstore.root.v1+json")]' <<< "$offer")"
check "garbage, truncated and wrong-type signatures: refused, each named" \
    wait_until 15 bash -c 'message_has "$0" "0 valid signatures, 2 required" && message_has "$0" "signatures[0]"' "$d"

variant  # "signatures" that is not an array
set_offers "$d" "$(signed_offer "$d" "$A" otelcol 2.0.9 a b | jq -c '.signatures = "AAAA"')"
check "signatures not an array: refused" wait_until 15 message_has "$d" "signatures: not an array"
check "every refusal is remembered as bad" bash -c '[ "$(jq ".bad | length" "$0/state/state.json")" -ge 10 ]' "$d"

variant  # the blob swapped: the signed digest is checked at verify
offer=$(signed_offer "$d" "$A" otelcol 2.1.0 a b)
printf 'X' | dd of="$d/blobs/$(sha "$A")" bs=1 seek=1000 conv=notrunc 2>/dev/null
set_offers "$d" "$offer"
check "swapped blob: signature accepted, then the download fails verify" \
    bash -c 'wait_until 15 message_has "$0" "verify: " && grep -q "offer signature verified.*version=2.1.0" "$0/agent.log"' "$d"
check "swapped blob: old collector running" old_running "$d"

variant  # and finally a well-signed offer is installed (the checks above can pass)
set_offers "$d" "$(signed_offer "$d" "$A" otelcol 3.0.0 a b)"
check "signed offer: Upgraded to 3.0.0" bash -c 'wait_until 20 status_is "$0" Upgraded && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ]' "$d" "$A"

# --- root rotation: 1 -> 2 (keys b and c), then an offer signed by b and c
d=$T/rotate; mkdir -p "$d/roots"
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/a.key" --sign "$K/b.key" --sign "$K/c.key" -o "$d/roots/2.json" > /dev/null
echo '{"root_version": 2, "revocations": 0}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json" --roots "$d/roots"; trust_node "$d"
cp "$K/root.json" "$d/pinned-before"
start_agent "$d"; wait_until 10 node_healthy "$d"
check "rotation: root 2 adopted into state_dir" \
    bash -c 'wait_until 10 grep -q "msg=\"root rotated\" version=2" "$0/agent.log" && cmp -s "$0/roots/2.json" "$0/state/trust/root.json"' "$d"
make_variant v2 "$d/v2" rotate-v2
set_offers "$d" "$(signed_offer "$d" "$d/v2" otelcol 2.0.0 b c)"
check "rotation: an offer signed by the new keys is installed; the pinned root is untouched" \
    bash -c 'wait_until 20 status_is "$0" Upgraded && cmp -s "$0/pinned-before" "$1"' "$d" "$K/root.json"

# --- a rotation signed by too few old keys is refused
d=$T/badrotate; mkdir -p "$d/roots"
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/b.key" --sign "$K/c.key" -o "$d/roots/2.json" > /dev/null
echo '{"root_version": 2, "revocations": 0}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json" --roots "$d/roots"; trust_node "$d"
start_agent "$d"; wait_until 10 node_healthy "$d"
check "bad rotation: refused with the reason, the current root kept" \
    bash -c 'wait_until 10 grep -q "msg=\"root rotation refused; keeping the current root\" version=1 offered=2" "$0/agent.log" && [ ! -e "$0/state/trust/root.json" ]' "$d"

# --- a valid rotation that fails here (its file cannot be written) is tried
# again at the next heartbeat, not refused until the server has a newer root
d=$T/rotlocal; mkdir -p "$d/roots" "$d/state/trust"
cp "$T/rotate/roots/2.json" "$d/roots/2.json"
echo '{"root_version": 2, "revocations": 0}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json" --roots "$d/roots"; trust_node "$d"
IMMUTABLE+=("$d/state/trust")
if [ "$(id -u)" = 0 ]; then chattr +i "$d/state/trust"; else chmod a-w "$d/state/trust"; fi
start_agent "$d"; wait_until 10 node_healthy "$d" 2>/dev/null
check "local failure: the rotation cannot be kept, the current root stays" \
    wait_until 10 grep -q 'msg="root rotation refused; keeping the current root" version=1 offered=2' "$d/agent.log"
if [ "$(id -u)" = 0 ]; then chattr -i "$d/state/trust"; else chmod u+w "$d/state/trust"; fi
check "local failure: once it can be written, root 2 is adopted (same server root)" \
    bash -c 'wait_until 10 grep -q "msg=\"root rotated\" version=2" "$0/agent.log" && cmp -s "$0/roots/2.json" "$0/state/trust/root.json"' "$d"

# --- anti-rollback and revocations
d=$T/rollback; mkdir -p "$d"
echo '{"root_version": 1, "revocations": 0}' > "$d/trust.json"
echo '{"generation": 0, "revocations": []}' > "$d/revocations.json"
start_fake_server "$d" --trust "$d/trust.json" --revocations "$d/revocations.json"; trust_node "$d"
start_agent "$d"; wait_until 10 node_healthy "$d"
make_variant v2 "$d/v2" rollback-v2; make_variant v2 "$d/v15" rollback-v15
offer2=$(signed_offer "$d" "$d/v2" otelcol 2.0.0 a b)
offer15=$(signed_offer "$d" "$d/v15" otelcol 1.5.0 a b)
set_offers "$d" "$offer2"
check "rollback: 2.0.0 installed (the highest that ran)" bash -c 'wait_until 20 status_is "$0" Upgraded && [ "$(journal_of "$0" otelcol highest_version)" = 2.0.0 ]' "$d"
set_offers "$d" "$offer15"
check "rollback: a signed 1.5.0 is refused while 2.0.0 is not revoked" \
    wait_until 15 message_has "$d" "rollback: otelcol 1.5.0 is lower than 2.0.0"
check "rollback: 1.5.0 never fetched, 2.0.0 still running" \
    bash -c '! fetched "$0" "$1" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$2")" ] && node_healthy "$0"' "$d" "$d/v15" "$d/v2"
# a revocation of 2.0.0 signed by a and b, and one of 1.5.0 by a alone (ignored)
"$B/pkgstore-sign" --revoke --key "$K/a.key" --key "$K/b.key" --reason "bad release" --output "$d/rev2.json" otelcol 2.0.0 > /dev/null
"$B/pkgstore-sign" --revoke --key "$K/a.key" --output "$d/rev15.json" otelcol 1.5.0 > /dev/null
jq -c -n --slurpfile a "$d/rev2.json" --slurpfile b "$d/rev15.json" '{generation: 1, revocations: [$a[0], $b[0]]}' > "$d/revocations.json"
echo '{"root_version": 1, "revocations": 1}' > "$d/trust.json"
check "revocation: fetched, the one below threshold ignored" \
    bash -c 'wait_until 15 grep -q "msg=\"revocations\" generation=1 revoked=1" "$0/agent.log" && grep -q "revocation not signed by the current root" "$0/agent.log"' "$d"
check "revocation: the downgrade to 1.5.0 is now allowed and installed" \
    bash -c 'wait_until 20 bash -c "[ \"\$(sv \"$0\")\" = Upgraded1.5.0 ]" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ]' "$d" "$d/v15"
set_offers "$d" "$offer2"
check "revocation: the revoked 2.0.0 is never installed again" \
    bash -c 'wait_until 15 message_has "$0" "revoked: otelcol 2.0.0 is revoked: bad release" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ] && node_healthy "$0"' "$d" "$d/v15"

# --- state_dir/trust/state.json across restarts: left as it is when
# nothing new is verified; a damaged one is ignored with a warning and the
# revocations are read from the server again
st=$d/state/trust/state.json
revocations_read() { grep -c 'msg="revocations" generation=1 revoked=1' "$1/agent.log"; }
heartbeats_seen() { wc -l < "$1/heartbeats.jsonl"; }
export -f revocations_read heartbeats_seen
ino=$(stat -c %i "$st")
stop_agent "$d"; hb=$(heartbeats_seen "$d")
start_agent "$d"
check "trust state: a restart that verifies nothing new does not rewrite state.json" \
    bash -c 'wait_until 15 bash -c "[ \$(heartbeats_seen \"$0\") -ge $(( $3 + 3 )) ]" && [ "$(stat -c %i "$1")" = "$2" ] && [ "$(revocations_read "$0")" = 1 ]' "$d" "$st" "$ino" "$hb"
stop_agent "$d"
head -c 40 "$st" > "$st.cut" && mv "$st.cut" "$st"
start_agent "$d"
check "trust state: a damaged one is ignored with a warning, the list read again, 2.0.0 still refused" \
    bash -c 'wait_until 15 grep -q "msg=\"ignoring the verified trust state; the server is asked again\"" "$0/agent.log" && wait_until 15 bash -c "[ \$(revocations_read \"$0\") = 2 ]" && jq -e ".revocations_generation == 1 and (.revoked | length) == 1" "$0/state/trust/state.json" > /dev/null && message_has "$0" "revoked: otelcol 2.0.0 is revoked: bad release" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ] && node_healthy "$0"' "$d" "$d/v15"

# --- a rotation after a refusal: what the new root trusts is judged again
d=$T/late; mkdir -p "$d/roots"
cp "$T/rotate/roots/2.json" "$d/roots/2.json"    # keys b and c, signed by a, b and c
echo '{"root_version": 1, "revocations": 0}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json" --roots "$d/roots"; trust_node "$d"
start_agent "$d"; wait_until 10 node_healthy "$d"
make_variant v2 "$d/v2" late-v2
set_offers "$d" "$(signed_offer "$d" "$d/v2" otelcol 2.0.0 b c)"
check "late rotation: signed by b and c, refused under root 1 (c unknown)" \
    wait_until 15 message_has "$d" "1 valid signature, 2 required"
echo '{"root_version": 2, "revocations": 0}' > "$d/trust.json"
check "late rotation: root 2 adopted, the refused offer checked again and installed" \
    bash -c 'wait_until 20 status_is "$0" Upgraded && grep -q "offers refused for their signatures are checked again" "$0/agent.log"' "$d"

# --- revocations announced but unreadable: nothing is installed (fail safe)
d=$T/norev; mkdir -p "$d"
echo '{"root_version": 1, "revocations": 3}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json"; trust_node "$d"     # no revocations route: 404
start_agent "$d"; wait_until 10 node_healthy "$d"
make_variant v2 "$d/v2" norev-v2
set_offers "$d" "$(signed_offer "$d" "$d/v2" otelcol 2.0.0 a b)"
check "unreadable revocations: a signed offer waits, with the reason, nothing fetched" \
    bash -c 'wait_until 15 message_has "$0" "revocations: generation 3 could not be read" && ! fetched "$0" "$1" && old_running "$0"' "$d" "$d/v2"

# --- a new pinned root installed with the node: the revocation generation
# read under the old root is read again, so a statement that only the new
# root's keys sign is held (not skipped because its generation was read)
d=$T/newpin; mkdir -p "$d"
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/c.pub" \
    --sign "$K/b.key" --sign "$K/c.key" -o "$d/root2.json" > /dev/null
"$B/pkgstore-sign" --revoke --key "$K/b.key" --key "$K/c.key" --reason "bad under root 2" \
    --output "$d/rev2.json" otelcol 2.0.0 > /dev/null
jq -c -n --slurpfile a "$d/rev2.json" '{generation: 1, revocations: [$a[0]]}' > "$d/revocations.json"
echo '{"root_version": 1, "revocations": 1}' > "$d/trust.json"
start_fake_server "$d" --trust "$d/trust.json" --revocations "$d/revocations.json"; trust_node "$d"
start_agent "$d"; wait_until 10 node_healthy "$d"
check "new pinned root: under root 1 generation 1 is read, its statement ignored" \
    bash -c 'wait_until 15 grep -q "msg=\"revocations\" generation=1 revoked=0" "$0/agent.log" && grep -q "revocation not signed by the current root" "$0/agent.log"' "$d"
stop_agent "$d"
sed -i "s|  root: .*|  root: $d/root2.json|" "$d/agent.yaml"
make_variant v2 "$d/v2" newpin-v2
set_offers "$d" "$(signed_offer "$d" "$d/v2" otelcol 2.0.0 b c)"
start_agent "$d"
check "new pinned root: generation 1 read again and the revoked 2.0.0 refused, nothing fetched" \
    bash -c 'wait_until 15 message_has "$0" "revoked: otelcol 2.0.0 is revoked: bad under root 2" && grep -q "msg=\"revocations\" generation=1 revoked=1" "$0/agent.log" && ! fetched "$0" "$1" && old_running "$0"' "$d" "$d/v2"
