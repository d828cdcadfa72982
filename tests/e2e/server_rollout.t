#!/usr/bin/env bash
# Staged rollouts (issue 13, section 1) with the real pkgstored and six real
# agents running the fake collector:
#   - a 3-batch rollout that completes by itself, batch after batch;
#   - a version that fails validation: the rollout pauses itself after the
#     first batch, says why, and no node outside that batch is offered it;
#     resumed, it pauses again on the next batch's new failures; a fixed
#     version pushed by the operator then rolls out to every node;
#   - abort --revert: the nodes that moved go back, the others never move;
#   - a server restart in the middle of a rollout keeps its batch.
# Every wait is for an event (a rollout state, a status in the history,
# the version a node reports), never for a length of time.
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export PKGSTORE_BIN=${PKGSTORE_BIN:-$SRC/build/bin}
. "$SRC/tests/e2e/lib/agent.sh"

# pkgstored on a fixed port, so that the agents find it again after a restart
PORT=$(free_port)
start_server() {
    "$B/pkgstored" --store "$T/store" --listen "127.0.0.1:$PORT" --no-fsync \
        --allow-shared-agent-token --heartbeat-interval 1 2>>"$T/pkgstored.log" &
    SERVER_PID=$!
    PIDS+=($SERVER_PID)
    wait_until 10 health_ok "$PORT" 2>/dev/null ||
        wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
}
start_server || { echo "Bail out! pkgstored did not start"; exit 1; }
URL="http://127.0.0.1:$PORT"
ADMIN_FILE="$T/store.admin-token"
wait_until 5 test -s "$T/store.agent-token"
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE URL ADMIN_FILE
api() { curl -s -H "Authorization: Bearer $(cat "$ADMIN_FILE")" "$URL$1"; }
rollout() { api /v1/policies/fleet | jq -r ".status.rollout.$1 // empty"; }
# the versions the six nodes report for otelcol, sorted
versions() {
    local n
    for n in n1 n2 n3 n4 n5 n6; do
        api "/v1/agents/$n" | jq -r '.packages[] | select(.name == "otelcol") | .version'
    done | sort | tr '\n' ' '
}
# how many nodes have VERSION in their server history
touched() {
    local n count=0
    for n in n1 n2 n3 n4 n5 n6; do
        api "/v1/agents/$n" | jq -e --arg v "$1" '[.history[] | select(.version == $v)] | length > 0' \
            >/dev/null && count=$((count + 1))
    done
    echo "$count"
}
export -f api rollout versions touched

TOKEN_FILE=$T/store.agent-token
export TOKEN_FILE
for n in n1 n2 n3 n4 n5 n6; do
    new_node "$T/$n" "$URL" 1
    start_agent "$T/$n"
done
check "six agents heartbeat" wait_until 30 bash -c '[ "$(api /v1/agents | jq -r .total)" = 6 ]'

# ---- a 3-batch rollout that completes
make_variant v2 "$T/otelcol-2" rollout-v2
check "push 2.0.0" "$B/pkgstore-push" --quiet --name otelcol --version 2.0.0 "$T/otelcol-2"
"$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 2.0.0 \
    --batches 1,50% 2>"$T/bad.err"
BAD_STATUS=$?
check "a strategy whose last batch is not 100% is refused: $(cat "$T/bad.err")" \
    bash -c '[ "$0" = 1 ] && grep -q "strategy: batches\[1\]: the last batch must be \"100%\"" "$1"' \
    "$BAD_STATUS" "$T/bad.err"
for flag in --batches --max-failures; do
    "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 2.0.0 \
        $flag "1,$(printf '\377')%" 2>"$T/bad.err"
    check "$flag with bytes that are not UTF-8: a usage error (exit 2), nothing dropped silently" \
        bash -c '[ "$0" = 2 ] && grep -q -- "$1: not valid UTF-8" "$2" && ! "$B/pkgstore-policy" status fleet >/dev/null 2>&1' \
        "$?" "$flag" "$T/bad.err"
done
check "pkgstore-policy set with --batches 1,50%,100% --soak 1 --max-failures 0" \
    "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 2.0.0 \
    --batches 1,50%,100% --soak 1 --max-failures 0
check "the policy carries its strategy" \
    bash -c '[ "$(api /v1/policies/fleet | jq -c .strategy.batches)" = "[1,\"50%\",\"100%\"]" ]'
