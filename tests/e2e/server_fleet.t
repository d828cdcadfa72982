#!/usr/bin/env bash
# The fleet stays bounded whatever agents send (issue #9, "Unbounded fleet
# state" and "Silent loss of node records"):
#   - a flood of node ids stops at --max-nodes (503 + Retry-After), known
#     nodes keep their heartbeats, and the server's memory stays small;
#   - every listing is paged: no response grows with the fleet, and the
#     pages cover every node exactly once;
#   - new node ids are rate-limited per token (429 + Retry-After);
#   - history is capped per node; silent nodes expire;
#   - a full disk under --fleet-dir is reported (log, /metrics, /healthz
#     degraded) and retried, and nothing is lost once there is room again.
. "$(dirname "$0")/server_common.sh"

# hb_config FIRST LAST TOKEN FILE: a curl config that posts one heartbeat
# per node id edge-FIRST..edge-LAST on one keep-alive connection.
hb_config() {
    local first=$1 last=$2 token=$3 file=$4 n
    : >"$file"
    for n in $(seq "$first" "$last"); do
        printf 'url = "%s/v1/agents/heartbeat"\nheader = "Authorization: Bearer %s"\ndata = "{\\"node_id\\":\\"edge-%05d\\",\\"labels\\":{\\"ring\\":\\"r%d\\"},\\"platform\\":\\"linux/amd64\\",\\"packages\\":[{\\"name\\":\\"otelcol-contrib\\",\\"type\\":\\"primary\\",\\"version\\":\\"0.97.0\\",\\"status\\":\\"Downloading\\"}]}"\nwrite-out = "%%{http_code}\\n"\noutput = "/dev/null"\nnext\n' \
            "$URL" "$token" "$n" $((n % 7)) >>"$file"
    done
    sed -i '$d' "$file" # no "next" after the last request
}

# ---- a flood of node ids against --max-nodes
start_server --max-nodes 3000 --new-nodes-rate 0 --history-max 4
hb_config 1 6000 "$AGENT" "$TMP/flood.cfg"
curl -s -K "$TMP/flood.cfg" >"$TMP/flood.codes"
is "$(grep -c '^200$' "$TMP/flood.codes") $(grep -c '^503$' "$TMP/flood.codes")" "3000 3000" \
    "6000 new node ids: 3000 are taken (--max-nodes 3000), 3000 get 503"
req_as "$AGENT" POST /v1/agents/heartbeat -D "$TMP/headers" \
    -d '{"node_id":"edge-09999","platform":"linux/amd64"}'
is "$STATUS $(error_code)" "503 LIMIT" "a new node past the cap: 503 LIMIT"
grep -qi '^Retry-After: [0-9]' "$TMP/headers"
ok $? "... with a Retry-After"
json .error.message | grep -q 'the fleet is full'
ok $? "... and a message that says why: $(json .error.message)"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-00042","platform":"linux/amd64"}'
is "$STATUS" "200" "a known node still heartbeats with the fleet full"
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
# AddressSanitizer (make asan) keeps freed memory in quarantine and adds
# shadow memory: a sanitized server gets a larger, still bounded, budget.
RSS_MAX_MB=100
readelf -d "$BIN/pkgstored" | grep -qE 'NEEDED.*libasan' && RSS_MAX_MB=512
ok $([ "$RSS_KB" -lt $((RSS_MAX_MB * 1024)) ] && echo 0 || echo 1) \
    "the server holds 3000 nodes in $((RSS_KB / 1024)) MB RSS (under $RSS_MAX_MB MB; 6000 ids once cost 505 MB)"
req GET /metrics
echo "$BODY" | grep -q '^pkgstored_nodes_known 3000$'
ok $? "/metrics: pkgstored_nodes_known 3000"
echo "$BODY" | grep -q '^pkgstored_nodes_refused_total{reason="max_nodes"} 3001$'
ok $? "/metrics counts the refused ids"

