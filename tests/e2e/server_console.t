#!/usr/bin/env bash
# server_console.t - the web console's server side (issue 14), with curl
# against the real pkgstored, over plain HTTP and over HTTPS:
#   - GET / redirects to /ui/; the files of ui/ are served from the binary
#     with their types, the security headers, an ETag and 304s;
#   - POST /v1/session signs in with an admin token only; the cookie is
#     HttpOnly, SameSite=Strict, Secure only over HTTPS;
#   - the cookie authenticates GETs; a PUT, POST or DELETE it authenticates
#     needs the session's X-CSRF-Token, else 403 and nothing changes;
#   - no fixation: a cookie sent with the sign-in is never the one issued;
#   - sign-out ends the session on the server; a session expires after
#     --session-ttl however busy; --max-sessions ends the oldest; a restart
#     ends them all;
#   - ETag and If-None-Match/304 on the listings the console polls, and a
#     change changes the ETag.

. "$(dirname "$0")/server_common.sh"
. "$(dirname "$0")/lib/tls.sh"


CSP="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

# header NAME FILE: the value of header NAME in a curl -D dump (first one).
header() {
    grep -i "^$1:" "$2" | head -n1 | sed -e 's/^[^:]*: *//' -e 's/\r$//'
}

# sign_in TOKEN [curl args...]: POST /v1/session; sets STATUS, BODY, CSRF,
# COOKIE (the issued id) and keeps the response headers in $TMP/signin.h.
sign_in() {
    local token=$1
    shift
    STATUS=$(curl -s -o "$TMP/body" -D "$TMP/signin.h" -w '%{http_code}' "$@" \
        -H 'Content-Type: application/json' -d "{\"token\":\"$token\"}" "$URL/v1/session")
    BODY=$(cat "$TMP/body")
    CSRF=$(json '.csrf // empty')
    COOKIE=$(header Set-Cookie "$TMP/signin.h" | sed -n 's/^pkgstore_session=\([^;]*\).*/\1/p')
}

# as_cookie COOKIE METHOD PATH [curl args...]: a request with only the
# session cookie; sets STATUS and BODY.
as_cookie() {
    local cookie=$1 method=$2 path=$3
    shift 3
    STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" \
        -H "Cookie: pkgstore_session=$cookie" "$@" "$URL$path")
    BODY=$(cat "$TMP/body")
}

start_server
ok $? "pkgstored starts on 127.0.0.1:$PORT"

# ---- static files
curl -s -o /dev/null -D "$TMP/h" "$URL/"
is "$(sed -n 1p "$TMP/h" | tr -d '\r' | cut -d' ' -f2) $(header Location "$TMP/h")" "302 /ui/" \
    "GET / redirects (302) to /ui/"
curl -s -o /dev/null -D "$TMP/h" "$URL/ui"
is "$(header Location "$TMP/h")" "/ui/" "GET /ui redirects to /ui/ (the page's relative links)"

STATUS=$(curl -s -o "$TMP/index" -D "$TMP/h" -w '%{http_code}' "$URL/ui/")
is "$STATUS" "200" "GET /ui/ needs no token"
cmp -s "$TMP/index" "$SRC/ui/index.html"
ok $? "GET /ui/ is ui/index.html, compiled in"
is "$(header Content-Type "$TMP/h")" "text/html; charset=utf-8" "... as text/html; charset=utf-8"
is "$(header Content-Security-Policy "$TMP/h")" "$CSP" "... with the Content-Security-Policy"
is "$(header X-Content-Type-Options "$TMP/h")" "nosniff" "... X-Content-Type-Options: nosniff"
is "$(header Referrer-Policy "$TMP/h")" "no-referrer" "... Referrer-Policy: no-referrer"
is "$(header X-Frame-Options "$TMP/h")" "DENY" "... X-Frame-Options: DENY (and frame-ancestors 'none')"
is "$(header Cache-Control "$TMP/h")" "no-cache" "... Cache-Control: no-cache"
ETAG=$(header ETag "$TMP/h")
ok "$(printf '%s' "$ETAG" | grep -Eq '^"[0-9a-f]{32}"$'; echo $?)" "... and a strong ETag ($ETAG)"
STATUS=$(curl -s -o "$TMP/got" -w '%{http_code} %{size_download}' -H "If-None-Match: $ETAG" "$URL/ui/")
is "$STATUS" "304 0" "If-None-Match with the ETag: 304 without a body"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "0123"' "$URL/ui/")
is "$STATUS" "200" "If-None-Match with another ETag: 200"

