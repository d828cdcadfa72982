#!/usr/bin/env bash
# Per-node identity against the real pkgstored: pkgstore-token issue, ls
# and revoke; a revoked credential gets 401 at once; a credential used for
# another node gets 403, counted, with the victim's state unchanged; pinned
# labels win over reported ones in targeting; the shared agent token only
# with --allow-shared-agent-token; token files others can read refuse start.
. "$(dirname "$0")/server_common.sh"

export NO_SHARED_AGENT_TOKEN=1
start_server
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE
TOK() { "$BIN/pkgstore-token" "$@"; }

test -e "$TMP/store.agent-token"
is "$?" "1" "without --allow-shared-agent-token no fleet-wide agent token is created"

# --- issue
TOK issue --node edge-1 --label canary=false --label env=prod --self-label zone \
    --out "$TMP/edge-1.token" >"$TMP/out" 2>"$TMP/err"
is "$?" "0" "issue --node edge-1 --out FILE"
is "$(stat -c %a "$TMP/edge-1.token")" "600" "the token file is written with mode 0600"
E1=$(cat "$TMP/edge-1.token")
case "$E1" in psn_????????????????????????????????????????????????????????????????) r=0 ;; *) r=1 ;; esac
ok "$r" "the token is psn_ and 64 hex digits"
E2=$(TOK issue --node edge-2 --label canary=true 2>"$TMP/err")
is "$?" "0" "issue --node edge-2 prints the token on stdout"
grep -q 'shown once; only its SHA-256 is kept' "$TMP/err"
ok $? "... and says on stderr that it is shown once"
TOK issue --label a=b >/dev/null 2>"$TMP/err"
is "$?" "2" "issue without --node: usage error, exit 2"
TOK issue --node 'bad id!' >/dev/null 2>"$TMP/err"
is "$?|$(cat "$TMP/err")" \
   "1|pkgstore-token: issue: node: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,252} (HTTP 400 INVALID)" \
   "a malformed node id is refused by the server, saying why"
TOK issue --node edge-3 --label 'Bad Key=x' >/dev/null 2>"$TMP/err"
is "$?" "1" "a malformed pinned label is refused"
diag "$(cat "$TMP/err")"

# --- ls, and what is kept
TOK --json ls >"$TMP/ls.json"
is "$(jq -r '[.credentials[].node] | join(",")' "$TMP/ls.json")" "edge-1,edge-2" "ls lists both"
is "$(jq -r '[.credentials[] | has("token") or has("sha256")] | any' "$TMP/ls.json")" "false" \
   "ls shows neither a token nor a hash"
TOK ls >"$TMP/ls.txt"
grep -q '^[0-9a-f]\{16\} *edge-1 .* canary=false,env=prod zone$' "$TMP/ls.txt"
ok $? "ls (text): id, node, pinned labels and the self-reported keys"
CREDS="$TMP/store.node-credentials"
is "$(stat -c %a "$CREDS")" "600" "the credentials file is mode 0600"
grep -qF "$E1" "$CREDS" || grep -qF "$E2" "$CREDS"
is "$?" "1" "the credentials file holds no token"
grep -qF "sha256:$(printf '%s' "$E1" | sha256sum | cut -c1-64)" "$CREDS"
ok $? "it holds the token's SHA-256"
ID1=$(jq -r '.credentials[] | select(.node=="edge-1") | .id' "$TMP/ls.json")

# --- a node credential speaks for its node, with its pinned labels
hb() { # hb TOKEN NODE LABELS-JSON [STATUS]
    local pkg='{"name":"otelcol","type":"primary","version":"1.0.0","state":"Running"}'
    [ -n "${4:-}" ] && pkg='{"name":"otelcol","type":"primary","version":"1.0.0","state":"Running","status":"'$4'","offer_version":"2.0.0","message":"'$4'"}'
    req_as "$1" POST /v1/agents/heartbeat -H 'Content-Type: application/json' \
        -d '{"node_id":"'"$2"'","platform":"linux/amd64","labels":'"$3"',"packages":['"$pkg"']}'
}
hb "$E1" edge-1 '{"canary":"true","zone":"eu","rack":"r9"}'
is "$STATUS" "200" "edge-1 heartbeats with its own credential"
req GET /v1/agents/edge-1
is "$(json '.labels | tojson')" '{"canary":"false","env":"prod","zone":"eu"}' \
   "pinned labels win (canary stays false); zone is allowed; rack is dropped"
req_as "$E1" GET /v1/agents
is "$STATUS" "403" "a node credential may not read the fleet view"
req_as "$E1" POST /v1/credentials -d '{"node":"edge-1","labels":{"canary":"true"}}'
is "$STATUS $(error_code)" "403 DENIED" "a node credential may not issue credentials"
req_as "$E1" GET /v1/credentials
is "$STATUS" "403" "... nor list them"
req_as "" GET /v1/credentials
is "$STATUS" "401" "no token: 401 on the credentials routes"
req POST /v1/credentials -d '{"node":"edge-1","bogus":1}'
is "$STATUS $(error_code)" "400 INVALID" "an unknown member in the issue body: 400"

# targeting: a policy for canary=true offers to edge-2 (pinned true) only
printf 'fake collector 2\n' >"$TMP/otelcol-2"
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.0 --platform linux/amd64 "$TMP/otelcol-2" \
    2>"$TMP/err"