check "the rollout completes by itself" wait_until 120 bash -c '[ "$(rollout state)" = done ]'
check "every node runs 2.0.0" wait_until 20 bash -c '[ "$(versions)" = "2.0.0 2.0.0 2.0.0 2.0.0 2.0.0 2.0.0 " ]'
api "/v1/audit?policy=fleet" >"$T/audit1.json"
check "the audit log has the put, then start, three batches with soaks, done" \
    test "$(jq -r '[.entries[].action | select(startswith("policy-") | not)] | join(",")' "$T/audit1.json") $(jq -r '[.entries[].action | select(startswith("policy-"))] | join(",")' "$T/audit1.json")" = \
    "start,advance,soak,advance,soak,advance,done policy-put"
check "... the put by the admin token, the rest by pkgstored" \
    test "$(jq -r '[.entries[].who | sub("^token:[0-9a-f]{16}$"; "token")] | unique | join(",")' "$T/audit1.json")" = \
    "pkgstored,token"
check "... batch 1 was one node, batch 2 three, batch 3 every node" \
    test "$(jq -r '[.entries[] | select(.action == "advance") | .reason] | join(";")' "$T/audit1.json")" = \
    "batch 1 of 3: 1 of 6 nodes;batch 2 of 3: 3 of 6 nodes;batch 3 of 3: 6 of 6 nodes (every node)"
check "pkgstore-policy status says done" bash -c '"$B/pkgstore-policy" status fleet | grep -q "^state: *done"'

# ---- a failing version pauses the rollout after its first batch
make_variant validate-fails "$T/otelcol-3" rollout-v3
check "push 3.0.0 (fails its validation)" \
    "$B/pkgstore-push" --quiet --name otelcol --version 3.0.0 "$T/otelcol-3"
check "set the policy to 3.0.0 in batches of 2 and the rest" \
    "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 3.0.0 \
    --batches 2,100% --soak 1 --max-failures 0
check "the rollout pauses itself" wait_until 120 bash -c '[ "$(rollout state)" = paused ]'
rollout reason >"$T/reason"
check "... and says why: $(cat "$T/reason")" grep -q 'batch 1: [12] of 2 nodes failed (0 tolerated).*UpgradeFailed' "$T/reason"
check "pkgstore-policy status names the failed nodes" \
    bash -c '"$B/pkgstore-policy" status fleet | grep -q "^failed: *n[1-6] UpgradeFailed"'
check "both nodes of batch 1 end UpgradeFailed" \
    wait_until 60 bash -c '[ "$(api /v1/policies/fleet | jq -r .status.counts.UpgradeFailed)" = 2 ]'
wait_until 30 bash -c '[ "$(api /metrics | awk "\$1 == \"pkgstored_heartbeats_total\" {print \$2}")" -gt 0 ]'
HB=$(api /metrics | awk '$1 == "pkgstored_heartbeats_total" {print $2}')
check "twelve more heartbeats" wait_until 60 bash -c \
    "[ \"\$(api /metrics | awk '\$1 == \"pkgstored_heartbeats_total\" {print \$2}')\" -ge $((HB + 12)) ]"
check "no node outside batch 1 was ever offered 3.0.0" test "$(touched 3.0.0)" = 2
check "the four others wait, as the policy's counts say" \
    test "$(api /v1/policies/fleet | jq -r .status.counts.Waiting)" = 4
check "/metrics counts the auto-pause" bash -c 'api /metrics | grep -q "^pkgstored_rollout_auto_pauses_total 1$"'
check "/metrics shows the rollout paused" \
    bash -c 'api /metrics | grep -q "^pkgstored_rollout_state{policy=\"fleet\",state=\"paused\"} 1$"'
check "pkgstore-policy resume: the failures seen are accepted, batch 2 starts" \
    "$B/pkgstore-policy" resume fleet
check "the rest fail too: the rollout pauses itself again, in batch 2" \
    wait_until 120 bash -c '[ "$(rollout state) $(rollout batch)" = "paused 2" ]'
check "... for the new failures only: $(rollout reason | cut -c1-60)" \
    bash -c 'rollout reason | grep -q "^batch 2: [1-4] of 4 nodes failed (0 tolerated)"'