# every file of ui/, whatever the console holds at this commit
bad=
for f in "$SRC"/ui/*; do
    name=${f##*/}
    case $name in
    *.html) want="text/html; charset=utf-8" ;;
    *.js) want="text/javascript; charset=utf-8" ;;
    *.css) want="text/css; charset=utf-8" ;;
    *.svg) want="image/svg+xml" ;;
    *) want= ;;
    esac
    curl -s -o "$TMP/file" -D "$TMP/h" "$URL/ui/$name"
    cmp -s "$TMP/file" "$f" || bad="$bad $name(bytes)"
    [ -z "$want" ] || [ "$(header Content-Type "$TMP/h")" = "$want" ] || bad="$bad $name(type)"
    [ "$(header X-Content-Type-Options "$TMP/h")" = nosniff ] || bad="$bad $name(nosniff)"
done
is "$bad" "" "every file of ui/ is served as it is, with its type and nosniff"
req_as "" GET /ui/no-such-file.js
is "$STATUS $(error_code)" "404 NOTFOUND" "an unknown console file: 404 NOTFOUND"
req_as "" GET /ui/%2e%2e
is "$STATUS" "400" "/ui/.. (encoded): 400"
req_as "" GET /v1/policies
is "$STATUS" "401" "the API still needs a credential"

# ---- sign-in
printf 'm1\n' >"$TMP/small"
req PUT "/v1/packages/otelcol/1.0.0?platform=any" --data-binary @"$TMP/small"
is "$STATUS" "201" "a package to write policies for"

sign_in "not-a-token"
is "$STATUS $(error_code)" "401 DENIED" "sign-in with a wrong token: 401 DENIED"
is "$(header Set-Cookie "$TMP/signin.h")" "" "... and no cookie"
sign_in "$AGENT"
is "$STATUS $(error_code)" "403 DENIED" "sign-in with a non-admin (agent) token: 403"
is "$(header Set-Cookie "$TMP/signin.h")" "" "... and no cookie"
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -d 'token=x' "$URL/v1/session")
BODY=$(cat "$TMP/body")
is "$STATUS $(error_code)" "400 INVALID" "sign-in with a body that is not {\"token\"}: 400"

sign_in "$ADMIN"
is "$STATUS" "201" "sign-in with the admin token: 201"
ok "$(printf '%s' "$CSRF" | grep -Eq '^[0-9a-f]{64}$'; echo $?)" "... a CSRF token of 256 bits"
ok "$(json .expires | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'; echo $?)" \
    "... the expiry in RFC 3339 ($(json .expires))"
ok "$(printf '%s' "$COOKIE" | grep -Eq '^[0-9a-f]{64}$'; echo $?)" "... a session id of 256 bits"
SETC=$(header Set-Cookie "$TMP/signin.h")
is "$(printf '%s' "$SETC" | sed 's/^pkgstore_session=[0-9a-f]*//')" \
    "; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800" \
    "the cookie is HttpOnly, SameSite=Strict, Path=/, Max-Age the TTL, not Secure over HTTP"
printf '%s' "$BODY" | grep -q "$COOKIE"
ok "$([ $? -ne 0 ]; echo $?)" "the session id is not in the body (the page cannot read it)"
C1=$COOKIE
X1=$CSRF

as_cookie "$C1" GET /v1/policies
is "$STATUS $(json '.policies | length')" "200 0" "a GET with the cookie works (admin)"
as_cookie "$C1" GET /v1/session
is "$STATUS $(json .csrf)" "200 $X1" "GET /v1/session gives the page its CSRF token again"
as_cookie "$C1" GET /metrics
is "$STATUS" "200" "the cookie has the admin role (/metrics)"

