#!/usr/bin/env bash
# Every pkgstored route end to end with curl, and the operator tools.
. "$(dirname "$0")/server_common.sh"

start_server
ok $? "pkgstored starts on 127.0.0.1:$PORT"
ok "$([ -n "$ADMIN" ] && [ -n "$AGENT" ]; echo $?)" "first start created an admin and an agent token"
is "$(stat -c %a "$ADMIN_FILE")/$(stat -c %a "$AGENT_FILE")" "600/600" "token files have mode 0600"

# --- health and metrics
req_as "" GET /healthz
is "$STATUS $(json .status)" "200 ok" "GET /healthz needs no token"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/healthz")
is "$STATUS" "200" "HEAD /healthz"

# --- blobs
printf 'hello pkgstore\n' >"$TMP/small"
D=$(sha256 "$TMP/small")
req POST /v1/blobs --data-binary @"$TMP/small"
is "$STATUS $(json .digest) $(json .size)" "201 sha256:$D 15" "POST /v1/blobs returns digest and size"
req PUT "/v1/blobs/sha256:$D" --data-binary @"$TMP/small"
is "$STATUS $(json .digest)" "201 sha256:$D" "PUT /v1/blobs/sha256:HEX with the right bytes"
req PUT "/v1/blobs/sha256:$(printf other | sha256sum | cut -c1-64)" --data-binary @"$TMP/small"
is "$STATUS $(error_code)" "400 DIGEST_MISMATCH" "PUT with bytes of another digest: 400 DIGEST_MISMATCH"

curl -s -D "$TMP/h" -o "$TMP/got" -H "Authorization: Bearer $AGENT" "$URL/v1/blobs/sha256:$D"
cmp -s "$TMP/got" "$TMP/small"
ok $? "GET /v1/blobs/sha256:HEX with the agent token returns the bytes"
grep -qi "^etag: \"sha256:$D\"" "$TMP/h"
ok $? "ETag is the digest"
grep -qi '^cache-control: public, max-age=31536000, immutable' "$TMP/h"
ok $? "Cache-Control immutable"
B64=$(printf '%s' "$D" | xxd -r -p | base64)
grep -qi "^repr-digest: sha-256=:$B64:" "$TMP/h"
ok $? "Repr-Digest carries the base64 SHA-256"
STATUS=$(curl -s -o "$TMP/got" -w '%{http_code} %{size_download}' -I -H "Authorization: Bearer $AGENT" "$URL/v1/blobs/sha256:$D")
is "$STATUS" "200 0" "HEAD /v1/blobs/sha256:HEX sends no body"
grep -qi '^content-length: 15' "$TMP/got"
ok $? "HEAD reports Content-Length"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AGENT" -H "If-None-Match: \"sha256:$D\"" "$URL/v1/blobs/sha256:$D")
is "$STATUS" "304" "If-None-Match with the ETag: 304"
req GET "/v1/blobs/sha256:$(printf missing | sha256sum | cut -c1-64)"
is "$STATUS $(error_code)" "404 NOTFOUND" "GET of an unknown blob: 404"

# --- packages
head -c 300000 /dev/urandom >"$TMP/otelcol-amd64"
head -c 200000 /dev/urandom >"$TMP/otelcol-arm64"
head -c 100000 /dev/urandom >"$TMP/otelcol-old"
DA=$(sha256 "$TMP/otelcol-amd64")
DR=$(sha256 "$TMP/otelcol-arm64")
DO=$(sha256 "$TMP/otelcol-old")
req PUT "/v1/packages/otelcol-contrib/0.98.0?platform=linux/amd64&type=primary&format=binary&entrypoint=otelcol-contrib" --data-binary @"$TMP/otelcol-amd64"
is "$STATUS $(json .name) $(json .version) $(json '.artifacts[0].digest')" \
   "201 otelcol-contrib 0.98.0 sha256:$DA" "PUT /v1/packages/NAME/VERSION stores the artifact and returns the manifest"
req PUT "/v1/packages/otelcol-contrib/0.98.0?platform=linux/aarch64&type=primary" --data-binary @"$TMP/otelcol-arm64"
is "$STATUS $(json '.artifacts | length')" "201 2" "a second platform joins the same manifest"
is "$(json '[.artifacts[].platform] | sort | join(",")')" "linux/amd64,linux/arm64" "platform aliases are normalized"
req PUT "/v1/packages/otelcol-contrib/0.97.0?platform=linux/amd64" --data-binary @"$TMP/otelcol-old"
is "$STATUS" "201" "PUT an older version"
req PUT "/v1/packages/collector-helper/1.0.0?platform=any&type=addon&format=binary" --data-binary @"$TMP/small"
is "$STATUS $(json .type)" "201 addon" "PUT an addon package"

