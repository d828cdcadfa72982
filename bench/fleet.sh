#!/usr/bin/env bash
# bench/fleet.sh - pkgstored under a simulated fleet (issue 13, section 4).
#
# Starts pkgstored on a free 127.0.0.1 port and pkgstore-fleetsim with
# FLEET_NODES nodes (default 10,000; FLEET_NODES=100000 for the issue's
# target) heartbeating every FLEET_INTERVAL seconds on average (30), for
# FLEET_DURATION seconds (default 150). The nodes join spread over one
# interval. From FLEET_ROLLOUT_AT seconds (default: the interval plus 5 s,
# once every node has joined) policy 'fleet' rolls 2.0.0 out with
# pkgstored's own staged rollout: batches FLEET_BATCHES (default
# 1%,5%,25%,100%), FLEET_MAX_FAILURES failures tolerated per batch
# (default 1%), and FLEET_POLICY_ARGS added to `pkgstore-policy set` (e.g.
# "--soak 10 --max-parallel 500"). Each node offered the version goes
# through the upgrade steps, each a heartbeat (a Range probe of the blob,
# FLEET_DOWNLOAD=range).
#
# The brake: FLEET_FAIL=P (default 0.03) of the nodes after the first
# batch fail (pkgstore-fleetsim --fail 2.0.0=P --healthy-first fleet=N,
# N the first batch's size): batch 1 is healthy, batch 2 crosses the
# threshold, and the rollout must pause itself within one heartbeat
# interval of the failing report that crossed it. That latency is
# measured on the simulator's clock, conservatively: from when the node
# sent the report (the (tolerated+1)-th failure of batch 2, by final.t in
# its --report) to the first second in which the simulator's watch of GET
# /v1/policies (every second) showed the rollout paused. And exactly: no
# node outside the started batches was ever offered 2.0.0 (every node's
# offers in the report, against `pkgstore-policy rank fleet` and the
# started batches' rank_below after the run). FLEET_FAIL=0: no brake, the
# rollout runs on.
#
# Prints heartbeat p50/p99/max, req/s, error responses, pkgstored's RSS
# and RSS per node, its CPU, the brake's latency and the exact check,
# against the issue's targets: heartbeat p99
# under 50 ms, no error responses, RSS at most 256 MB at 100k nodes
# (checked from 100k nodes on, pro rata; the growth per node, the issue's
# aim of 512 bytes, is printed), the pause within one interval, no offer
# outside the started batches. Exit 1 when a target is missed.
#
# pkgstored's fleet limits are set for the simulated fleet, not lifted:
# --max-nodes is FLEET_NODES plus 10% (at least the default 200,000), and
# --new-nodes-rate lets the whole fleet join within one interval (twice
# the mean rate, burst a tenth of the fleet): a refused new node (429 or
# 503) is an error response of the run. FLEET_ROLLOUT_AT past
# FLEET_DURATION measures heartbeats alone. Both processes run at BENCH_NICE
# (default 10) on the same machine: the simulator's own CPU is reported
# too. Everything started here is stopped by pid. FLEET_KEEP=1 keeps the
# work directory (the store, the fleet's LMDB, the report) for a look.
set -u
export LC_ALL=C # sort, join, comm and awk compare the 16-hex-digit ranks as bytes

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
NODES=${FLEET_NODES:-10000}
INTERVAL=${FLEET_INTERVAL:-30}
DURATION=${FLEET_DURATION:-150}
ROLLOUT_AT=${FLEET_ROLLOUT_AT:-$((INTERVAL + 5))}
BATCHES=${FLEET_BATCHES:-1%,5%,25%,100%}
MAX_FAILURES=${FLEET_MAX_FAILURES:-1%}
DOWNLOAD=${FLEET_DOWNLOAD:-range}
FAIL=${FLEET_FAIL:-0.03}
CONNECTIONS=${FLEET_CONNECTIONS:-16}
NICE="nice -n ${BENCH_NICE:-10}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-fleet.XXXXXX")
. "$SRC/bench/lib.sh"

