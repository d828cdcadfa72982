#!/usr/bin/env bash
# The store lock cannot freeze pkgstored (issue 10, section 4): while
# another process holds <store>/lock exclusively, as gc and
# `pkgstore-verify --repair` do, heartbeats, downloads and /healthz answer
# at once and uploads get 503 LOCKED with Retry-After, on a server with two
# worker threads and more uploads than threads. Once the lock is released
# uploads work again. A package upload the registry refuses leaves nothing
# that can be served: no blob, no orphan.
. "$(dirname "$0")/server_common.sh"

start_server --threads 2 --lock-timeout 100

head -c 300000 /dev/urandom >"$TMP/payload"
req PUT "/v1/packages/otelcol-contrib/0.97.0?platform=linux/amd64" --data-binary @"$TMP/payload"
is "$STATUS" "201" "a package is uploaded before the lock is taken"
DIGEST=$(sha256 "$TMP/payload")

# Hold the lock exclusively from another process until the fifo closes.
mkfifo "$TMP/release"
flock -x "$TMP/store/lock" sh -c 'echo held >"$1"; exec cat "$2" >/dev/null' _ \
    "$TMP/held" "$TMP/release" &
HOLDER=$!
EXTRA_PIDS+=($HOLDER)
exec 5>"$TMP/release"
for _ in $(seq 1 200); do
    [ -s "$TMP/held" ] && break
    sleep 0.05
done
is "$(cat "$TMP/held" 2>/dev/null)" "held" "another process holds the store lock exclusively"

# More uploads than worker threads, side by side: each must be answered.
head -c 200000 /dev/urandom >"$TMP/up1"
head -c 200000 /dev/urandom >"$TMP/up2"
head -c 200000 /dev/urandom >"$TMP/up3"
UPLOAD_PIDS=()
for i in 1 2 3; do
    curl -s -m 20 -o "$TMP/upbody$i" -D "$TMP/uphead$i" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $ADMIN" --data-binary @"$TMP/up$i" "$URL/v1/blobs" \
        >"$TMP/upstatus$i" &
    UPLOAD_PIDS+=($!)
done
for pid in "${UPLOAD_PIDS[@]}"; do wait "$pid"; done
for i in 1 2 3; do
    BODY=$(cat "$TMP/upbody$i")
    is "$(cat "$TMP/upstatus$i") $(error_code)" "503 LOCKED" "blob upload $i while locked: 503 LOCKED"
done
is "$(tr -d '\r' <"$TMP/uphead1" | awk -F': ' 'tolower($1)=="retry-after" {print $2}')" "1" \
   "the 503 says when to try again (Retry-After: 1)"
diag "$(cat "$TMP/upbody1")"

req PUT "/v1/packages/otelcol-contrib/0.98.0?platform=linux/amd64" --data-binary @"$TMP/up1"
is "$STATUS $(error_code)" "503 LOCKED" "a package upload while locked: 503 LOCKED"

# The lock is still held: none of these may wait for it.
req_as "$AGENT" POST /v1/agents/heartbeat -m 10 \
    -d '{"node_id":"edge-1","platform":"linux/amd64","packages":[{"name":"otelcol-contrib","type":"primary","version":"0.97.0","state":"Running"}]}'
is "$STATUS" "200" "a heartbeat answers while the lock is held"
req_as "$AGENT" GET "/v1/blobs/sha256:$DIGEST" -m 10
is "$STATUS" "200" "a download answers while the lock is held"
is "$(sha256 "$TMP/body")" "$DIGEST" "and sends the whole blob"
req_as "" GET /healthz -m 10
is "$STATUS" "200" "/healthz answers while the lock is held"
req GET /v1/packages/otelcol-contrib -m 10
is "$STATUS" "200" "a package listing answers while the lock is held"
is "$(kill -0 "$HOLDER" 2>/dev/null; echo $?)" "0" "the lock was held all along"

exec 5>&-
wait "$HOLDER"
req POST /v1/blobs --data-binary @"$TMP/up1"
is "$STATUS" "201" "once the lock is released an upload is stored"

# A package the registry refuses (an archive entry that climbs out of its
# directory) leaves nothing: its bytes cannot be downloaded and the store
# has no orphan.
mkdir "$TMP/evil"
head -c 5000 /dev/urandom >"$TMP/evil/evil"
tar -C "$TMP/evil" -P --transform='s,^evil$,../../evil,' -cf "$TMP/evil.tar" evil 2>/dev/null
req PUT "/v1/packages/helper/1.0.0?platform=linux/amd64&type=addon" --data-binary @"$TMP/evil.tar"
is "$STATUS $(error_code)" "400 UNSAFE" "an unsafe archive is refused"
diag "$(json .error.message)"
req_as "$AGENT" GET "/v1/blobs/sha256:$(sha256 "$TMP/evil.tar")"
is "$STATUS" "404" "the refused archive cannot be downloaded"
ok "$([ -z "$(find "$TMP/store/blobs" -name "$(sha256 "$TMP/evil.tar")*")" ]; echo $?)" \
   "the refused archive left no file under blobs/"

stop_server
is "$STOP_STATUS" "0" "pkgstored stops cleanly"
"$BIN/pkgstore-verify" --store "$TMP/store" --all >"$TMP/verify" 2>&1
is "$?" "0" "pkgstore-verify --all finds the store sound: no orphan, nothing missing"
sed 's/^/# /' "$TMP/verify"
finish
