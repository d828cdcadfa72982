#!/bin/bash
# Freeze attacks, seen from the fleet view (docs/trust.md, "Freeze
# attacks"): real pkgstored and agents with trust.root. Each node reports
# the root version, the revocation generation and the newest signed time it
# verified; a node that cannot fetch a new revocation (its agent stopped)
# or refuses a rotation (pinned to another root) shows as behind, in the
# trust=behind filter and in /metrics; the node's own --check-config --json
# shows what it verified; and the verified revocations outlive an agent
# restart, so a server that lost them (an older generation) cannot get the
# revoked version installed; a manifest verified for an offer moves the
# newest signed time too.
. "$(dirname "$0")/lib/agent.sh"
echo "1..13"

K=$T/keys; mkdir -p "$K"
for k in a b x; do "$B/pkgstore-key" generate -o "$K/$k" > /dev/null; done
"$B/pkgstore-key" root create --version 1 --threshold 1 --key "$K/a.pub" --sign "$K/a.key" \
    -o "$K/root.json" > /dev/null
# another fleet's root: a node pinned to it refuses this registry's rotations
"$B/pkgstore-key" root create --version 1 --threshold 1 --key "$K/x.pub" --sign "$K/x.key" \
    -o "$K/other.json" > /dev/null
created() { jq -r .signed.created "$1"; }
export -f created