cleanup() {
    stop_started
    if [ "${FLEET_KEEP:-0}" = 1 ]; then
        echo "bench/fleet.sh: kept $WORK (the store, store.fleet, report.json)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
die() { echo "bench/fleet.sh: $*" >&2; exit 2; }

command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
[ -x "$BIN/pkgstored" ] && [ -x "$BIN/pkgstore-fleetsim" ] || die "$BIN: not built (run make)"

MAX_NODES=$((NODES + NODES / 10))
[ "$MAX_NODES" -lt 200000 ] && MAX_NODES=200000
RATE=$(((NODES * 2 + INTERVAL - 1) / INTERVAL))
BURST=$((NODES / 10 > 2000 ? NODES / 10 : 2000))
SERVER_ARGS=(--max-nodes "$MAX_NODES" --new-nodes-rate "$RATE/$BURST"
             --heartbeat-interval "$INTERVAL")

start_pkgstored "$WORK/store" --log-level warn "${SERVER_ARGS[@]}"
SERVER_PID=$PKGSTORED_PID

head -c 65536 /dev/urandom >"$WORK/v2.bin"
"$BIN/pkgstore-push" --server "$URL" --token-file "$WORK/store.admin-token" \
    --name otelcol-contrib --version 2.0.0 --platform any --quiet "$WORK/v2.bin" >/dev/null ||
    die "push failed"

# the first batch's size on the whole fleet (pkgstore_rollout_batch_size():
# a percentage rounded up)
FIRST=${BATCHES%%,*}
case $FIRST in
*%) FIRST_N=$(awk -v n="$NODES" -v p="${FIRST%\%}" 'BEGIN {x = n * p / 100; printf "%d", (x == int(x)) ? x : int(x) + 1}') ;;
*) FIRST_N=$FIRST ;;
esac
echo "bench/fleet.sh: $NODES nodes, heartbeat every ${INTERVAL} s (+-10%), ${DURATION} s;" \
     "rollout of 2.0.0 in batches $BATCHES (max failures $MAX_FAILURES) from ${ROLLOUT_AT} s"
echo "pkgstored ${SERVER_ARGS[*]}"
FAIL_ARGS=()
[ "$FAIL" != 0 ] && FAIL_ARGS=(--fail "2.0.0=$FAIL" --healthy-first "fleet=$FIRST_N") &&
    echo "brake: $FAIL of the nodes after the first $FIRST_N (batch 1) fail"
$NICE "$BIN/pkgstore-fleetsim" --server "$URL" --token-file "$WORK/store.agent-token" \
    --nodes "$NODES" --interval "$INTERVAL" --duration "$DURATION" --download "$DOWNLOAD" \
    --step-time 1 --connections "$CONNECTIONS" --server-pid "$SERVER_PID" "${FAIL_ARGS[@]}" \
    --admin-token-file "$WORK/store.admin-token" --watch-every 1 \
    --label env=prod:70,staging:20,dev:10 --label region=eu-west:40,us-east:40,ap-south:20 \
    --label canary=true:5,false:95 --progress 10 --report "$WORK/report.json" \
    >"$WORK/summary.txt" &
SIM_PID=$!
PIDS+=("$SIM_PID")
STARTED=$SECONDS
while [ $((SECONDS - STARTED)) -lt "$ROLLOUT_AT" ] && kill -0 "$SIM_PID" 2>/dev/null; do
    sleep 1
done
if kill -0 "$SIM_PID" 2>/dev/null; then
    # shellcheck disable=SC2086 # FLEET_POLICY_ARGS is words
    "$BIN/pkgstore-policy" --server "$URL" --token-file "$WORK/store.admin-token" set fleet \
        --package otelcol-contrib --version 2.0.0 --batches "$BATCHES" \
        --max-failures "$MAX_FAILURES" ${FLEET_POLICY_ARGS:-} >/dev/null || die "policy failed"
    echo "bench/fleet.sh: policy 'fleet' rolls 2.0.0 out from $((SECONDS - STARTED)) s"
fi
wait "$SIM_PID"
SIM_RC=$?
[ -s "$WORK/report.json" ] || die "pkgstore-fleetsim failed (exit $SIM_RC)"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
# the fleet's write-behind: did it keep up with the nodes?
METRICS=$(curl -s -H "Authorization: Bearer $(cat "$WORK/store.admin-token")" "$URL/metrics")
metric() { echo "$METRICS" | awk -v m="$1" '$1 == m {print $2}'; }

