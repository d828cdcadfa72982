#!/usr/bin/env bash
# The node credentials file (<store>.node-credentials) as a journal: an
# issue or a revoke appends one fsynced line instead of rewriting the set,
# so a fleet of 100,000 nodes can be enrolled one by one; restarts replay
# it; a file of the earlier format (one JSON document) is read and
# rewritten as a journal; a last line cut short by a crash is dropped with
# a warning, one that lost only its newline is kept; a damaged line in
# the middle stops pkgstored at start, naming
# the line; the journal is compacted once it outgrows the set.
. "$(dirname "$0")/server_common.sh"

CREDS="$TMP/store.node-credentials"
issue() { # issue NODE: prints the token
    req POST /v1/credentials -d "{\"node\":\"$1\"}"
    json .token
}
heartbeat_as() { # heartbeat_as TOKEN NODE: the status
    req_as "$1" POST /v1/agents/heartbeat -d "{\"node_id\":\"$2\",\"platform\":\"linux/amd64\",\"packages\":[]}"
    echo "$STATUS"
}
count() { req GET /v1/credentials; json '.credentials | length'; }

start_server
T1=$(issue edge-1); T2=$(issue edge-2); T3=$(issue edge-3)
req GET /v1/credentials
ID2=$(json '.credentials[] | select(.node == "edge-2") | .id')
req DELETE "/v1/credentials/$ID2"
is "$(head -n 1 "$CREDS")" '{"version":2}' "the file is a version 2 journal"
is "$(wc -l < "$CREDS")" 5 "three issues and a revoke: one line each after the header"
is "$(tail -n 1 "$CREDS" | jq -r 'keys | join(",")')" "revoke" "the revoke is the last line"
is "$(jq -s '[.[] | select(.issue) | .issue | has("token")] | any' "$CREDS")" false \
   "no line holds a token (only its SHA-256)"
is "$(stat -c %a "$CREDS")" 600 "the file stays private"

stop_server; start_server
is "$(count)" 2 "after a restart the journal replays to the same set"
is "$(heartbeat_as "$T1" edge-1) $(heartbeat_as "$T2" edge-2) $(heartbeat_as "$T3" edge-3)" \
   "200 401 200" "issued tokens work, the revoked one does not"

# --- a last line torn by a crash in the middle of an append
stop_server
printf '{"issue":{"id":"00' >> "$CREDS"
start_server
grep -q 'msg="node credentials: the last line was cut short' "$TMP/server.log"
ok $? "a torn last line: pkgstored starts and warns"
is "$(count) $(wc -l < "$CREDS")" "2 3" "the torn line is dropped: the file is written whole again"
T4=$(issue edge-4)
is "$(heartbeat_as "$T4" edge-4) $(tail -n 1 "$CREDS" | jq -r .issue.node)" "200 edge-4" \
   "the next issue appends a whole line after it"

# --- a whole last line that lost its newline (a crash between the two)
stop_server
truncate -s -1 "$CREDS"
start_server
T5=$(issue edge-5)
stop_server; start_server
is "$(count) $(heartbeat_as "$T4" edge-4) $(heartbeat_as "$T5" edge-5)" "4 200 200" \
   "a last line without its newline is kept, and the next issue does not join it"

# --- a damaged line in the middle refuses the start, naming it
stop_server
cp "$CREDS" "$TMP/good-creds"
sed -i '2s/.*/{"issue":{"node":"edge-1"}}/' "$CREDS"
timeout 30 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 2>"$TMP/err"
rc=$?
grep -q "node-credentials: line 2: node, sha256 or created missing or malformed" "$TMP/err"
ok $(( rc != 0 ? $? : 1 )) "a damaged line in the middle stops pkgstored at start, naming line 2"
sed -i '3s/.*/not json/' "$TMP/good-creds" && cp "$TMP/good-creds" "$CREDS"
timeout 30 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 2>"$TMP/err"
rc=$?
grep -q "node-credentials: line 3: " "$TMP/err"
ok $(( rc != 0 ? $? : 1 )) "a line that is not JSON stops it too"

# --- the format of earlier servers: one JSON document, read and converted
TOKEN=psn_$(printf 'e%.0s' $(seq 64))
H=$(printf '%s' "$TOKEN" | sha256sum | cut -c1-64)
cat > "$CREDS" <<JSON
{
 "version": 1,
 "credentials": [
  {"id": "${H:0:16}", "node": "old-1", "created": "2026-12-01T10:00:00Z",
   "labels": {"ring": "canary"}, "self_labels": [], "sha256": "sha256:$H"}
 ]
}
JSON
chmod 600 "$CREDS"
start_server
is "$(count) $(heartbeat_as "$TOKEN" old-1)" "1 200" "a version 1 file is read: its credential works"
is "$(head -n 1 "$CREDS") $(wc -l < "$CREDS")" '{"version":2} 2' "... and the file is now a journal"
req GET /v1/agents/old-1
is "$(json .labels.ring)" canary "... with its pinned labels"

# --- compaction: 600 issue-and-revoke pairs leave a short file
cfg=$TMP/curl.cfg
for i in $(seq 1 600); do
    printf 'url = "%s/v1/credentials"\ndata = "{\\"node\\":\\"churn-%s\\"}"\nheader = "Authorization: Bearer %s"\noutput = "%s/churn-%s.json"\nsilent\nnext\n' \
        "$URL" "$i" "$ADMIN" "$TMP" "$i"
done > "$cfg"
printf 'url = "%s/healthz"\noutput = /dev/null\nsilent\n' "$URL" >> "$cfg"
curl -K "$cfg"
for i in $(seq 1 600); do
    printf 'url = "%s/v1/credentials/%s"\nrequest = DELETE\nheader = "Authorization: Bearer %s"\noutput = /dev/null\nsilent\nnext\n' \
        "$URL" "$(jq -r .id "$TMP/churn-$i.json")" "$ADMIN"
done > "$cfg"
printf 'url = "%s/healthz"\noutput = /dev/null\nsilent\n' "$URL" >> "$cfg"
curl -K "$cfg"
is "$(count)" 1 "600 issued and revoked: one credential left"
lines=$(wc -l < "$CREDS")
ok $(( lines < 1100 ? 0 : 1 )) "the journal was compacted ($lines lines for 1,200 changes)"
stop_server; start_server
is "$(count) $(heartbeat_as "$TOKEN" old-1)" "1 200" "the compacted file replays to the same set"
stop_server
finish
