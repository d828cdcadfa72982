#!/usr/bin/env bash
# Real agents with per-node credentials against the real pkgstored, without
# the shared agent token: a node whose pinned label puts it in the canary
# ring is upgraded whatever labels it reports (its download carries its
# node id); an agent presenting another node's credential is refused (403,
# counted), never enters the fleet and keeps its collector, and the owner's
# state is unchanged; a revoked credential is refused at its next
# heartbeat.
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export PKGSTORE_BIN=${PKGSTORE_BIN:-$SRC/build/bin}
. "$SRC/tests/e2e/lib/agent.sh"

"$B/pkgstored" --store "$T/store" --listen 127.0.0.1:0 --port-file "$T/pk.port" --no-fsync \
    2>"$T/pkgstored.log" &
PIDS+=($!)
wait_until 10 test -s "$T/pk.port" || { echo "Bail out! pkgstored did not start"; exit 1; }
URL="http://127.0.0.1:$(cat "$T/pk.port")"
ADMIN_FILE="$T/store.admin-token"
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE URL ADMIN_FILE
api() { curl -s -H "Authorization: Bearer $(cat "$ADMIN_FILE")" "$URL$1"; }
metric() { api /metrics | awk -v name="$1" '$1 == name {print $2}'; }
node_state() { api "/v1/agents/$1" | jq -r '[.rollout[] | select(.policy=="canary")][0].state // empty'; }
export -f api metric node_state

check "no shared agent token without --allow-shared-agent-token" test ! -e "$T/store.agent-token"
make_variant v2 "$T/otelcol-2" agent-identity-v2
check "pkgstore-push 2.0.0" "$B/pkgstore-push" --quiet --name otelcol --version 2.0.0 "$T/otelcol-2"
check "policy canary: ring=canary gets 2.0.0" \
    "$B/pkgstore-policy" set canary --selector ring=canary --package otelcol --version 2.0.0
check "issue edge-1's credential with ring=canary pinned" \
    "$B/pkgstore-token" issue --node edge-1 --label ring=canary --out "$T/edge-1.token"

# edge-1 reports ring=prod; its pinned ring=canary decides
TOKEN_FILE=$T/edge-1.token LABELS='ring: prod' new_node "$T/edge-1" "$URL" 1
start_agent "$T/edge-1"
check "edge-1 is upgraded to 2.0.0: its pinned label wins over the one it reports" \
    wait_until 40 bash -c '[ "$(node_state edge-1)" = Upgraded ] && [ "$(journal_of "$0" otelcol status)" = Upgraded ]' "$T/edge-1"
check "its collector runs 2.0.0" test "$(collector_version "$T/edge-1")" = 2.0.0
check "the fleet view shows the pinned label" \
    test "$(api /v1/agents/edge-1 | jq -c .labels)" = '{"ring":"canary"}'
check "no request was refused as another node's" test "$(metric pkgstored_node_mismatch_total)" = 0
stop_agent "$T/edge-1" # its own reports would change its record meanwhile
BEFORE=$(api /v1/agents/edge-1 | jq -c '{labels, packages, history, last_seen}')

# edge-2 presents edge-1's credential
TOKEN_FILE=$T/edge-1.token LABELS='ring: canary' new_node "$T/edge-2" "$URL" 1
start_agent "$T/edge-2"
check "edge-2's heartbeats with edge-1's credential are refused and counted" \
    wait_until 20 bash -c '[ "$(metric pkgstored_node_mismatch_total)" -ge 3 ]'
check "edge-2 never enters the fleet" \
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$ADMIN_FILE")" \
        "$URL/v1/agents/edge-2")" = 404
check "edge-2 keeps its collector 1.0.0" test "$(collector_version "$T/edge-2")" = 1.0.0
grep -q 'this credential speaks for node edge-1 only' "$T/edge-2/agent.log"
check "edge-2's agent logs the server's reason" test $? = 0
check "edge-1's labels, packages and history are unchanged" \
    test "$(api /v1/agents/edge-1 | jq -c '{labels, packages, history, last_seen}')" = "$BEFORE"
start_agent "$T/edge-1"

# revoke edge-1: its next heartbeat gets 401
seen_again() { [ "$(api /v1/agents/edge-1 | jq -c .last_seen)" != "$(jq -c .last_seen <<<"$BEFORE")" ]; }
export -f seen_again; export BEFORE
check "edge-1's agent heartbeats again" wait_until 20 seen_again
ID=$("$B/pkgstore-token" --json ls | jq -r '.credentials[] | select(.node=="edge-1") | .id')
check "revoke edge-1's credential" "$B/pkgstore-token" revoke "$ID"
refused() { api /metrics | grep -q '^pkgstored_requests_total{route="/v1/agents/heartbeat",code="401"} [1-9]'; }
export -f refused
check "edge-1's next heartbeat is refused with 401, without a restart" wait_until 20 refused
check "edge-1 keeps running 2.0.0" test "$(collector_version "$T/edge-1")" = 2.0.0

if [ "$FAILED" != 0 ]; then
    dump "$T/edge-1/agent.log" "$T/edge-2/agent.log" "$T/pkgstored.log"
fi
echo "1..$TESTNUM"