# ---- CSRF on changes
POLICY='{"selector":"env=dev","package":"otelcol","version":"1.0.0"}'
as_cookie "$C1" PUT /v1/policies/p -d "$POLICY"
is "$STATUS $(error_code) $(json .error.message)" "403 DENIED missing or wrong X-CSRF-Token" \
    "a cookie PUT without X-CSRF-Token: 403"
as_cookie "$C1" PUT /v1/policies/p -H "X-CSRF-Token: $(printf '%064d' 0)" -d "$POLICY"
is "$STATUS" "403" "a cookie PUT with a wrong X-CSRF-Token: 403"
as_cookie "$C1" PUT /v1/policies/p -H "X-CSRF-Token: $C1" -d "$POLICY"
is "$STATUS" "403" "a cookie PUT with the session id as X-CSRF-Token: 403"
req GET /v1/policies/p
is "$STATUS" "404" "... and no policy was written"
as_cookie "$C1" PUT /v1/policies/p -H "X-CSRF-Token: $X1" -d "$POLICY"
is "$STATUS $(json .name)" "200 p" "a cookie PUT with the right X-CSRF-Token works"
req GET "/v1/audit?policy=p"
ok "$(printf '%s' "$BODY" | jq -e '[.entries[].who] | any(test("^token:[0-9a-f]{16}$"))' >/dev/null; echo $?)" \
    "the audit log names the token that signed in"

as_cookie "$C1" POST /v1/credentials -d '{"node":"n1"}'
is "$STATUS" "403" "a cookie POST without X-CSRF-Token: 403"
req GET /v1/credentials
is "$(json '.credentials | length')" "0" "... and no credential was issued"
as_cookie "$C1" POST /v1/credentials -H "X-CSRF-Token: $X1" -d '{"node":"n1"}'
is "$STATUS" "201" "a cookie POST with the right X-CSRF-Token works"

as_cookie "$C1" DELETE /v1/policies/p
is "$STATUS" "403" "a cookie DELETE without X-CSRF-Token: 403"
# the right token with its last digit changed (never to the same digit)
last=${X1: -1}; [ "$last" = 0 ] && other=1 || other=0
as_cookie "$C1" DELETE /v1/policies/p -H "X-CSRF-Token: ${X1%?}$other"
is "$STATUS" "403" "a cookie DELETE with a wrong X-CSRF-Token: 403"
req GET /v1/policies/p
is "$STATUS" "200" "... and the policy is still there"
req_as "$ADMIN" GET /v1/policies -H "Cookie: pkgstore_session=$(printf '%064d' 0)"
is "$STATUS" "200" "a bearer token works as before (a stray cookie beside it is ignored)"

# ---- fixation
ATTACKER=$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
sign_in "$ADMIN" -H "Cookie: pkgstore_session=$ATTACKER"
is "$STATUS" "201" "sign-in with an attacker's cookie: 201"
ok "$([ -n "$COOKIE" ] && [ "$COOKIE" != "$ATTACKER" ]; echo $?)" "... a new session id is issued, not the attacker's"
as_cookie "$ATTACKER" GET /v1/policies
is "$STATUS $(error_code)" "401 DENIED" "the attacker's cookie is not a session"
C2=$COOKIE
sign_in "$ADMIN" -H "Cookie: pkgstore_session=$C2"
ok "$([ -n "$COOKIE" ] && [ "$COOKIE" != "$C2" ]; echo $?)" "sign-in with a live session's cookie issues another id"
as_cookie "$C2" GET /v1/policies
is "$STATUS" "401" "... and the session it replaces ends"
C2=$COOKIE
as_cookie "$ATTACKER" GET /v1/session
is "$STATUS" "401" "GET /v1/session with an unknown cookie: 401"
as_cookie "$ATTACKER; pkgstore_session=$C2" GET /v1/policies
is "$STATUS" "200" "a cookie planted before ours (cookie tossing): ours still signs in"
as_cookie "x;y" GET /v1/policies
is "$STATUS" "401" "a malformed session cookie: 401"

