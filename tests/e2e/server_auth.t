#!/usr/bin/env bash
# Every authentication case: no token 401, unknown token 401, agent token on
# an admin route 403, the roles of a --tokens file.
. "$(dirname "$0")/server_common.sh"

start_server
printf 'blob\n' >"$TMP/blob"
D=$(sha256 "$TMP/blob")
req POST /v1/blobs --data-binary @"$TMP/blob"
is "$STATUS" "201" "setup: a blob"

# Every route but /healthz, without a token: 401 with WWW-Authenticate.
while read -r method path; do
    STATUS=$(curl -s -D "$TMP/h" -o "$TMP/body" -w '%{http_code}' -X "$method" "$URL$path")
    BODY=$(cat "$TMP/body")
    is "$STATUS $(error_code)" "401 DENIED" "no token: $method $path"
done <<LIST
GET /metrics
POST /v1/blobs
PUT /v1/blobs/sha256:$D
GET /v1/blobs/sha256:$D
GET /v1/packages
GET /v1/packages/x
GET /v1/packages/x/1.0.0
PUT /v1/packages/x/1.0.0
DELETE /v1/packages/x/1.0.0
GET /v1/policies
GET /v1/policies/p
PUT /v1/policies/p
DELETE /v1/policies/p
POST /v1/agents/heartbeat
GET /v1/agents
GET /v1/agents/n
LIST
grep -qi '^www-authenticate: Bearer' "$TMP/h"
ok $? "401 carries WWW-Authenticate: Bearer"

req_as "0123456789abcdef0123456789abcdef" GET /v1/packages
is "$STATUS $(error_code)" "401 DENIED" "an unknown token: 401"
req_as "${ADMIN}x" GET /v1/packages
is "$STATUS" "401" "the admin token with one more character: 401"
req_as "${ADMIN%?}" GET /v1/packages
is "$STATUS" "401" "the admin token missing its last character: 401"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Basic $ADMIN" "$URL/v1/packages")
is "$STATUS" "401" "another scheme (Basic): 401"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: bearer $ADMIN" "$URL/v1/packages")
is "$STATUS" "200" "the scheme name is case-insensitive"

# The agent token: heartbeat and download only.
while read -r method path; do
    req_as "$AGENT" "$method" "$path" -d '{}'
    is "$STATUS $(error_code)" "403 DENIED" "agent token on an admin route: $method $path"
done <<LIST
GET /metrics
POST /v1/blobs
PUT /v1/blobs/sha256:$D
GET /v1/packages
GET /v1/packages/x
GET /v1/packages/x/1.0.0
PUT /v1/packages/x/1.0.0
DELETE /v1/packages/x/1.0.0
GET /v1/policies
GET /v1/policies/p
PUT /v1/policies/p
DELETE /v1/policies/p
GET /v1/agents
GET /v1/agents/n
LIST
req_as "$AGENT" GET "/v1/blobs/sha256:$D"
is "$STATUS" "200" "agent token may download"
req_as "$AGENT" HEAD "/v1/blobs/sha256:$D" -I
is "$STATUS" "200" "agent token may HEAD a blob"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"n1","platform":"linux/amd64"}'
is "$STATUS" "200" "agent token may heartbeat"
req GET /v1/agents/n1
is "$STATUS $(json .id)" "200 n1" "admin token may do anything"
stop_server

# A --tokens file with the three roles.
MT=metrics-token-0123456789abcdef
umask 022
cat >"$TMP/tokens" <<TOKENS
# role token
admin admin-token-0123456789abcdef
agent agent-token-0123456789abcdef
agent agent2-token-0123456789abcdef
metrics $MT
TOKENS
timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tokens "$TMP/tokens" \
    --allow-shared-agent-token 2>"$TMP/err"
is "$?|$(cat "$TMP/err")" \
   "1|pkgstored: tokens: $TMP/tokens: mode 644 lets other users read or change the tokens; chmod 600 it" \
   "a tokens file readable by others (mode 644) is refused at start, saying why"
chmod 600 "$TMP/tokens"
timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 \
    --tokens "$TMP/tokens" 2>"$TMP/err"