R=$WORK/report.json
s() { jq -r "$1" "$R"; }
# what the RSS is made of: the heap (anonymous) and mapped files, among
# them the fleet's LMDB map (file pages: the page cache's, reclaimable)
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; }
ANON_KB=$(kb RssAnon); FILE_KB=$(kb RssFile)
FLEET_MAP_KB=$(awk '/ [^ ]*store\.fleet\/data\.mdb$/ {m = 1; next} /^[0-9a-f]+-[0-9a-f]+ / {m = 0}
                    m && $1 == "Rss:" {t += $2} END {print t + 0}' "/proc/$SERVER_PID/smaps")
FLEET_DB_KB=$(( $(stat -c %s "$WORK/store.fleet/data.mdb" 2>/dev/null || echo 0) / 1024 ))
# the rollout as the server holds it after the run: limits only grow, so
# these are the widest the run ever had
curl -s -H "Authorization: Bearer $(cat "$WORK/store.admin-token")" \
    "$URL/v1/policies/fleet?nodes=0" | jq .status.rollout >"$WORK/rollout.json"
ro() { jq -r "$1" "$WORK/rollout.json"; }
# exactly: every node offered 2.0.0 has a rank below a started batch's limit
jq -r '.nodes[].id' "$R" | "$BIN/pkgstore-policy" rank fleet >"$WORK/ranks"
jq -r '.nodes[] | select(any(.offers[]; .version == "2.0.0")) | .id' "$R" | sort >"$WORK/offered"
LIMIT=$(ro '[.batches[] | .rank_below // empty] | last // "0000000000000000"')
if [ "$LIMIT" = all ]; then cp "$WORK/ranks" "$WORK/admitted.ranks"
else awk -v l="$LIMIT" '("" $1) < ("" l)' "$WORK/ranks" >"$WORK/admitted.ranks"; fi
awk '{print $2}' "$WORK/admitted.ranks" | sort >"$WORK/admitted"
OFFERED=$(wc -l <"$WORK/offered")
ADMITTED=$(wc -l <"$WORK/admitted")
OUTSIDE=$(comm -23 "$WORK/offered" "$WORK/admitted" | wc -l)
# the brake: the first view of the run in which the rollout was paused
PAUSE_T=$(s '[.timeline[] | select(.policies.fleet.status.rollout.state == "paused")] | first | .t // empty')
PAUSED_VIEW=$(s '[.timeline[] | select(.policies.fleet.status.rollout.state == "paused")] | first |
                 .policies.fleet.status.rollout // empty')
CROSS_T=
if [ -n "$PAUSED_VIEW" ]; then
    PBATCH=$(echo "$PAUSED_VIEW" | jq -r .batch)
    TOLERATED=$(echo "$PAUSED_VIEW" | jq -r ".batches[$((PBATCH - 1))].failures_tolerated")
    LO=$(echo "$PAUSED_VIEW" | jq -r "if $PBATCH > 1 then .batches[$((PBATCH - 2))].rank_below else \"0000000000000000\" end")
    HI=$(echo "$PAUSED_VIEW" | jq -r ".batches[$((PBATCH - 1))].rank_below")
    # the failures of the paused batch (by rank), in the order they were reported
    s '.nodes[] | select(.final.status == "UpgradeFailed" or .final.status == "RolledBack") |
       select(.final.offer_version == "2.0.0") | "\(.id) \(.final.t)"' | sort >"$WORK/failed"
    awk -v lo="$LO" -v hi="$HI" '("" $1) >= ("" lo) && (hi == "all" || ("" $1) < ("" hi)) {print $2}' "$WORK/ranks" |
        sort | join - "$WORK/failed" | sort -g -k2 >"$WORK/batch_failed"
    CROSS_T=$(awk -v k=$((TOLERATED + 1)) 'NR == k {print $2}' "$WORK/batch_failed")
    CROSS_NODE=$(awk -v k=$((TOLERATED + 1)) 'NR == k {print $1}' "$WORK/batch_failed")
fi
HB='.summary.routes["POST /v1/agents/heartbeat"]'
P50=$(s "$HB.p50_ms"); P99=$(s "$HB.p99_ms"); MAX=$(s "$HB.max_ms")
RPS=$(s .summary.req_per_s)
ERRORS=$(s .summary.errors)
RSS=$(s .summary.server.rss_mb); PEAK=$(s .summary.server.rss_peak_mb)
PER_NODE=$(s .summary.server.rss_bytes_per_node)
CPU=$(s .summary.server.cpu_percent)
REG=$(s .summary.nodes_registered)
echo
printf 'heartbeats          p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%s requests)\n' \
    "$P50" "$P99" "$MAX" "$(s "$HB.requests")"
printf 'all routes          %.0f req/s over %.0f s\n' "$RPS" "$(s .summary.elapsed_s)"
printf 'errors              %s (responses: %s)\n' "$ERRORS" "$(s '.summary.responses | to_entries | map("\(.key)=\(.value)") | join(" ")')"
printf 'pkgstored RSS       %.1f MB (peak %.1f MB; %.1f MB before the nodes) for %s nodes: %.0f bytes per node\n' \
    "$RSS" "$PEAK" "$(s .summary.server.rss_start_mb)" "$REG" "$PER_NODE"
printf '  of which          heap (RssAnon) %.1f MB, mapped files (RssFile) %.1f MB: the fleet LMDB map %.1f MB (data.mdb %.1f MB)\n' \
    "$(awk -v k="$ANON_KB" 'BEGIN {print k / 1024}')" "$(awk -v k="$FILE_KB" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$FLEET_MAP_KB" 'BEGIN {print k / 1024}')" "$(awk -v k="$FLEET_DB_KB" 'BEGIN {print k / 1024}')"
printf 'pkgstored CPU       %.0f%% of one core (%.1f s)\n' "$CPU" "$(s .summary.server.cpu_s)"
printf 'simulator CPU       %.1f s; start lag p99 %.1f ms, max %.1f ms\n' "$(s .summary.simulator.cpu_s)" \
    "$(s .summary.simulator.lag_p99_ms)" "$(s .summary.simulator.lag_max_ms)"
printf 'rollout at the end  %s, batch %s of %s: %s\n' "$(ro .state)" "$(ro .batch)" "$(ro .batch_count)" \
    "$(ro '[.batches[] | select(.nodes) | "b\(.batch) \(.nodes) nodes \(.done) done \(.failed) failed"] | join("; ")')"
printf 'nodes offered 2.0.0 %s; admitted by the started batches %s (rank below %s); outside them %s\n' \
    "$OFFERED" "$ADMITTED" "$LIMIT" "$OUTSIDE"
if [ -n "$CROSS_T" ]; then
    BRAKE=$(awk -v p="$PAUSE_T" -v c="$CROSS_T" 'BEGIN {printf "%.1f", p - c}')
    printf 'brake               batch %s: %s failures tolerated; failure number %d (%s) reported at t=%s s;\n' \
        "$PBATCH" "$TOLERATED" $((TOLERATED + 1)) "$CROSS_NODE" "$CROSS_T"
    printf '                    paused seen at t=%s s: %s s later (%s of its failures reported by the end)\n' \
        "$PAUSE_T" "$BRAKE" "$(wc -l <"$WORK/batch_failed")"
    printf '                    reason: %.200s\n' "$(echo "$PAUSED_VIEW" | jq -r .reason)"
fi
printf 'fleet write-behind  %s nodes unsaved at the end, %s failed rounds, degraded %s\n' \
    "$(metric pkgstored_nodes_unsaved)" "$(metric pkgstored_fleet_flush_failures_total)" \
    "$(metric pkgstored_fleet_degraded)"
printf 'machine             %s cores, load average %s at the end\n' "$(nproc)" "$LOAD"

FAILED=0
check() { # check OK DESCRIPTION
    if [ "$1" = 1 ]; then echo "  met:    $2"; else echo "  MISSED: $2"; FAILED=1; fi
}
echo "targets (issue 13):"
check "$(awk -v p="$P99" 'BEGIN {print (p < 50)}')" "heartbeat p99 under 50 ms ($P99 ms)"
check "$([ "$ERRORS" = 0 ] && echo 1 || echo 0)" "no error responses ($ERRORS)"
check "$([ "$REG" = "$NODES" ] && echo 1 || echo 0)" "every node registered ($REG of $NODES)"
check "$([ "$OUTSIDE" = 0 ] && [ "$OFFERED" -gt 0 ] && echo 1 || echo 0)" \
    "no node outside the started batches was offered 2.0.0 ($OUTSIDE of $OFFERED offered)"
if [ "$FAIL" != 0 ]; then
    check "$([ -n "$CROSS_T" ] && echo 1 || echo 0)" "the rollout paused itself on its failures"
    [ -n "$CROSS_T" ] &&
        check "$(awk -v b="$BRAKE" -v i="$INTERVAL" 'BEGIN {print (b <= i)}')" \
            "paused within one heartbeat interval of the crossing failure ($BRAKE s <= $INTERVAL s)"
fi
if [ "$NODES" -ge 100000 ]; then
    check "$(awk -v r="$RSS" -v n="$NODES" 'BEGIN {print (r <= 256 * n / 100000)}')" \
        "RSS at most 256 MB per 100k nodes ($RSS MB for $NODES)"
else
    echo "  (RSS: checked from 100,000 nodes on; below, fixed costs dominate the growth per node)"
fi
LAG=$(s .summary.simulator.lag_p99_ms)
if awk -v l="$LAG" 'BEGIN {exit !(l >= 1000)}'; then
    # the latencies are still the server's, for the load it was given
    echo "  note:   the simulator fell behind its schedule (start lag p99 $LAG ms): it offered"
    echo "          less load than planned; the figures hold for the load it did offer (the"
    echo "          simulator and pkgstored share this machine: see their CPU and the load)"
fi
exit $FAILED
