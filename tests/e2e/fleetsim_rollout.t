#!/usr/bin/env bash
# pkgstore-fleetsim against a real pkgstored with a staged rollout (issue
# 13, section 4's brake, small): 2,000 simulated nodes, a policy with
# batches [20, "10%", "50%", "100%"] that tolerates 3 failures per batch,
# and 2.0.0 failing on 5% of the nodes that take it: batch 1 (20 nodes)
# stays within the threshold, batch 2 (180 more) crosses it. Assertions
# are on correctness only, never on timing; the test waits for the
# server's events (the rollout's state), with bounds:
#   - the rollout pauses itself in batch 2: policy status, audit log,
#     pkgstored_rollout_auto_pauses_total; the reason names failing nodes;
#   - exactly: no node outside the started batches was ever offered 2.0.0
#     (every offer in fleetsim's --report, against the status's per-batch
#     rank_below and `pkgstore-policy rank`, pkgstore_rollout_rank());
#   - the operator pushes a fix (2.0.1, same strategy): a new rollout runs
#     through the four batches and completes; every node runs 2.0.1.
# The simulator runs in the background for the whole test and is stopped
# by pid (SIGTERM: it writes its report and exits 0 without errors).
. "$(dirname "$0")/server_common.sh"

export LC_ALL=C # sort, comm and awk compare the 16-hex-digit ranks as bytes
FLEETSIM=$BIN/pkgstore-fleetsim
NODES=2000
STRATEGY=(--batches 20,10%,50%,100% --max-failures 3)
start_server --new-nodes-rate 2000/4000 --max-nodes 10000 --log-level warn
policy() { "$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" "$@"; }
rollout() { policy --json status fleet 2>/dev/null | jq -r "$1"; }
# wait_until SECONDS COMMAND...: poll the event, bounded
wait_until() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -ge "$end" ] && return 1
        sleep 0.2
    done
}
state_is() { [ "$(rollout '"\(.version) \(.state)"')" = "$1" ]; }
metric() { req GET /metrics; echo "$BODY" | awk -v m="$1" '$1 == m {print $2}'; }

# fixed contents: the simulated outcomes hang on the node and the digest,
# so the same nodes fail on every run
yes pkgstore-2.0.0 | head -c 200000 >"$TMP/v2.bin"
yes pkgstore-2.0.1 | head -c 200000 >"$TMP/v21.bin"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name otelcol-contrib \
    --version 2.0.0 --platform any --quiet "$TMP/v2.bin" >/dev/null
ok $? "pushed otelcol-contrib 2.0.0"
"$FLEETSIM" --server "$URL" --token-file "$AGENT_FILE" --nodes $NODES --interval 2 \
    --step-time 0.2 --duration 600 --fail 2.0.0=0.05 --download range \
    --admin-token-file "$ADMIN_FILE" --report "$TMP/report.json" --progress 10 \
    >"$TMP/fleetsim.out" 2>"$TMP/fleetsim.err" &
SIM_PID=$!
EXTRA_PIDS+=("$SIM_PID")
# the rollout starts on the whole fleet: batch 1 is then 20 nodes (a batch
# that starts on a fleet still joining is sized against the nodes there
# are, and admits the later ones whose rank falls under its limit)
registered() { req GET '/v1/agents?limit=1'; [ "$(json .total)" = "$NODES" ]; }
wait_until 120 registered
ok $? "all $NODES simulated nodes registered"
policy set fleet --package otelcol-contrib --version 2.0.0 "${STRATEGY[@]}" >/dev/null
ok $? "policy fleet: 2.0.0 in batches 20, 10%, 50%, 100%, at most 3 failures a batch"


wait_until 300 state_is "2.0.0 paused"
ok $? "the rollout of 2.0.0 pauses itself ($(rollout '"\(.version) \(.state), batch \(.batch)"'))"
policy --json status fleet >"$TMP/paused.json"
P=$TMP/paused.json
is "$(jq -r '"\(.batch) \(.paused_by_threshold)"' "$P")" "2 true" \
    "... in batch 2, by the threshold (batch 1 stayed within it)"
REASON=$(jq -r .reason "$P")
echo "$REASON" | grep -Eq '^batch 2: [0-9]+ of [0-9]+ nodes failed \(3 tolerated\): sim-[0-9]{6} UpgradeFailed'
ok $? "the reason: $REASON"
FAILURES=$(jq -r '[.failures[] | select(.batch == 2) | .node] | join(" ")' "$P")
missing=0
for n in $FAILURES; do
    case $REASON in *"$n UpgradeFailed"*) ;; *) missing=1 ;; esac
done
ok $([ -n "$FAILURES" ] && [ "$missing" = 0 ] && echo 0 || echo 1) \
    "the reason names batch 2's failed nodes of status.failures: $FAILURES"
ok $(jq -r '.failures[] | select(.batch != 2) | .node' "$P" | while read -r n; do
        case $REASON in *"$n "*) echo bad ;; esac; done | grep -q bad && echo 1 || echo 0) \
    "... and no node of another batch"
