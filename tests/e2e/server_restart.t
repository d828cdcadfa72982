#!/usr/bin/env bash
# A restart keeps every package, policy and node; SIGTERM lets a request in
# flight finish before the store is closed.
. "$(dirname "$0")/server_common.sh"

start_server
head -c 50000 /dev/urandom >"$TMP/bin"
D=$(sha256 "$TMP/bin")
req PUT "/v1/packages/otelcol-contrib/0.98.0?platform=linux/amd64" --data-binary @"$TMP/bin"
is "$STATUS" "201" "setup: a package"
req PUT /v1/policies/canary -d '{"selector":"canary=true","package":"otelcol-contrib","version":"0.98.0","priority":3}'
is "$STATUS" "200" "setup: a policy"
for n in 1 2 3; do
    req_as "$AGENT" POST /v1/agents/heartbeat -d "{\"node_id\":\"edge-$n\",\"labels\":{\"canary\":\"true\"},\"platform\":\"linux/amd64\",\"packages\":[{\"name\":\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.97.0\",\"digest\":\"sha256:$(printf '%064d' $n)\",\"status\":\"Downloading\"}]}"
done
is "$STATUS" "200" "setup: three nodes"
req GET /v1/agents/edge-2
HISTORY_BEFORE=$(json '.history | length')
ADMIN_BEFORE=$ADMIN

# SIGTERM while an upload is in flight: it completes, then the server exits.
# The client sends half its body, then waits on a fifo that is written only
# after SIGTERM, so the upload is in flight at the signal by construction.
mkfifo "$TMP/second-half"
( head -c 1000000 /dev/urandom; cat "$TMP/second-half" ) | tee "$TMP/slow" |
    curl -s -o "$TMP/slow.body" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -X POST -T - \
        "$URL/v1/blobs" >"$TMP/slow.status" &
CURL_PID=$!
EXTRA_PIDS+=($CURL_PID)
# wait for the event: the upload is in flight (it and this scrape)
for _ in $(seq 1 200); do
    req GET /metrics
    echo "$BODY" | grep -q '^pkgstored_requests_in_flight 2$' && break
    sleep 0.05
done
echo "$BODY" | grep -q '^pkgstored_requests_in_flight 2$'
ok $? "setup: an upload is in flight"
kill -TERM "$SERVER_PID"
for _ in $(seq 1 200); do # the signal is taken: the server logs it
    grep -q 'msg="shutting down"' "$TMP/server.log" && break
    sleep 0.05
done
head -c 1000000 /dev/urandom >"$TMP/second-half"
stop_server
wait "$CURL_PID"
is "$(cat "$TMP/slow.status") $(jq -r .digest "$TMP/slow.body")" "201 sha256:$(sha256 "$TMP/slow")" \
   "an upload in flight at SIGTERM completes"
is "$STOP_STATUS" "0" "then the server exits 0"
grep -q 'msg="shutting down"' "$TMP/server.log" && grep -q 'msg=stopped' "$TMP/server.log"
ok $? "the shutdown is logged"

start_server
is "$ADMIN" "$ADMIN_BEFORE" "the restarted server keeps its tokens"
req GET /v1/packages/otelcol-contrib/0.98.0
is "$STATUS $(json '.artifacts[0].digest')" "200 sha256:$D" "the package survives the restart"
req GET /v1/policies/canary
is "$STATUS $(json .selector) $(json .priority)" "200 canary=true 3" "the policy survives the restart"
req GET /v1/agents
is "$STATUS $(json '[.nodes[].id] | join(",")')" "200 edge-1,edge-2,edge-3" "the nodes survive the restart"
req GET /v1/agents/edge-2
is "$(json .labels.canary) $(json '.history | length')" "true $HISTORY_BEFORE" "a node keeps its labels and history"
req GET "/v1/blobs/sha256:$(sha256 "$TMP/slow")"
is "$STATUS" "200" "the blob uploaded during shutdown is there"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-1","labels":{"canary":"true"},"platform":"linux/amd64"}'
is "$STATUS $(json '.offers[0].digest')" "200 sha256:$D" "offers still work after the restart"
stop_server
is "$STOP_STATUS" "0" "SIGTERM again: clean exit"

# SIGINT too
start_server
kill -INT "$SERVER_PID"
wait "$SERVER_PID"
is "$?" "0" "SIGINT stops the server cleanly"
SERVER_PID=
finish