is "$?" "0" "setup: otelcol 2.0.0 pushed"
"$BIN/pkgstore-policy" set canary --package otelcol --version 2.0.0 --selector canary=true >/dev/null
is "$?" "0" "setup: policy canary for canary=true"
hb "$E1" edge-1 '{"canary":"true"}'
is "$STATUS $(json '.offers | length')" "200 0" "edge-1 claiming canary=true gets no offer"
hb "$E2" edge-2 '{"canary":"false"}'
is "$STATUS $(json '[.offers[].version] | join(",")')" "200 2.0.0" \
   "edge-2, pinned canary=true, gets the offer whatever it reports"

# --- impersonation
hb "$E2" edge-2 '{}' Downloading
req GET /v1/agents/edge-2
BEFORE=$(json '{labels, packages, last_status, history} | tojson')
hb "$E1" edge-2 '{"canary":"false"}' UpgradeFailed
is "$STATUS $(error_code)" "403 DENIED" "edge-1's credential heartbeating as edge-2: 403"
grep -q 'this credential speaks for node edge-1 only' "$TMP/body"
ok $? "... saying which node the credential speaks for"
req GET /v1/agents/edge-2
is "$(json '{labels, packages, last_status, history} | tojson')" "$BEFORE" \
   "edge-2's labels, packages, status and history are unchanged"
req GET /metrics
is "$(printf '%s\n' "$BODY" | awk '/^pkgstored_node_mismatch_total /{print $2}')" "1" \
   "the mismatch is counted in /metrics"
printf 'blob\n' >"$TMP/blob"
D=$(sha256 "$TMP/blob")
req POST /v1/blobs --data-binary @"$TMP/blob"
req_as "$E1" GET "/v1/blobs/sha256:$D" -H 'X-Pkgstore-Node: edge-1'
is "$STATUS" "200" "a download as its own node (X-Pkgstore-Node) is allowed"
req_as "$E1" GET "/v1/blobs/sha256:$D" -H 'X-Pkgstore-Node: edge-2'
is "$STATUS $(error_code)" "403 DENIED" "a download naming another node: 403"
req GET /metrics
is "$(printf '%s\n' "$BODY" | awk '/^pkgstored_node_mismatch_total /{print $2}')" "2" \
   "... counted too"

# --- revoke: 401 at once, on the running server
TOK revoke "${ID1:0:6}" >"$TMP/out"
is "$?|$(cat "$TMP/out")" "0|revoked credential $ID1 of node edge-1" "revoke by an id prefix"
hb "$E1" edge-1 '{}'
is "$STATUS $(error_code)" "401 DENIED" "the revoked credential gets 401 from its next request"
hb "$E2" edge-2 '{}'
is "$STATUS" "200" "the other credential still works"
TOK revoke "${ID1:0:6}" 2>"$TMP/err"
is "$?" "1" "revoking it again: not found, exit 1"
diag "$(cat "$TMP/err")"
TOK revoke ab 2>"$TMP/err"
is "$?" "1" "an id shorter than 4 digits matches nothing"

# --- durable: a restart keeps the set
stop_server
start_server
hb "$E2" edge-2 '{}'
is "$STATUS" "200" "after a restart edge-2's credential still works"
hb "$E1" edge-1 '{}'
is "$STATUS" "401" "... and edge-1's is still revoked"

# --- the shared agent token: only with --allow-shared-agent-token
stop_server
printf 'shared-agent-token-0123456789abcdef\n' >"$TMP/store.agent-token"
chmod 600 "$TMP/store.agent-token"
start_server
hb shared-agent-token-0123456789abcdef edge-9 '{}'
is "$STATUS" "401" "a planted agent token is not accepted without the flag"
grep -q 'the fleet-wide agent token is ignored: give each node its own credential' "$TMP/server.log"
ok $? "... and the server says it ignores it, and why"
stop_server
NO_SHARED_AGENT_TOKEN=0 start_server
hb shared-agent-token-0123456789abcdef edge-9 '{"canary":"true"}'
is "$STATUS" "200" "with --allow-shared-agent-token it speaks for any node"
grep -q 'allow-shared-agent-token: any holder of the agent token may speak for any node' \
    "$TMP/server.log"
ok $? "... and the server warns what that gives away"
stop_server

# --- token files must be private
start_fails() { # start_fails EXTRA-ARGS...: exit status and stderr of a start that must fail
    timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 "$@" 2>"$TMP/err"
    echo "$?|$(cat "$TMP/err")"
}
chmod 644 "$ADMIN_FILE"
is "$(start_fails)" \
   "1|pkgstored: tokens: $ADMIN_FILE: mode 644 lets other users read or change the tokens; chmod 600 it" \
   "an admin token file readable by others refuses start, saying why"
chmod 600 "$ADMIN_FILE"
chmod 640 "$CREDS"
is "$(start_fails)" \
   "1|pkgstored: tokens: $CREDS: mode 640 lets other users read or change the tokens; chmod 600 it" \
   "a credentials file readable by the group refuses start"
chmod 600 "$CREDS"
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$ADMIN_FILE"
    is "$(start_fails)" \
       "1|pkgstored: tokens: $ADMIN_FILE: owned by uid 65534, not by pkgstored's user (uid 0); chown it to that user" \
       "an admin token file owned by another user refuses start"
    chown 0 "$ADMIN_FILE"
else
    echo "ok $((TEST_NUMBER += 1)) # skip needs root to chown"
fi
start_server
req GET /v1/credentials
is "$STATUS $(json '.credentials | length')" "200 1" "with the modes fixed it starts again"
stop_server
finish