req GET /v1/packages
is "$STATUS $(json '[.packages[] | .name + "@" + (.versions | join("/"))] | join(" ")')" \
   "200 collector-helper@1.0.0 otelcol-contrib@0.97.0/0.98.0" "GET /v1/packages lists names with their versions"
req GET /v1/packages/otelcol-contrib
is "$STATUS $(json '.versions | join(",")')" "200 0.97.0,0.98.0" "GET /v1/packages/NAME lists its versions"
curl -s -D "$TMP/h" -o "$TMP/manifest" -H "Authorization: Bearer $ADMIN" "$URL/v1/packages/otelcol-contrib/0.98.0"
is "$(jq -r .schemaVersion "$TMP/manifest") $(jq -r .type "$TMP/manifest")" "1 primary" "GET /v1/packages/NAME/VERSION returns the manifest"
MD=$(sha256 "$TMP/manifest")
grep -qi "^x-pkgstore-manifest-digest: sha256:$MD" "$TMP/h"
ok $? "the manifest digest header is the SHA-256 of the canonical body"
req GET /v1/packages/nope
is "$STATUS $(error_code)" "404 NOTFOUND" "GET of an unknown package: 404"
req GET /v1/packages/otelcol-contrib/9.9.9
is "$STATUS $(error_code)" "404 NOTFOUND" "GET of an unknown version: 404"

# --- policies
req PUT /v1/policies/canary -H 'Content-Type: application/json' \
    -d '{"selector":"env=dev,canary=true","package":"otelcol-contrib","version":"0.98.0","type":"primary","priority":10}'
is "$STATUS $(json .name) $(json .version)" "200 canary 0.98.0" "PUT /v1/policies/NAME"
req PUT /v1/policies/helpers -d '{"selector":"","package":"collector-helper","version":"1.0.0","type":"addon"}'
is "$STATUS" "200" "PUT an addon policy"
req PUT /v1/policies/bad -d '{"selector":"env=dev","package":"otelcol-contrib","version":"0.99.0"}'
is "$STATUS $(error_code)" "404 NOTFOUND" "a policy for an unknown version: 404 with the reason"
diag "$(json .error.message)"
req PUT /v1/policies/bad -d '{"selector":"env in (","package":"otelcol-contrib","version":"0.98.0"}'
is "$STATUS $(error_code)" "400 INVALID" "a policy with a bad selector: 400"
diag "$(json .error.message)"
req GET /v1/policies
is "$STATUS $(json '[.policies[].name] | join(",")')" "200 canary,helpers" "GET /v1/policies"

# --- heartbeats
hb() { # hb NODE LABELS PLATFORM PACKAGES
    req_as "$AGENT" POST /v1/agents/heartbeat -H 'Content-Type: application/json' \
        -d "{\"node_id\":\"$1\",\"labels\":$2,\"platform\":\"$3\",\"agent_version\":\"0.1.0\",\"packages\":$4}"
}
RUNNING_OLD="[{\"name\":\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.97.0\",\"digest\":\"sha256:$DO\",\"state\":\"Running\"}]"
hb edge-1 '{"env":"dev","canary":"true"}' linux/amd64 "$RUNNING_OLD"
is "$STATUS $(json '.heartbeat_interval_s')" "200 30" "POST /v1/agents/heartbeat with the agent token"
is "$(json '[.offers[] | select(.type=="primary")][0] | .version + " " + .digest + " " + .url + " " + .policy')" \
   "0.98.0 sha256:$DA /v1/blobs/sha256:$DA canary" "a matching node gets the offer for its platform"
is "$(json '[.offers[] | select(.type=="addon")][0].name')" "collector-helper" "and the addon offer"
hb edge-arm '{"env":"dev","canary":"true"}' linux/arm64 '[]'
is "$(json '[.offers[] | select(.type=="primary")][0].digest')" "sha256:$DR" "an arm64 node gets the arm64 artifact"
hb edge-2 '{"env":"prod"}' linux/amd64 "$RUNNING_OLD"
is "$STATUS $(json '[.offers[] | select(.type=="primary")] | length')" "200 0" "a node outside the selector gets no primary offer"
hb edge-3 '{"env":"dev","canary":"true"}' linux/amd64 "[{\"name\":\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.98.0\",\"digest\":\"sha256:$DA\",\"state\":\"Running\"}]"
is "$(json '[.offers[] | select(.type=="primary")] | length')" "0" "no offer when the node already runs the digest"
hb edge-4 '{"env":"dev","canary":"true"}' linux/riscv64 '[]'
is "$(json '[.offers[] | select(.type=="primary")] | length')" "0" "no offer when no artifact fits the platform"
hb edge-1 '{"env":"dev","canary":"true"}' linux/amd64 "[{\"name\":\"otelcol-contrib\",\"type\":\"primary\",\"version\":\"0.97.0\",\"digest\":\"sha256:$DO\",\"state\":\"Running\",\"offer\":{\"version\":\"0.98.0\",\"digest\":\"sha256:$DA\"},\"status\":\"UpgradeFailed\",\"message\":\"validate: exit 1\"}]"
is "$STATUS" "200" "a heartbeat carrying a status"

