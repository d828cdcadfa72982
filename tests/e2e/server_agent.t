#!/usr/bin/env bash
# The real agent against the real server: packages pushed with
# pkgstore-push, a policy set with pkgstore-policy, a node that heartbeats,
# downloads, validates, swaps and reports; the fleet view and the policy's
# rollout status show the result. Uses the agent tests' helpers
# (tests/e2e/lib/agent.sh) for the node and its fake collector.
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export PKGSTORE_BIN=${PKGSTORE_BIN:-$SRC/build/bin}
. "$SRC/tests/e2e/lib/agent.sh"

"$B/pkgstored" --store "$T/store" --listen 127.0.0.1:0 --port-file "$T/pk.port" --no-fsync \
    --allow-shared-agent-token 2>"$T/pkgstored.log" &
PIDS+=($!)
wait_until 10 test -s "$T/pk.port" || { echo "Bail out! pkgstored did not start"; exit 1; }
URL="http://127.0.0.1:$(cat "$T/pk.port")"
ADMIN_FILE="$T/store.admin-token"
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE
api() { curl -s -H "Authorization: Bearer $(cat "$ADMIN_FILE")" "$URL$1"; }

make_variant v2 "$T/otelcol-2" server-agent-v2
make_variant validate-fails "$T/otelcol-3" server-agent-v3
check "pkgstore-push 2.0.0" "$B/pkgstore-push" --quiet --name otelcol --version 2.0.0 "$T/otelcol-2"
check "pkgstore-push 3.0.0 (fails its validation)" \
    "$B/pkgstore-push" --quiet --name otelcol --version 3.0.0 "$T/otelcol-3"
check "pkgstore-policy set: env=test gets 2.0.0" \
    "$B/pkgstore-policy" set rollout --selector 'env=test' --package otelcol --version 2.0.0

new_node "$T/edge-1" "$URL" 2
sed -i "s|^  url: .*|&\n  token_file: $T/store.agent-token|" "$T/edge-1/agent.yaml"
start_agent "$T/edge-1"

node_state() { api "/v1/agents/$1" | jq -r '[.rollout[] | select(.policy=="rollout")][0].state // empty'; }
export -f node_state api
export URL ADMIN_FILE
check "the node heartbeats with the agent token and appears in the fleet view" \
    wait_until 15 bash -c '[ -n "$(api /v1/agents/edge-1 | jq -r .id 2>/dev/null | grep edge-1)" ]'
check "the node is upgraded to 2.0.0 through pkgstored" \
    wait_until 40 bash -c '[ "$(node_state edge-1)" = Upgraded ]'
check "the collector runs the pushed binary" test "$(collector_version "$T/edge-1")" = 2.0.0
check "the node's history shows every step up to Upgraded" \
    wait_until 10 bash -c 'api /v1/agents/edge-1 | jq -e "[.history[].status] | . == [\"Downloading\",\"Verifying\",\"Validating\",\"Swapping\",\"Monitoring\",\"Upgraded\"]" >/dev/null'
check "the policy's rollout counts one node Upgraded" \
    bash -c '[ "$(api /v1/policies/rollout | jq -r .status.counts.Upgraded)" = 1 ]'

check "pkgstore-policy set: move the ring to 3.0.0" \
    "$B/pkgstore-policy" set rollout --selector 'env=test' --package otelcol --version 3.0.0
check "a version that fails validation ends UpgradeFailed in the fleet view" \
    wait_until 40 bash -c '[ "$(node_state edge-1)" = UpgradeFailed ]'
check "the old collector keeps running" test "$(collector_version "$T/edge-1")" = 2.0.0
check "the policy's rollout counts it as UpgradeFailed" \
    bash -c '[ "$(api /v1/policies/rollout | jq -r .status.counts.UpgradeFailed)" = 1 ]'
api /metrics | grep -q '^pkgstored_nodes{policy="rollout",status="UpgradeFailed"} 1$'
check "/metrics shows the node by status" test $? = 0
# ---- the fleet's filters on the server (GET /v1/agents): the package and
# version a node runs and its last status; a second node, posted by hand,
# runs 1.0.0 and last said Upgraded
curl -s -o /dev/null -H "Authorization: Bearer $(cat "$T/store.agent-token")" \
    -d '{"node_id":"edge-2","labels":{"env":"other"},"platform":"linux/amd64","packages":[{"name":"otelcol","type":"primary","version":"1.0.0","status":"Upgraded","message":"by hand"}]}' \
    "$URL/v1/agents/heartbeat"
ids() { api "/v1/agents?$1" | jq -r '[.total] + [.nodes[].id] | join(" ")'; }
check "?package=otelcol&version=2.0.0: the node that runs it" test "$(ids 'package=otelcol&version=2.0.0')" = "1 edge-1"
check "?version=1.0.0: the node whose primary is at 1.0.0" test "$(ids 'version=1.0.0')" = "1 edge-2"
check "?package=otelcol: both nodes" test "$(ids 'package=otelcol')" = "2 edge-1 edge-2"
check "?package=otelcol&version=3.0.0: none runs the failed version" test "$(ids 'package=otelcol&version=3.0.0')" = "0"
check "?package=other: none" test "$(ids 'package=other')" = "0"
check "?status=UpgradeFailed: the node whose last status it is" test "$(ids 'status=UpgradeFailed')" = "1 edge-1"
check "?status=Upgraded: not edge-1 (Upgraded earlier, UpgradeFailed last)" test "$(ids 'status=Upgraded')" = "1 edge-2"
check "?status=Upgraded&selector=env%3Dtest: none" test "$(ids 'status=Upgraded&selector=env%3Dtest')" = "0"
check "?status=Bogus: 400 INVALID naming the argument" \
    bash -c 'api "/v1/agents?status=Bogus" | jq -e ".error.code == \"INVALID\" and (.error.message | startswith(\"status: '"'"'Bogus'"'"' is not a rollout state\"))" >/dev/null'
if [ "$FAILED" != 0 ]; then
    dump "$T/edge-1/agent.log" "$T/pkgstored.log"
fi
echo "1..$TESTNUM"