is "$?" "1" "agent lines in --tokens without --allow-shared-agent-token: refused at start"
grep -q 'agent line(s): the fleet-wide agent token lets its holder speak for any node' "$TMP/err"
ok $? "... saying what the shared agent token gives away"
diag "$(cat "$TMP/err")"
start_server --tokens "$TMP/tokens"
req_as admin-token-0123456789abcdef GET /v1/packages
is "$STATUS" "200" "--tokens: admin role"
req_as agent2-token-0123456789abcdef GET "/v1/blobs/sha256:$D"
is "$STATUS" "200" "--tokens: a second agent token"
req_as "$MT" GET /metrics
is "$STATUS" "200" "--tokens: the metrics role may scrape /metrics"
req_as "$MT" GET "/v1/blobs/sha256:$D"
is "$STATUS" "403" "--tokens: the metrics role may not download"
req_as "$ADMIN" GET /v1/packages
is "$STATUS" "401" "--tokens replaces the default token files"
# pkgstored and the tools read token files with one parser
# (common/tokenfile.c); a long comment line stays one comment line.
printf 'admin admin-token-0123456789abcdef\n' >"$TMP/client-token"
STATUS=$(PKGSTORE_TOKEN_FILE="$TMP/client-token" "$BIN/pkgstore-policy" --server "$URL" ls \
    >/dev/null 2>"$TMP/err"; echo $?)
is "$STATUS" "0" "a tool reads the 'ROLE TOKEN' form of a token file"
stop_server

# A comment line longer than the old 1 KiB line buffer: its tail used to be
# read as an entry of its own ("admin TOKEN" here), in pkgstored and the tools.
LONG_COMMENT="# $(head -c 1021 /dev/zero | tr '\0' c) admin comment-tail-token-0123456789"
printf '%s\nadmin admin-token-0123456789abcdef\n' "$LONG_COMMENT" >"$TMP/long-tokens"
chmod 600 "$TMP/long-tokens"
start_server --tokens "$TMP/long-tokens"
req_as comment-tail-token-0123456789 GET /v1/packages
is "$STATUS" "401" "the tail of a long comment line is no token"
req_as admin-token-0123456789abcdef GET /v1/packages
is "$STATUS" "200" "the entry after the long comment line is read"
STATUS=$(PKGSTORE_TOKEN_FILE="$TMP/long-tokens" "$BIN/pkgstore-policy" --server "$URL" ls \
    >/dev/null 2>"$TMP/err"; echo $?)
is "$STATUS" "0" "a tool skips the long comment line too and presents the admin token"
diag "$(cat "$TMP/err")"
stop_server
printf 'admin admin-token-0123456789abcdef extra-word\n' >"$TMP/bad-tokens"
chmod 600 "$TMP/bad-tokens"
timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tokens "$TMP/bad-tokens" 2>"$TMP/err"
is "$?|$(cat "$TMP/err")" \
   "1|pkgstored: tokens: $TMP/bad-tokens:1: more than two words (expected TOKEN or ROLE TOKEN)" \
   "a line with a third word is refused at start, naming the line"

printf 'root not-a-role-token-0123456789\n' >"$TMP/bad-tokens"
chmod 600 "$TMP/bad-tokens"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tokens "$TMP/bad-tokens" 2>"$TMP/err"
is "$?" "1" "a tokens file with an unknown role is refused at start"
diag "$(cat "$TMP/err")"
printf 'admin short\n' >"$TMP/bad-tokens"
chmod 600 "$TMP/bad-tokens"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tokens "$TMP/bad-tokens" 2>"$TMP/err"
is "$?" "1" "a token shorter than 16 characters is refused at start"
"$BIN/pkgstored" --bogus 2>"$TMP/err"
is "$?|$(cat "$TMP/err")" "2|pkgstored: --bogus: unknown option
Try 'pkgstored --help' for more information." "an unknown option: exit 2, one line (not getopt's argv[0] message)"
"$BIN/pkgstored" --listen 127.0.0.1:0 --store 2>"$TMP/err"
is "$?|$(head -1 "$TMP/err")|$(wc -l <"$TMP/err")" "2|pkgstored: --store: needs a value|2" \
    "an option without its value: exit 2, says it needs a value"
"$BIN/pkgstored" --store "$TMP/store" extra 2>"$TMP/err"
is "$?|$(head -1 "$TMP/err")|$(wc -l <"$TMP/err")" "2|pkgstored: extra: unexpected argument|2" \
    "an unexpected argument: exit 2, one line and the --help pointer"
is "$("$BIN/pkgstored" --version)" "pkgstored (pkgstore) $(sed -n 's/^VERSION *:= *//p' "$SRC/Makefile")" \
    "--version prints like the other tools"
finish