# --- fleet view
req GET /v1/agents
is "$STATUS $(json '.nodes | length')" "200 5" "GET /v1/agents lists every node"
req GET /v1/agents/edge-1
is "$STATUS $(json .platform) $(json .labels.env)" "200 linux/amd64 dev" "GET /v1/agents/ID: platform and labels"
is "$(json .last_status.status) $(json '.history | length')" "UpgradeFailed 1" "the status is the last status and in the history"
req GET /v1/agents/edge-4
is "$(json '[.rollout[] | select(.policy=="canary")][0].state')" "Incompatible" "a node without a fitting artifact shows Incompatible"
req GET /v1/agents/nobody
is "$STATUS $(error_code)" "404 NOTFOUND" "GET of an unknown node: 404"
req GET /v1/policies/canary
is "$STATUS $(json .status.counts.UpgradeFailed) $(json .status.counts.Incompatible)" "200 1 1" "GET /v1/policies/NAME has rollout counts"
is "$(json '[.status.nodes[].id] | join(",")')" "edge-1,edge-3,edge-4,edge-arm" "and the nodes it governs"

# --- metrics
req GET /metrics
is "$STATUS" "200" "GET /metrics with the admin token"
echo "$BODY" | grep -q '^pkgstored_requests_total{route="/v1/agents/heartbeat",code="200"} 6$'
ok $? "requests by route and status"
echo "$BODY" | grep -q '^pkgstored_heartbeats_total 6$'
ok $? "heartbeats counted"
echo "$BODY" | grep -q '^pkgstored_uploads_total{result="ok"} [0-9]'
ok $? "uploads counted"
echo "$BODY" | grep -q '^pkgstored_served_bytes_total [1-9]'
ok $? "bytes served counted"
echo "$BODY" | grep -q '^pkgstored_nodes{policy="canary",status="UpgradeFailed"} 1$'
ok $? "nodes by status per policy"

# --- deletes
req DELETE /v1/packages/otelcol-contrib/0.98.0
is "$STATUS $(error_code)" "409 CONFLICT" "DELETE of a version a policy references: 409"
diag "$(json .error.message)"
req DELETE /v1/packages/otelcol-contrib/0.97.0
is "$STATUS" "200" "DELETE /v1/packages/NAME/VERSION"
req GET /v1/packages/otelcol-contrib/0.97.0
is "$STATUS" "404" "the deleted version is gone"
req DELETE /v1/policies/canary
is "$STATUS" "200" "DELETE /v1/policies/NAME"
req GET /v1/policies/canary
is "$STATUS" "404" "the deleted policy is gone"
req DELETE /v1/packages/otelcol-contrib/0.98.0
is "$STATUS" "200" "the version can be deleted once no policy references it"

# --- operator tools
printf 'collector v1\n' >"$TMP/tool-bin"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name otelcol-tool --version 1.2.3 \
    --platform linux/amd64 --quiet "$TMP/tool-bin" >"$TMP/out" 2>"$TMP/err"
is "$? $(cut -d' ' -f1-4 "$TMP/out")" "0 pushed otelcol-tool 1.2.3 linux/amd64" "pkgstore-push uploads a package"
PKGSTORE_TOKEN_FILE="$ADMIN_FILE" "$BIN/pkgstore-push" --server "$URL" --name otelcol-tool --version 1.2.3 \
    --platform linux/arm64 --json "$TMP/tool-bin" >"$TMP/out" 2>"$TMP/err"
is "$? $(jq -r '.artifacts | length' "$TMP/out")" "0 2" "pkgstore-push --json with \$PKGSTORE_TOKEN_FILE"
"$BIN/pkgstore-push" --server "$URL" --token-file "$AGENT_FILE" --name otelcol-tool --version 1.2.4 \
    --platform linux/amd64 "$TMP/tool-bin" >/dev/null 2>"$TMP/err"