as_cookie "$C1" PUT "/v1/packages/otelcol/2.0.0?platform=any" --data-binary @"$TMP/small"
is "$STATUS" "403" "a cookie upload without X-CSRF-Token: 403 (before its body is read)"
req GET /v1/packages/otelcol
is "$(json '.versions | join(",")')" "1.0.0" "... and no version was stored"
as_cookie "$C1" PUT "/v1/packages/otelcol/2.0.0?platform=any" -H "X-CSRF-Token: $X1" --data-binary @"$TMP/small"
is "$STATUS $(json .version)" "201 2.0.0" "a cookie upload with the right X-CSRF-Token works"

req GET /metrics
ok "$(printf '%s' "$BODY" | grep -Eq '^pkgstored_requests_total\{route="/v1/session",code="401"\} [1-9][0-9]*$'; echo $?)" \
    "/metrics counts the refused sign-in like a bad bearer token (route /v1/session, 401)"
is "$(printf '%s' "$BODY" | sed -n 's/^pkgstored_console_sessions //p')" "2" "/metrics: 2 live console sessions (C1, and the one that replaced C2)"

# ---- sign-out
as_cookie "$C1" DELETE /v1/session
is "$STATUS" "403" "sign-out without X-CSRF-Token: 403"
as_cookie "$C1" GET /v1/policies
is "$STATUS" "200" "... and the session lives on"
STATUS=$(curl -s -o /dev/null -D "$TMP/h" -w '%{http_code}' -X DELETE \
    -H "Cookie: pkgstore_session=$C1" -H "X-CSRF-Token: $X1" "$URL/v1/session")
is "$STATUS" "200" "sign-out with the cookie and X-CSRF-Token: 200"
ok "$(header Set-Cookie "$TMP/h" | grep -q '^pkgstore_session=;.*Max-Age=0'; echo $?)" \
    "... and the response clears the cookie (Max-Age=0)"
as_cookie "$C1" GET /v1/policies
is "$STATUS $(error_code)" "401 DENIED" "the old cookie gets 401 after sign-out (ended on the server)"
as_cookie "$C1" DELETE /v1/policies/p -H "X-CSRF-Token: $X1"
is "$STATUS" "401" "... and cannot change anything with its old CSRF token"
req GET /v1/session
is "$STATUS" "401" "GET /v1/session with a bearer token (no session): 401"

# ---- ETags on the listings the console polls
for path in /v1/agents /v1/policies /v1/policies/p /v1/packages /v1/packages/otelcol /v1/audit; do
    curl -s -o /dev/null -D "$TMP/h" -H "Authorization: Bearer $ADMIN" "$URL$path"
    tag=$(header ETag "$TMP/h")
    st=$(curl -s -o "$TMP/got" -w '%{http_code} %{size_download}' -H "Authorization: Bearer $ADMIN" \
        -H "If-None-Match: $tag" "$URL$path")
    ok "$([ -n "$tag" ] && [ "$st" = "304 0" ]; echo $?)" "GET $path has an ETag ($tag); If-None-Match: 304 ($st)"
