#!/usr/bin/env bash
# bench/fleet.sh - pkgstored under a simulated fleet (issue 13, section 4).
#
# Starts pkgstored on a free 127.0.0.1 port and pkgstore-fleetsim with
# FLEET_NODES nodes (default 10,000; FLEET_NODES=100000 for the issue's
# target) heartbeating every FLEET_INTERVAL seconds on average (30), for
# FLEET_DURATION seconds (default 150). The nodes join spread over one
# interval. Then a 4-batch rollout of a new version runs across them: each
# node carries a label batch=b1..b4 (1%, 4%, 20%, 75% of the fleet), and
# from FLEET_ROLLOUT_AT seconds (default: the interval plus 5 s, once every
# node has joined) the policy's selector widens by one batch every
# FLEET_BATCH_EVERY seconds (default half an interval): batch in (b1),
# then (b1,b2), ..., so that 1%, 5%, 25% and 100% of the fleet are
# targeted, as the server's own batches will do it. Each node offered the
# version goes through the upgrade steps, each a heartbeat (a Range probe
# of the blob, FLEET_DOWNLOAD=range; FLEET_FAIL=P fails that share of
# them). FLEET_POLICY_ARGS adds arguments to `pkgstore-policy set` (a
# rollout strategy, once the server has one).
#
# Prints heartbeat p50/p99/max, req/s, error responses, pkgstored's RSS
# and RSS per node, its CPU, against the issue's targets: heartbeat p99
# under 50 ms, no error responses, RSS at most 256 MB at 100k nodes
# (checked from 100k nodes on, pro rata; the growth per node, the issue's
# aim of 512 bytes, is printed). Exit 1 when a target is missed.
#
# pkgstored's fleet limits are set for the simulated fleet, not lifted:
# --max-nodes is FLEET_NODES plus 10% (at least the default 200,000), and
# --new-nodes-rate lets the whole fleet join within one interval (twice
# the mean rate, burst a tenth of the fleet): a refused new node (429 or
# 503) is an error response of the run. FLEET_ROLLOUT_AT past
# FLEET_DURATION measures heartbeats alone. Both processes run at BENCH_NICE
# (default 10) on the same machine: the simulator's own CPU is reported
# too. Everything started here is stopped by pid.
set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
NODES=${FLEET_NODES:-10000}
INTERVAL=${FLEET_INTERVAL:-30}
DURATION=${FLEET_DURATION:-150}
ROLLOUT_AT=${FLEET_ROLLOUT_AT:-$((INTERVAL + 5))}
BATCH_EVERY=${FLEET_BATCH_EVERY:-$((INTERVAL / 2))}
DOWNLOAD=${FLEET_DOWNLOAD:-range}
FAIL=${FLEET_FAIL:-0}
CONNECTIONS=${FLEET_CONNECTIONS:-16}
NICE="nice -n ${BENCH_NICE:-10}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-fleet.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
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

$NICE "$BIN/pkgstored" --store "$WORK/store" --listen 127.0.0.1:0 --port-file "$WORK/port" \
    --no-fsync --log-level warn --allow-shared-agent-token "${SERVER_ARGS[@]}" \
    2>>"$WORK/pkgstored.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 200); do [ -s "$WORK/port" ] && break; sleep 0.05; done
[ -s "$WORK/port" ] || die "pkgstored did not start: $(cat "$WORK/pkgstored.log")"
URL=http://127.0.0.1:$(cat "$WORK/port")

head -c 65536 /dev/urandom >"$WORK/v2.bin"
"$BIN/pkgstore-push" --server "$URL" --token-file "$WORK/store.admin-token" \
    --name otelcol-contrib --version 2.0.0 --platform any --quiet "$WORK/v2.bin" >/dev/null ||
    die "push failed"

echo "bench/fleet.sh: $NODES nodes, heartbeat every ${INTERVAL} s (+-10%), ${DURATION} s;" \
     "rollout of 2.0.0 in 4 batches (1%, 5%, 25%, 100%) from ${ROLLOUT_AT} s, every ${BATCH_EVERY} s"
echo "pkgstored ${SERVER_ARGS[*]}"
FAIL_ARGS=()
[ "$FAIL" != 0 ] && FAIL_ARGS=(--fail "2.0.0=$FAIL")
$NICE "$BIN/pkgstore-fleetsim" --server "$URL" --token-file "$WORK/store.agent-token" \
    --nodes "$NODES" --interval "$INTERVAL" --duration "$DURATION" --download "$DOWNLOAD" \
    --step-time 1 --connections "$CONNECTIONS" --server-pid "$SERVER_PID" "${FAIL_ARGS[@]}" \
    --label env=prod:70,staging:20,dev:10 --label region=eu-west:40,us-east:40,ap-south:20 \
    --label canary=true:5,false:95 --label batch=b1:1,b2:4,b3:20,b4:75 \
    --progress 10 --json >"$WORK/result.json" &
SIM_PID=$!
PIDS+=("$SIM_PID")
# until_second T: sleep until T seconds into the run, or until the
# simulator has ended (returns 1 then)
STARTED=$SECONDS
until_second() {
    while [ $((SECONDS - STARTED)) -lt "$1" ]; do
        kill -0 "$SIM_PID" 2>/dev/null || return 1
        sleep 1
    done
    kill -0 "$SIM_PID" 2>/dev/null
}
AT=$ROLLOUT_AT
BATCHES=
for b in b1 b2 b3 b4; do
    until_second "$AT" || break
    AT=$((AT + BATCH_EVERY))
    BATCHES=${BATCHES:+$BATCHES,}$b
    "$BIN/pkgstore-policy" --server "$URL" --token-file "$WORK/store.admin-token" set fleet \
        --package otelcol-contrib --version 2.0.0 --selector "batch in ($BATCHES)" \
        ${FLEET_POLICY_ARGS:-} >/dev/null || die "policy failed"
    echo "bench/fleet.sh: policy 'fleet' now targets batch in ($BATCHES)"
done
wait "$SIM_PID"
SIM_RC=$?
[ -s "$WORK/result.json" ] || die "pkgstore-fleetsim failed (exit $SIM_RC)"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
# the fleet's write-behind: did it keep up with the nodes?
METRICS=$(curl -s -H "Authorization: Bearer $(cat "$WORK/store.admin-token")" "$URL/metrics")
metric() { echo "$METRICS" | awk -v m="$1" '$1 == m {print $2}'; }

R=$WORK/result.json
s() { jq -r "$1" "$R"; }
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
printf 'pkgstored CPU       %.0f%% of one core (%.1f s)\n' "$CPU" "$(s .summary.server.cpu_s)"
printf 'simulator CPU       %.1f s; start lag p99 %.1f ms, max %.1f ms\n' "$(s .summary.simulator.cpu_s)" \
    "$(s .summary.simulator.lag_p99_ms)" "$(s .summary.simulator.lag_max_ms)"
printf 'rollout at the end  %s\n' "$(s '.summary.final | tostring')"
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