is "$(metric pkgstored_rollout_auto_pauses_total)" 1 "pkgstored_rollout_auto_pauses_total is 1"
policy --json audit fleet >"$TMP/audit.json"
is "$(jq -r '[.entries[] | select(.action == "auto-pause")] |
            map("\(.who) \(.version) \(.batch) \(.reason == $r)") | join(",")' --arg r "$REASON" \
      "$TMP/audit.json")" "pkgstored 2.0.0 2 true" \
    "the audit log holds one auto-pause by pkgstored, batch 2, with the same reason"
LIMIT1=$(jq -r '.batches[0].rank_below' "$P")
LIMIT2=$(jq -r '.batches[1].rank_below' "$P")
is "$(jq -r '[.batches[] | select(.rank_below)] | length' "$P") ${#LIMIT1} ${#LIMIT2}" "2 16 16" \
    "two batches started, each with its rank_below ($LIMIT1, $LIMIT2)"

# the fix: 2.0.1, with the same strategy; a new rollout from batch 1
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name otelcol-contrib \
    --version 2.0.1 --platform any --quiet "$TMP/v21.bin" >/dev/null
policy set fleet --package otelcol-contrib --version 2.0.1 "${STRATEGY[@]}" >/dev/null
ok $? "the operator pushes 2.0.1 on the policy"
wait_until 400 state_is "2.0.1 done"
ok $? "the rollout of 2.0.1 completes ($(rollout '"\(.version) \(.state), batch \(.batch) of \(.batch_count)"'))"
is "$(rollout '"\(.nodes) \(.batches | map(.failed) | add)"')" "$NODES 0" \
    "... over all $NODES nodes, none failed"

kill -TERM "$SIM_PID"
wait "$SIM_PID"
RC=$?
is "$RC" 0 "pkgstore-fleetsim stopped by pid exits 0 (no error response, no transport error)"
[ "$RC" = 0 ] || sed 's/^/# /' "$TMP/fleetsim.out" "$TMP/fleetsim.err"
R=$TMP/report.json
is "$(jq -r '"\(.summary.stopped_by) \(.summary.errors) \([.nodes[] | select(.registered)] | length)"' "$R")" \
    "signal 0 $NODES" "the report: stopped by the signal, no error, $NODES nodes registered"

# ---- exactly: who was offered 2.0.0, against the ranks (awk compares
# them as strings: ("" $1); 16 hex digits compare as the numbers do)
jq -r '.nodes[].id' "$R" | policy rank fleet >"$TMP/ranks"
is "$(wc -l <"$TMP/ranks")" $NODES "pkgstore-policy rank: one rank per node"
jq -r '.nodes[] | select(any(.offers[]; .version == "2.0.0")) | .id' "$R" | sort >"$TMP/offered"
awk -v l="$LIMIT2" '("" $1) < ("" l) {print $2}' "$TMP/ranks" | sort >"$TMP/admitted"
awk -v l="$LIMIT1" '("" $1) < ("" l) {print $2}' "$TMP/ranks" | sort >"$TMP/batch1"
OFFERED=$(wc -l <"$TMP/offered")
ADMITTED=$(wc -l <"$TMP/admitted")
is "$(comm -23 "$TMP/offered" "$TMP/admitted" | wc -l)" 0 \
    "no node outside the started batches was ever offered 2.0.0 ($OFFERED offered, $ADMITTED admitted, $((NODES - ADMITTED)) outside)"
is "$(wc -l <"$TMP/batch1") $(comm -12 "$TMP/offered" "$TMP/batch1" | wc -l)" "20 20" \
    "the 20 nodes of batch 1 were all offered 2.0.0"
ok $([ "$OFFERED" -gt 20 ] && [ "$((NODES - ADMITTED))" -ge 1700 ] && echo 0 || echo 1) \
    "batch 2 was offered before the pause, and the other batches were not ($OFFERED offered)"
# status.failures: the failed nodes of the started batches, each with its
# batch; the rank must put each in that batch
jq -r '.failures[] | "\(.node) \(.batch)"' "$P" >"$TMP/failures"
inside=1
while read -r n b; do
    lo=0000000000000000 hi=$LIMIT1
    [ "$b" = 2 ] && lo=$LIMIT1 hi=$LIMIT2
    awk -v n="$n" -v lo="$lo" -v hi="$hi" '$2 == n && ("" $1) >= ("" lo) && ("" $1) < ("" hi) {f = 1} END {exit !f}' \
        "$TMP/ranks" || inside=0
    [ "$(jq -r --arg n "$n" '.nodes[] | select(.id == $n) |
            [.offers[] | select(.version == "2.0.0")] | length' "$R")" -ge 1 ] || inside=0
done <"$TMP/failures"
ok $([ "$inside" = 1 ] && echo 0 || echo 1) "each failed node is in the batch status.failures gives it, by its rank, and took 2.0.0 ($(tr '\n' ' ' <"$TMP/failures"))"
is "$(jq "[.nodes[] | select(.final.status == \"UpgradeFailed\")] | length" "$R")" 0 \
    "no node ends failed: the fix reached the nodes 2.0.0 failed on"
is "$(jq -r '[.nodes[] | "\(.final.version) \(.final.status)"] | unique | join(",")' "$R")" \
    "2.0.1 Upgraded" "every node ends Upgraded on 2.0.1"
finish