done
curl -s -o /dev/null -D "$TMP/h" -H "Authorization: Bearer $ADMIN" "$URL/v1/agents"
AE=$(header ETag "$TMP/h")
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"edge-1","platform":"linux/amd64"}'
is "$STATUS" "200" "a node heartbeats"
STATUS=$(curl -s -o /dev/null -D "$TMP/h" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" \
    -H "If-None-Match: $AE" "$URL/v1/agents")
ok "$([ "$STATUS" = 200 ] && [ "$(header ETag "$TMP/h")" != "$AE" ]; echo $?)" \
    "GET /v1/agents after the change: 200 with another ETag"
curl -s -o /dev/null -D "$TMP/h" -H "Authorization: Bearer $ADMIN" "$URL/v1/policies"
PE=$(header ETag "$TMP/h")
req PUT /v1/policies/q -d "$POLICY"
STATUS=$(curl -s -o /dev/null -D "$TMP/h" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" \
    -H "If-None-Match: $PE" "$URL/v1/policies")
ok "$([ "$STATUS" = 200 ] && [ "$(header ETag "$TMP/h")" != "$PE" ]; echo $?)" \
    "GET /v1/policies after a PUT: 200 with another ETag"
curl -s -o /dev/null -D "$TMP/h" -H "Cookie: pkgstore_session=$C2" "$URL/v1/policies"
PE=$(header ETag "$TMP/h")
as_cookie "$C2" GET /v1/policies -H "If-None-Match: $PE"
ok "$([ -n "$PE" ] && [ "$STATUS" = 304 ]; echo $?)" "the cookie's GETs get ETags and 304s too"

# ---- a restart ends every session
stop_server
start_server --max-sessions 2
as_cookie "$C2" GET /v1/policies
is "$STATUS" "401" "after a restart the old cookie gets 401 (sessions live in memory)"

# ---- the cap
sign_in "$ADMIN"; S1=$COOKIE
sign_in "$ADMIN"; S2=$COOKIE
sign_in "$ADMIN"; S3=$COOKIE
as_cookie "$S1" GET /v1/policies; st1=$STATUS
as_cookie "$S2" GET /v1/policies; st2=$STATUS
as_cookie "$S3" GET /v1/policies; st3=$STATUS
is "$st1 $st2 $st3" "401 200 200" "--max-sessions 2: a third sign-in ends the oldest session"

# ---- expiry
stop_server
start_server --session-ttl 2
sign_in "$ADMIN"
ok "$(header Set-Cookie "$TMP/signin.h" | grep -q 'Max-Age=2$'; echo $?)" "--session-ttl 2: Max-Age=2"
as_cookie "$COOKIE" GET /v1/policies
is "$STATUS" "200" "the new session works"
# wait for the event (bounded): the session answers 401 once expired,
# however often it is used meanwhile
expired=
for i in $(seq 1 100); do
    as_cookie "$COOKIE" GET /v1/policies
    [ "$STATUS" = 401 ] && { expired=1; break; }
    sleep 0.1
done
is "$expired" "1" "the session expires after --session-ttl, though in use (401)"
sign_in "$ADMIN"
is "$STATUS" "201" "... and signing in again works"

# ---- HTTPS: the cookie is Secure
stop_server
C=$TMP/certs
mkdir -p "$C"
tls_ca "$C" ca && tls_cert "$C" ca server IP:127.0.0.1
ok $? "certificates for HTTPS"
start_server --tls-cert "$C/server.pem" --tls-key "$C/server.key"
URL="https://127.0.0.1:$PORT"
sign_in "$ADMIN" --cacert "$C/ca.pem"
is "$STATUS" "201" "sign-in over HTTPS: 201"
is "$(header Set-Cookie "$TMP/signin.h" | sed 's/^pkgstore_session=[0-9a-f]*//')" \
    "; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800; Secure" "over HTTPS the cookie is also Secure"
as_cookie "$COOKIE" GET /v1/policies --cacert "$C/ca.pem"
is "$STATUS" "200" "the cookie works over HTTPS"
STATUS=$(curl -s -o "$TMP/index" -D "$TMP/h" -w '%{http_code}' --cacert "$C/ca.pem" "$URL/ui/")
is "$STATUS $(header Content-Security-Policy "$TMP/h" | grep -c "frame-ancestors 'none'")" "200 1" \
    "GET /ui/ over HTTPS, with the CSP"

ok "$(server_alive; echo $?)" "pkgstored is still running"

# ---- the options' bounds
"$BIN/pkgstored" --store "$TMP/store" --session-ttl 0 2>"$TMP/err"
is "$?:$(head -n1 "$TMP/err")" "2:pkgstored: --session-ttl: not a number of seconds in 1..604800: 0" \
    "--session-ttl 0: a usage error"
"$BIN/pkgstored" --store "$TMP/store" --max-sessions 0 2>"$TMP/err"
is "$?:$(head -n1 "$TMP/err")" "2:pkgstored: --max-sessions: not a number in 1..65536: 0" \
    "--max-sessions 0: a usage error"
finish