is "$?" "1" "pkgstore-push with the agent token fails"
diag "$(cat "$TMP/err")"
printf 'helper v1\n' >"$TMP/tool-addon"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name base-tool --version 0.1.0 \
    --platform any --quiet "$TMP/tool-addon" >/dev/null 2>"$TMP/err"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name tool-addon --version 1.0.0 \
    --type addon --platform any --depends 'otelcol-tool >=1.2.0 <2.0.0' --depends base-tool \
    --json --quiet "$TMP/tool-addon" >"$TMP/out" 2>"$TMP/err"
is "$? $(jq -c .dependencies "$TMP/out")" \
   '0 [{"name":"otelcol-tool","version":">=1.2.0 <2.0.0"},{"name":"base-tool","version":"*"}]' \
   "pkgstore-push --depends sends each, escaped (spaces, '<', '>='), into the manifest"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name tool-addon --version 1.0.1 \
    --type addon --platform any --depends 'otelcol-tool >=9.0.0' --quiet "$TMP/tool-addon" \
    >"$TMP/out" 2>"$TMP/err"
is "$? $(cat "$TMP/err")" \
   "1 pkgstore-push: $TMP/tool-addon: package: tool-addon 1.0.1: unmet dependency: otelcol-tool >=9.0.0 (no matching version) (HTTP 409 DEPENDENCY)" \
   "pkgstore-push --depends with an unmet one: the server's 409 DEPENDENCY, exit 1"
req GET /v1/packages/tool-addon/1.0.1
is "$STATUS" "404" "and the version was not stored"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name tool-addon --version 1.0.1 \
    --type addon --platform any --depends 'otelcol-tool >=9.0.0' --force --json --quiet \
    "$TMP/tool-addon" >"$TMP/out" 2>"$TMP/err"
is "$? $(jq -c .dependencies "$TMP/out")" '0 [{"name":"otelcol-tool","version":">=9.0.0"}]' \
   "pkgstore-push --depends --force stores the unmet one"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name tool-addon --version 1.0.2 \
    --type addon --platform any --depends 'Otelcol-tool >=1.0.0' --quiet "$TMP/tool-addon" \
    >"$TMP/out" 2>"$TMP/err"
STATUS_RC=$?
req GET /v1/packages/tool-addon/1.0.2
is "$STATUS_RC $STATUS" "2 404" "a malformed --depends is a usage error and nothing is sent"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" set ring1 --selector 'ring=1' \
    --package otelcol-tool --version 1.2.3 --priority 5 >"$TMP/out" 2>"$TMP/err"
is "$?" "0" "pkgstore-policy set"
is "$(cat "$TMP/out")" "policy ring1: otelcol-tool 1.2.3 for nodes matching 'ring=1' (priority 5)" \
    "pkgstore-policy set names the selector"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" set everyone \
    --package otelcol-tool --version 1.2.3 >"$TMP/out" 2>"$TMP/err"
is "$? $(cat "$TMP/out")" "0 policy everyone: otelcol-tool 1.2.3 for all nodes (priority 0)" \
    "pkgstore-policy set without --selector says 'for all nodes'"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" rm everyone >/dev/null
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" ls >"$TMP/out"
grep -q '^ring1 ' "$TMP/out"
ok $? "pkgstore-policy ls"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" --json show ring1 >"$TMP/out"
is "$(jq -r .selector "$TMP/out")" "ring=1" "pkgstore-policy --json show"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" rm ring1 >/dev/null
is "$?" "0" "pkgstore-policy rm"
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" show ring1 >/dev/null 2>"$TMP/err"
is "$?" "1" "pkgstore-policy show of a removed policy fails"
diag "$(cat "$TMP/err")"

# usage errors: one line "prog: ...: reason" and the --help pointer, exit 2;
# never getopt's own message with the full argv[0] path
usage_error() { # usage_error DESCRIPTION EXPECTED-FIRST-LINE COMMAND...
    local desc=$1 expected=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$? prog=${expected%%:*}
    is "$rc|$(head -1 "$TMP/err")|$(sed -n 2p "$TMP/err")|$(wc -l <"$TMP/err")|$(wc -c <"$TMP/out")" \
        "2|$expected|Try '$prog --help' for more information.|2|0" "$desc"
}
usage_error "pkgstore-push: unknown option" "pkgstore-push: unknown option '--bogus'" \
    "$BIN/pkgstore-push" --bogus
usage_error "pkgstore-push: an unknown short option is named" "pkgstore-push: unknown option '-x'" \
    "$BIN/pkgstore-push" -xy
