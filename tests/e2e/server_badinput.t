#!/usr/bin/env bash
# Bad input gets the right 4xx with a JSON error body, and the server keeps
# serving: malformed JSON, oversized headers and bodies, invalid digests and
# names in paths (.., %2e%2e, NUL), unknown routes, wrong methods.
. "$(dirname "$0")/server_common.sh"

start_server --max-upload 1M --max-json 64K
H=(-H "Authorization: Bearer $ADMIN")

json_error() { # json_error DESCRIPTION EXPECTED-STATUS EXPECTED-CODE
    is "$STATUS $(error_code)" "$2 $3" "$1"
}

# --- malformed JSON
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id": "n1", '
json_error "heartbeat: truncated JSON" 400 INVALID
req_as "$AGENT" POST /v1/agents/heartbeat -d '[1,2]'
json_error "heartbeat: JSON that is not an object" 400 INVALID
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"platform":"linux/amd64"}'
json_error "heartbeat: node_id missing" 400 INVALID
diag "$(json .error.message)"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"../etc","platform":"linux/amd64"}'
json_error "heartbeat: a node id with a path in it" 400 INVALID
req_as "$AGENT" POST /v1/agents/heartbeat
json_error "heartbeat: no body" 400 INVALID
# the optional "trust" (docs/api.md): each bad member is named
HB='{"node_id":"n1","platform":"linux/amd64","trust":'
req_as "$AGENT" POST /v1/agents/heartbeat -d "$HB"'[1]}'
json_error "heartbeat: trust not an object" 400 INVALID
req_as "$AGENT" POST /v1/agents/heartbeat -d "$HB"'{"root_version":"1","revocations":0}}'
is "$STATUS $(json .error.message)" "400 heartbeat: trust.root_version: not a positive integer" \
    "heartbeat: trust.root_version of the wrong type, named"
req_as "$AGENT" POST /v1/agents/heartbeat -d "$HB"'{"root_version":1,"revocations":-2}}'
json_error "heartbeat: a negative trust.revocations" 400 INVALID
req_as "$AGENT" POST /v1/agents/heartbeat -d "$HB"'{"root_version":1,"revocations":0,"newest_signed":"2026-13-01T00:00:00Z"}}'
is "$STATUS $(json .error.message)" \
    "400 heartbeat: trust.newest_signed: not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)" \
    "heartbeat: trust.newest_signed not a time, named"
req "GET" "/v1/agents?trust=stale"
json_error "agents: an unknown trust filter" 400 INVALID
req PUT /v1/policies/p -d '{"selector": '
json_error "policy: malformed JSON" 400 INVALID
req PUT /v1/policies/p -d '{"selector":"a=b","package":1}'
json_error "policy: a field of the wrong type" 400 INVALID
printf '\xff\xfe' >"$TMP/notutf8"
req PUT /v1/policies/p --data-binary @"$TMP/notutf8"
json_error "policy: not UTF-8" 400 INVALID

# --- oversized headers and bodies
OKH=$(head -c 7000 /dev/zero | tr '\0' a)
req GET /v1/packages -H "X-Fine: $OKH"
is "$STATUS" "200" "a 7 KB header block (under --max-header 8K) is served"
BIGH=$(head -c 11000 /dev/zero | tr '\0' a)
req GET /v1/packages -H "X-Big: $BIGH"
json_error "an 11 KB header block: 431 with a JSON body" 431 LIMIT
{ printf 'X-Huge: '; head -c 200000 /dev/zero | tr '\0' a; echo; } >"$TMP/huge-header"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" -H @"$TMP/huge-header" "$URL/v1/packages")
is "$STATUS" "431" "a 200 KB header block: 431 (from libmicrohttpd, past its buffer)"
head -c 2000000 /dev/zero >"$TMP/2m"
req POST /v1/blobs --data-binary @"$TMP/2m"
json_error "Content-Length over --max-upload: 413" 413 LIMIT
req PUT /v1/packages/p/1.0.0?platform=linux/amd64 --data-binary @"$TMP/2m"
json_error "a package upload over --max-upload: 413" 413 LIMIT
failed_uploads() {
    curl -s "${H[@]}" "$URL/metrics" | sed -n 's/^pkgstored_uploads_total{result="failed"} //p'
}
FAILED_BEFORE=$(failed_uploads)
STATUS=$(head -c 2000000 /dev/zero | curl -s -o "$TMP/body" -w '%{http_code}' "${H[@]}" -X POST -T - "$URL/v1/blobs")
BODY=$(cat "$TMP/body")
json_error "a chunked body that grows over --max-upload: 413" 413 LIMIT
is "$(failed_uploads)" "$((FAILED_BEFORE + 1))" "the upload stopped at the limit counts as a failed upload"
head -c 100000 /dev/zero | tr '\0' ' ' >"$TMP/bigjson"
req_as "$AGENT" POST /v1/agents/heartbeat --data-binary @"$TMP/bigjson"
json_error "a JSON body over --max-json: 413" 413 LIMIT
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -H "Authorization: Bearer $AGENT" -X POST -T - \
    "$URL/v1/agents/heartbeat" <"$TMP/bigjson")