check "/metrics counts two auto-pauses" bash -c 'api /metrics | grep -q "^pkgstored_rollout_auto_pauses_total 2$"'
make_variant v2 "$T/otelcol-3.0.1" rollout-v3.0.1
check "push the fix, 3.0.1" "$B/pkgstore-push" --quiet --name otelcol --version 3.0.1 "$T/otelcol-3.0.1"
check "set the policy to 3.0.1" \
    "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 3.0.1 \
    --batches 2,100% --soak 1 --max-failures 0
check "the fix rolls out to every node" wait_until 120 bash -c '[ "$(rollout state)" = done ]'
check "every node runs 3.0.1" wait_until 20 bash -c '[ "$(versions)" = "3.0.1 3.0.1 3.0.1 3.0.1 3.0.1 3.0.1 " ]'

# soak_half VERSION: push otelcol VERSION and set the policy to it, half the
# nodes first, with a soak long enough that batch 1 stays soaking until the
# operator acts.
soak_half() {
    make_variant v2 "$T/otelcol-$1" "rollout-v$1"
    check "push $1" "$B/pkgstore-push" --quiet --name otelcol --version "$1" "$T/otelcol-$1"
    check "set the policy to $1, half first, with a long soak" \
        "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version "$1" \
        --batches 50%,100% --soak 3600
    check "batch 1 settles and soaks" wait_until 120 bash -c '[ "$(rollout state)" = soaking ]'
}

# ---- abort --revert
soak_half 4.0.0
check "pkgstore-policy abort --revert" "$B/pkgstore-policy" abort --revert fleet
check "the policy names 3.0.1 again" \
    bash -c '[ "$(api /v1/policies/fleet | jq -r .version)" = 3.0.1 ]'
check "the three nodes that moved go back to 3.0.1" \
    wait_until 120 bash -c '[ "$(versions)" = "3.0.1 3.0.1 3.0.1 3.0.1 3.0.1 3.0.1 " ]'
check "the other three were never offered 4.0.0" test "$(touched 4.0.0)" = 3
check "the rollout says aborted, reverted from 4.0.0" \
    bash -c '[ "$(rollout state) $(rollout reverted_from)" = "aborted 4.0.0" ]'
"$B/pkgstore-policy" resume fleet 2>"$T/resume.err"
RESUME_STATUS=$?
check "resume after a revert is refused (exit 1) and says why: $(cat "$T/resume.err")" \
    bash -c '[ "$0" = 1 ] && grep -q "reverted: put the policy again" "$1"' "$RESUME_STATUS" "$T/resume.err"
check "the audit log names the admin token" \
    bash -c 'api "/v1/audit?policy=fleet" | jq -e "[.entries[] | select(.action == \"abort-revert\") | .who | test(\"^token:[0-9a-f]{16}$\")] == [true]" >/dev/null'

# ---- a server restart in the middle of a rollout
soak_half 5.0.0
stop_server
start_server
check "after a restart the rollout is still soaking in batch 1" \
    bash -c '[ "$(rollout state) $(rollout batch)" = "soaking 1" ]'
HB=$(api /metrics | awk '$1 == "pkgstored_heartbeats_total" {print $2}')
check "twelve heartbeats after the restart" wait_until 60 bash -c \
    "[ \"\$(api /metrics | awk '\$1 == \"pkgstored_heartbeats_total\" {print \$2}')\" -ge $((HB + 12)) ]"
check "still three nodes on 5.0.0, three waiting" test "$(touched 5.0.0)" = 3
check "pkgstore-policy pause" "$B/pkgstore-policy" pause fleet
check "... paused" bash -c '[ "$(rollout state)" = paused ]'
check "pkgstore-policy resume" "$B/pkgstore-policy" resume fleet
check "the operator shortens the soak: the same rollout goes on" \
    "$B/pkgstore-policy" set fleet --selector env=test --package otelcol --version 5.0.0 \
    --batches 50%,100% --soak 0
check "the rollout completes" wait_until 120 bash -c '[ "$(rollout state)" = done ]'
check "every node runs 5.0.0" wait_until 20 bash -c '[ "$(versions)" = "5.0.0 5.0.0 5.0.0 5.0.0 5.0.0 5.0.0 " ]'

if [ "$FAILED" != 0 ]; then
    dump "$T/pkgstored.log" "$T/n1/agent.log"
    api /v1/policies/fleet | sed 's/^/# /'
fi
echo "1..$TESTNUM"