usage_error "pkgstore-push: an option without its value" "pkgstore-push: option '--name' needs a value" \
    "$BIN/pkgstore-push" --version 1.0.0 --name
usage_error "pkgstore-push without arguments" "pkgstore-push: --name and --version are required" \
    "$BIN/pkgstore-push"
usage_error "pkgstore-push without FILE" "pkgstore-push: exactly one FILE is required (or, without FILE, --sign-key or --signature)" \
    "$BIN/pkgstore-push" --name a --version 1.0.0
usage_error "pkgstore-push: a bad --type" "pkgstore-push: --type: must be primary or addon, not 'x'" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --type x "$TMP/tool-bin"
usage_error "pkgstore-push: --depends with a bad name" \
    "pkgstore-push: --depends: 'Bad_Name >=1.0.0': name: invalid character 'B' at position 1 (names match [a-z0-9][a-z0-9._-]*)" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --depends 'Bad_Name >=1.0.0' "$TMP/tool-bin"
usage_error "pkgstore-push: --depends with a bad constraint" \
    "pkgstore-push: --depends: 'otelcol >>1': constraint: expected the major number or a wildcard at position 1 ('>') in \">[>]1\"" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --depends 'otelcol >>1' "$TMP/tool-bin"
usage_error "pkgstore-push: --depends with a space but no constraint" \
    "pkgstore-push: --depends: 'otelcol ': constraint: empty after the name (NAME alone means any version)" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --depends 'otelcol ' "$TMP/tool-bin"
usage_error "pkgstore-push: --depends naming a package twice" \
    "pkgstore-push: --depends: 'otelcol' is given twice" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --depends otelcol --depends 'otelcol ^1' "$TMP/tool-bin"
usage_error "pkgstore-push: --depends without FILE" \
    "pkgstore-push: --depends needs FILE: dependencies are set by an upload" \
    "$BIN/pkgstore-push" --name a --version 1.0.0 --depends otelcol --sign-key "$TMP/no-such.key"
usage_error "pkgstore-policy: unknown option" "pkgstore-policy: unknown option '--bogus'" \
    "$BIN/pkgstore-policy" --bogus ls
usage_error "pkgstore-policy: an option without its value" \
    "pkgstore-policy: option '--server' needs a value" "$BIN/pkgstore-policy" --server
usage_error "pkgstore-policy without a command" "pkgstore-policy: no command: give set, ls, show, rm, retry, status, pause, resume, abort, audit or rank" \
    "$BIN/pkgstore-policy"
usage_error "pkgstore-policy: an unknown command" \
    "pkgstore-policy: frob: unknown command (set, ls, show, rm, retry, status, pause, resume, abort, audit, rank)" "$BIN/pkgstore-policy" frob
usage_error "pkgstore-policy show without NAME" "pkgstore-policy: show: give exactly one NAME" \
    "$BIN/pkgstore-policy" show
usage_error "pkgstore-policy rank without NAME" \
    "pkgstore-policy: rank: give the policy's NAME (then node ids, or them on stdin)" \
    "$BIN/pkgstore-policy" rank
usage_error "pkgstore-policy set: an unknown option" "pkgstore-policy: unknown option '--bogus'" \
    "$BIN/pkgstore-policy" set x --bogus
usage_error "pkgstore-policy set: an option without its value, before any server is needed" \
    "pkgstore-policy: option '--package' needs a value" env -u PKGSTORE_SERVER "$BIN/pkgstore-policy" set x --package
usage_error "pkgstore-policy set: a bad --priority" "pkgstore-policy: --priority: 'high' is not an integer" \
    "$BIN/pkgstore-policy" --server "$URL" set x --package p --version 1.0.0 --priority high
usage_error "pkgstore-policy set: a bad --soak" "pkgstore-policy: --soak: 'long' is not a whole number in 0..1000000000" \
    "$BIN/pkgstore-policy" --server "$URL" set x --package p --version 1.0.0 --soak long
usage_error "pkgstore-policy abort without NAME" "pkgstore-policy: abort: give exactly one NAME (and --revert)" \
    "$BIN/pkgstore-policy" abort --revert
usage_error "pkgstore-policy audit with two names" "pkgstore-policy: audit: give at most one NAME" \
    "$BIN/pkgstore-policy" audit a b
for tool in pkgstore-push pkgstore-policy; do
    is "$("$BIN/$tool" --version)" "$tool (pkgstore) $(sed -n 's/^VERSION *:= *//p' "$SRC/Makefile")" \
        "$tool --version prints like the other tools"
done

server_alive
ok $? "the server is still running"
stop_server
is "$STOP_STATUS" "0" "SIGTERM stops the server cleanly"
finish