BODY=$(cat "$TMP/body")
json_error "a chunked JSON body that grows over --max-json: 413" 413 LIMIT
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' "${H[@]}" -X POST -H 'Content-Length: 12abc' "$URL/v1/blobs")
ok "$([ "$STATUS" = 400 ] || [ "$STATUS" = 413 ]; echo $?)" "a malformed Content-Length: 4xx ($STATUS)"
ls "$TMP/store/tmp" | wc -l >"$TMP/n"
is "$(cat "$TMP/n")" "0" "refused uploads left nothing in tmp/"

# --- digests in paths
for bad in sha256:xyz sha256:$(printf '%064d' 0 | tr 0 A) md5:d41d8cd98f00b204e9800998ecf8427e \
           sha256:$(printf '%063d' 0) sha256 "sha256:%00$(printf '%062d' 0)"; do
    req GET "/v1/blobs/$bad"
    json_error "invalid digest in the path: $bad" 400 INVALID
done
req PUT "/v1/blobs/sha256:abc" --data-binary x
json_error "PUT with an invalid digest" 400 INVALID

# --- names and traversal
for path in "/v1/packages/%2e%2e/1.0.0" "/v1/packages/%2E%2E" "/v1/blobs/.." \
            "/v1/packages/a%00b" "/v1/packages/a%2fb/1.0.0" "/v1/policies/%2e%2e" \
            "/v1/agents/%2e%2e" "/v1/packages/x/%zz"; do
    STATUS=$(curl -s --path-as-is -o "$TMP/body" -w '%{http_code}' "${H[@]}" "$URL$path")
    BODY=$(cat "$TMP/body")
    json_error "refused path $path" 400 INVALID
done
STATUS=$(curl -s --path-as-is -o "$TMP/body" -w '%{http_code}' "${H[@]}" "$URL/v1/packages/../../etc/passwd")
BODY=$(cat "$TMP/body")
json_error "a raw ../ in the path" 400 INVALID
req PUT "/v1/packages/Bad_Name/1.0.0?platform=linux/amd64" --data-binary x
json_error "PUT of an invalid package name" 400 INVALID
req PUT "/v1/packages/good/not.a.version?platform=linux/amd64" --data-binary x
json_error "PUT of an invalid version" 400 INVALID
req PUT "/v1/packages/good/1.0.0" --data-binary x
json_error "PUT without a platform" 400 INVALID
req PUT "/v1/packages/good/1.0.0?platform=plan9" --data-binary x
json_error "PUT with an invalid platform" 400 INVALID
req PUT "/v1/packages/good/1.0.0?platform=linux/amd64&type=sidecar" --data-binary x
json_error "PUT with an invalid type" 400 INVALID
req PUT "/v1/packages/good/1.0.0?platform=linux/amd64&format=rar" --data-binary x
json_error "PUT with an invalid format" 400 INVALID
req PUT "/v1/packages/good/1.0.0?platform=linux/amd64&entrypoint=a%00b" --data-binary x
json_error "PUT with a NUL in the entrypoint" 400 INVALID
req PUT "/v1/packages/good/1.0.0?platform=linux/amd64&format=tar&entrypoint=../../bin/sh" --data-binary x
json_error "PUT with an entrypoint that leaves the archive" 400 INVALID
req PUT /v1/policies/Bad%20Name -d '{"package":"x","version":"1.0.0"}'
json_error "PUT of an invalid policy name" 400 INVALID
req GET /v1/policies/UPPER
json_error "GET of an invalid policy name" 400 INVALID
req GET /v1/agents/a%20b
json_error "GET of an invalid node id" 400 INVALID
req GET /v1/agents/%ff%fe
json_error "GET of a node id that is not UTF-8" 400 INVALID
req GET /v1/packages/%ff
is "$STATUS $(error_code) $(printf '%s' "$BODY" | jq -e . >/dev/null; echo $?)" "400 INVALID 0" \
   "an error quoting bytes that are not UTF-8 is still valid JSON"
req GET /v1/packages
is "$STATUS $(json '.packages | length')" "200 0" "nothing was stored by the refused uploads"

# --- unknown routes and wrong methods
# (GET / redirects to the console, /ui/: server_console.t)
for path in /v2/packages /ui/a/b /v1 /v1/blobs/a/b /v1/nothing /v1/packages/a/b/c /healthz/x /v1/packages/; do
    req GET "$path"
    json_error "unknown route $path: 404" 404 NOTFOUND
done
while read -r method path allow; do
    STATUS=$(curl -s -D "$TMP/h" -o "$TMP/body" -w '%{http_code}' "${H[@]}" -X "$method" "$URL$path")
    BODY=$(cat "$TMP/body")
    json_error "wrong method $method $path: 405" 405 UNSUPPORTED
    grep -qi "^allow: $allow" "$TMP/h"
    ok $? "405 lists the allowed methods ($allow)"
    grep -qi '^cache-control: no-store' "$TMP/h"
    ok $? "405 is a JSON error like the others (Cache-Control: no-store)"
done <<LIST
DELETE /v1/blobs/sha256:$(printf '%064d' 0) GET, HEAD, PUT
GET /v1/blobs POST
POST /v1/packages GET, HEAD
PATCH /v1/policies/p GET, HEAD, PUT, DELETE
GET /v1/agents/heartbeat POST
POST /healthz GET, HEAD
LIST

# --- still serving
req_as "" GET /healthz
is "$STATUS" "200" "the server is still serving"
server_alive
ok $? "the server process is alive"
finish