real_server
SERVER_PID=${PIDS[-1]}
put() { curl -fsS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$2" "$URL$1"; }
put /v1/trust/root "$K/root.json" > /dev/null || { echo "Bail out! PUT root 1 failed"; exit 1; }
make_variant v2 "$T/v2" fresh-v2
push --name otelcol --version 2.0.0 --sign-key "$K/a.key" "$T/v2" > /dev/null

for n in node nodeb nodec; do
    new_node "$T/$n" "$URL" 2
    printf 'trust:\n  root: %s\n' "$K/$([ $n = nodec ] && echo other || echo root).json" >> "$T/$n/agent.yaml"
    start_agent "$T/$n"
done
d=$T/node

# NODE: its "trust" in GET /v1/agents/NODE, compact
trust_of() { admin "/v1/agents/$1" | jq -c '.trust // empty'; }
# NODE JQ: the node's trust passes the jq test
trust_is() { trust_of "$1" | jq -e "$2" > /dev/null 2>&1; }
# the ids of GET /v1/agents?trust=WORD, joined by ','
listed() { admin "/v1/agents?trust=$1" | jq -r '[.nodes[].id] | join(",")'; }
gauge() { admin /metrics | awk -v m="$1" '$1 == m { print $2 }'; }
export -f trust_of trust_is listed gauge

for n in node nodeb; do
    check "$n: root 1, no revocations, newest signed is the root's, not behind" \
        wait_until 20 trust_is "$n" ".root_version == 1 and .revocations == 0 and .newest_signed == \"$(created "$K/root.json")\" and .newest_signed_age_s >= 0 and .behind == false"
done
check "nodec (another root): its own root's time" \
    wait_until 20 trust_is nodec ".root_version == 1 and .newest_signed == \"$(created "$K/other.json")\""
check "the node's --check-config (and --json) shows what it verified, from its state_dir" \
    bash -c '"$B/pkgstore-agent" --check-config --json --config "$0/agent.yaml" | jq -e --arg t "$(created "$1")" ".trust.state.newest_signed == \$t and .trust.state.revocations == 0 and .trust.root_version == 1" > /dev/null && "$B/pkgstore-agent" --check-config --config "$0/agent.yaml" | grep -q "trust: root version 1 (pinned), revocation generation 0 (0 revoked), newest signed data $(created "$1") ("' "$d" "$K/root.json"

# nodeb's agent stops: it cannot learn what follows
stop_agent "$T/nodeb"
"$B/pkgstore-sign" --revoke --key "$K/a.key" --reason "bad build" --output "$K/rev.json" otelcol 2.0.0 > /dev/null
put /v1/trust/revocations "$K/rev.json" > /dev/null
check "node reads revocation generation 1: newest signed is the revocation's" \
    wait_until 20 trust_is node ".revocations == 1 and .newest_signed == \"$(created "$K/rev.json")\" and .behind == false"
check "nodeb, stopped, is behind on revocations; nodec read the generation (and ignored the statement)" \
    bash -c 'trust_is nodeb ".revocations == 0 and .behind == true" && wait_until 20 trust_is nodec ".revocations == 1 and .behind == false" && grep -q "revocation not signed by the current root, ignored" "$0/nodec/agent.log"' "$T"

"$B/pkgstore-key" root create --version 2 --threshold 1 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$K/root2.json" > /dev/null
put /v1/trust/root "$K/root2.json" > /dev/null
check "node adopts root 2; nodec refuses it and shows as behind" \
    bash -c 'wait_until 20 trust_is node ".root_version == 2 and .revocations == 1 and .newest_signed == \"$(created "$1")\" and .behind == false" && wait_until 20 grep -q "root rotation refused" "$0/nodec/agent.log" && trust_is nodec ".root_version == 1 and .behind == true"' "$T" "$K/root2.json"
check "GET /v1/agents?trust=behind lists nodeb and nodec; trust=current node" \
    bash -c '[ "$(listed behind)" = nodeb,nodec ] && [ "$(listed current)" = node ]'
check "/metrics: 3 nodes report, 2 behind on the root, 1 on revocations, the oldest age shown" \
    bash -c '[ "$(gauge pkgstored_nodes_trust_reporting)" = 3 ] && [ "$(gauge "pkgstored_nodes_trust_behind{on=\"root\"}")" = 2 ] && [ "$(gauge "pkgstored_nodes_trust_behind{on=\"revocations\"}")" = 1 ] && [ "$(gauge pkgstored_trust_newest_signed_max_age_seconds)" -ge 0 ]'
check "an unknown trust filter is a 400 naming it" \
    bash -c 'curl -sS -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL/v1/agents?trust=stale" -o "$0/err.json" -w "%{http_code}" | grep -qx 400 && jq -e ".error.message | test(\"trust\")" "$0/err.json" > /dev/null' "$T"

# The revocation outlives a restart of the agent, and of a server that
# lost STORE.trust (generation 0, no revocations): 2.0.0 is offered, signed
# by a key the node trusts, and still refused.
stop_agent "$d"
check "the verified revocations are in state_dir/trust/state.json" \
    bash -c 'jq -e ".revocations_generation == 1 and (.revoked | map(select(.name == \"otelcol\" and .version == \"2.0.0\")) | length == 1)" "$0/state/trust/state.json" > /dev/null' "$d"
port=$(cat "$S/port")
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
mv "$STORE.trust" "$STORE.trust.lost"
"$B/pkgstored" --store "$STORE" --listen "127.0.0.1:$port" --no-fsync --allow-shared-agent-token \
    --heartbeat-interval 1 2>> "$S/server.log" &
PIDS+=($!)
wait_until 10 curl -fsS -o /dev/null "$URL/healthz" || { echo "Bail out! pkgstored did not restart"; exit 1; }
start_agent "$d"
policy set p --package otelcol --version 2.0.0 > /dev/null
check "after both restarts, the revoked 2.0.0 is refused and 1.0.0 keeps running" \
    bash -c 'wait_until 30 bash -c "[[ \"\$(state_message \"$0\")\" == *\"revoked: otelcol 2.0.0 is revoked\"* ]]" && [ "$(collector_version "$0")" = 1.0.0 ] && node_healthy "$0" && ! grep -q "msg=\"downloaded\"" "$0/agent.log"' "$d"

# A manifest verified for an offer counts too: 3.0.0 is signed after
# everything above (the clock past root 2's second first, so that its time
# is the newest), and the node installs it.
wait_until 5 bash -c '[[ "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$(created "$0")" ]]' "$K/root2.json"
make_variant v2 "$T/v3" fresh-v3
push --name otelcol --version 3.0.0 --sign-key "$K/a.key" "$T/v3" > /dev/null
policy set p --package otelcol --version 3.0.0 > /dev/null
m3=$(admin /v1/packages/otelcol/3.0.0 | jq -r .created)
check "an offer's signed manifest moves newest_signed (3.0.0 installed)" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded3.0.0 ]" && wait_until 10 trust_is node ".newest_signed == \"$1\" and .root_version == 2"' "$d" "$m3"

[ "$FAILED" = 0 ] || for n in node nodeb nodec; do diag "$n"; dump "$T/$n/agent.log"; done
exit "$FAILED"