# ---- paging: bounded responses that cover the fleet once
req GET "/v1/agents?history=1"
SIZE=${#BODY}
is "$STATUS $(json '.nodes | length') $(json .total)" "200 100 3000" \
    "GET /v1/agents?history=1: one page of 100 of 3000 nodes"
ok $([ "$SIZE" -lt 200000 ] && echo 0 || echo 1) "the page is $SIZE bytes, not the fleet's size"
: >"$TMP/ids"
AFTER=
PAGES=0
while :; do
    req GET "/v1/agents?limit=1000${AFTER:+&after=$AFTER}"
    [ "$STATUS" = 200 ] || break
    json '.nodes[].id' >>"$TMP/ids"
    PAGES=$((PAGES + 1))
    AFTER=$(json '.next // empty')
    [ -n "$AFTER" ] && [ "$PAGES" -lt 10 ] || break
done
is "$PAGES $(wc -l <"$TMP/ids") $(sort -u "$TMP/ids" | wc -l)" "3 3000 3000" \
    "three pages of 1000 list every node exactly once"
cmp -s "$TMP/ids" <(sort "$TMP/ids")
ok $? "pages are in id order"
req GET "/v1/agents?limit=5000"
is "$STATUS $(error_code)" "400 INVALID" "a limit over 1000 is refused"
req GET "/v1/agents?selector=ring%3Dr3&limit=1000"
is "$STATUS $(json .total) $(json '[.nodes[].labels.ring] | unique | join(",")')" "200 429 r3" \
    "a selector filters the listing"
req GET "/v1/policies?nodes=1"
is "$STATUS $(error_code)" "400 INVALID" "GET /v1/policies?nodes=1 is refused (pages are per policy)"
req GET /v1/agents/edge-00042
is "$(json '.history | length')" "1" "setup: one status in a node's history"
for s in Verifying Validating Swapping Monitoring Upgraded UpgradeFailed; do
    req_as "$AGENT" POST /v1/agents/heartbeat -d "{\"node_id\":\"edge-00042\",\"platform\":\"linux/amd64\",\"packages\":[{\"name\":\"otelcol-contrib\",\"version\":\"0.97.0\",\"status\":\"$s\"}]}"
done
req GET /v1/agents/edge-00042
is "$(json '[.history[].status] | join(",")')" "Swapping,Monitoring,Upgraded,UpgradeFailed" \
    "--history-max 4 keeps the last four statuses"
stop_server
is "$STOP_STATUS" "0" "the flooded server stops cleanly"

# ---- new node ids per token
rm -rf "$TMP/store" "$TMP/store.fleet" "$TMP"/store.*-token
start_server --new-nodes-rate 2/5
hb_config 1 20 "$AGENT" "$TMP/rate.cfg"
curl -s -K "$TMP/rate.cfg" >"$TMP/rate.codes"
TAKEN=$(grep -c '^200$' "$TMP/rate.codes")
ok $([ "$TAKEN" -ge 5 ] && [ "$TAKEN" -lt 20 ] && [ "$(grep -c '^429$' "$TMP/rate.codes")" = $((20 - TAKEN)) ] && echo 0 || echo 1) \
    "20 new ids at once with --new-nodes-rate 2/5: the burst is taken, the rest get 429 ($TAKEN taken)"
req_as "$AGENT" POST /v1/agents/heartbeat -D "$TMP/headers" \
    -d '{"node_id":"rate-x","platform":"linux/amd64"}'
is "$STATUS $(error_code)" "429 LIMIT" "another new id from the same token: 429"
grep -qi '^Retry-After: [0-9]' "$TMP/headers"
ok $? "... with a Retry-After"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-00001","platform":"linux/amd64"}'
is "$STATUS" "200" "a known node is never throttled"
req_as "$ADMIN" POST /v1/agents/heartbeat -d '{"node_id":"admin-made","platform":"linux/amd64"}'
is "$STATUS" "200" "another token has its own budget"
stop_server

# ---- expiry of silent nodes
start_server --node-expiry 2
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"fades","platform":"linux/amd64"}'
is "$STATUS" "200" "setup: a node that goes silent"
for _ in $(seq 1 300); do
    req GET /v1/agents/fades
    [ "$STATUS" = 404 ] && break
    sleep 0.1
done
is "$STATUS" "404" "a node silent past --node-expiry is forgotten"
req GET /metrics
echo "$BODY" | grep -Eq '^pkgstored_nodes_expired_total [1-9]'
ok $? "/metrics counts expired nodes"
stop_server
start_server --node-expiry 2
req GET /v1/agents/fades
is "$STATUS" "404" "... and does not come back with a restart"
stop_server

# ---- a full disk under the fleet directory
MNT="$TMP/fleetfs"
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=4m tmpfs "$MNT" 2>"$TMP/mount.err"; then
    ok 1 "mount a 4 MB tmpfs for --fleet-dir (needs root: $(cat "$TMP/mount.err"))"
    finish
fi
cleanup_mount() { umount "$MNT" 2>/dev/null; cleanup; }
trap cleanup_mount EXIT
start_server --fleet-dir "$MNT/fleet"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"before-full","platform":"linux/amd64"}'
is "$STATUS" "200" "setup: a node while there is room"
for _ in $(seq 1 100); do # the flusher writes it within its 1 s period
    req GET /metrics
    echo "$BODY" | grep -q '^pkgstored_nodes_unsaved 0$' && break
    sleep 0.1
done
dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null
hb_config 1 200 "$AGENT" "$TMP/full.cfg"
curl -s -K "$TMP/full.cfg" >"$TMP/full.codes"
is "$(grep -c '^200$' "$TMP/full.codes")" "200" "heartbeats are answered while the disk is full"
for _ in $(seq 1 100); do
    req GET /healthz
    [ "$(json .status)" = degraded ] && break
    sleep 0.1
done
is "$STATUS $(json .status)" "200 degraded" "/healthz says degraded"
json '.problems[0].detail' | grep -qi 'space'
ok $? "... and why: $(json '.problems[0].detail')"
req_as "" GET "/healthz?strict=1"
is "$STATUS" "503" "/healthz?strict=1 answers 503 while degraded"
req GET /metrics
echo "$BODY" | grep -q '^pkgstored_fleet_degraded 1$' &&
    echo "$BODY" | grep -Eq '^pkgstored_fleet_flush_failures_total [1-9]' &&
    echo "$BODY" | grep -Eq '^pkgstored_nodes_unsaved [1-9]'
ok $? "/metrics: degraded, failed flushes and unsaved nodes"
grep -q 'msg="fleet: cannot write node records; retrying"' "$TMP/server.log"
ok $? "the failure is logged"
rm -f "$MNT/filler"
for _ in $(seq 1 100); do
    req GET /healthz
    [ "$(json .status)" = ok ] && break
    sleep 0.1
done
is "$(json .status)" "ok" "with room again the retry succeeds and /healthz is ok"
grep -q 'msg="fleet: node records written again"' "$TMP/server.log"
ok $? "the recovery is logged"
stop_server
is "$STOP_STATUS" "0" "a clean stop"
start_server --fleet-dir "$MNT/fleet"
req GET "/v1/agents?limit=1000"
is "$(json .total)" "201" "after a restart every node is there: nothing was lost"
stop_server
finish
