#!/usr/bin/env bash
# Streaming uploads: a 1 GiB body with bounded server memory, concurrent
# uploads of the same blob, and aborted or rejected uploads leave nothing.
# Package uploads with dependencies (?depends=): stored, refused when unmet
# (the blob withdrawn), forced, and malformed ones refused before the body.
. "$(dirname "$0")/server_common.sh"

# The same bound holds under ASan (measured: about 19 MB there, 11 MB without).
RSS_LIMIT_KB=65536

start_server --no-zstd
H=(-H "Authorization: Bearer $ADMIN")
count_tmp() { find "$TMP/store/tmp" -type f | wc -l; }

# --- 1 GiB, generated on the fly (chunked, no Content-Length)
ZERO_1G=49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14
START=$(date +%s.%N)
head -c 1073741824 /dev/zero | curl -s -o "$TMP/body" -w '%{http_code}' "${H[@]}" -X POST -T - \
    "$URL/v1/blobs" >"$TMP/status"
END=$(date +%s.%N)
BODY=$(cat "$TMP/body")
is "$(cat "$TMP/status") $(json .size) $(json .digest)" "201 1073741824 sha256:$ZERO_1G" \
   "a 1 GiB chunked upload is stored with the right digest"
HWM=$(vm_hwm "$SERVER_PID")
diag "1 GiB upload: $(echo "$START $END" | awk '{printf "%.1f s, %.0f MB/s", $2-$1, 1024/($2-$1)}'); server VmHWM ${HWM} kB"
ok "$([ "$HWM" -lt "$RSS_LIMIT_KB" ]; echo $?)" "server peak RSS ${HWM} kB stays under $((RSS_LIMIT_KB / 1024)) MB"
BLOB="$TMP/store/blobs/sha256/${ZERO_1G:0:2}/$ZERO_1G"
is "$(stat -c %s "$BLOB" 2>/dev/null)" "1073741824" "the blob file has every byte"
rm -f "$BLOB"

# --- the same blob uploaded 8 times at once
head -c 3000000 /dev/urandom >"$TMP/same"
D=$(sha256 "$TMP/same")
PIDS=()
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o "$TMP/c$i" -w '%{http_code}' "${H[@]}" -X PUT --data-binary @"$TMP/same" \
        "$URL/v1/blobs/sha256:$D" >"$TMP/s$i" &
    PIDS+=($!)
done
wait "${PIDS[@]}"
ALL=$(for i in 1 2 3 4 5 6 7 8; do printf '%s:%s ' "$(cat "$TMP/s$i")" "$(jq -r .digest "$TMP/c$i")"; done)
is "$ALL" "$(for i in 1 2 3 4 5 6 7 8; do printf '201:sha256:%s ' "$D"; done)" \
   "8 concurrent uploads of the same blob all succeed"
curl -s -o "$TMP/got" "${H[@]}" "$URL/v1/blobs/sha256:$D"
cmp -s "$TMP/got" "$TMP/same"
ok $? "the blob reads back intact"
is "$(count_tmp)" "0" "nothing is left in tmp/"

# --- a client that dies mid-upload
# The store may write through an unnamed O_TMPFILE, so look at the server's
# open files as well as at tmp/.
tmp_open() { ls -l "/proc/$SERVER_PID/fd" 2>/dev/null | grep -c "$TMP/store/tmp/"; }
mkfifo "$TMP/fifo"
( head -c 2000000 /dev/urandom; exec sleep 30 ) >"$TMP/fifo" &
PRODUCER_PID=$!
EXTRA_PIDS+=($PRODUCER_PID)
curl -s -o /dev/null "${H[@]}" -X POST -T - "$URL/v1/blobs" <"$TMP/fifo" &
CURL_PID=$!
EXTRA_PIDS+=($CURL_PID)
for i in $(seq 1 100); do
    [ "$(tmp_open)" -gt 0 ] || [ "$(count_tmp)" -gt 0 ] && break
    sleep 0.05
done
is "$(( $(tmp_open) + $(count_tmp) ))" "1" "an upload in progress holds one temporary file"
kill "$CURL_PID"
kill "$PRODUCER_PID"
for i in $(seq 1 100); do
    [ "$(tmp_open)" = 0 ] && [ "$(count_tmp)" = 0 ] && break
    sleep 0.05
done
is "$(tmp_open) $(count_tmp)" "0 0" "the aborted upload's temporary file is gone"
NBLOBS=$(find "$TMP/store/blobs" -type f | wc -l)
is "$NBLOBS" "1" "and nothing new under blobs/"

# --- a digest mismatch and a short body leave nothing
req PUT "/v1/blobs/sha256:$(printf x | sha256sum | cut -c1-64)" --data-binary @"$TMP/same"
is "$STATUS $(error_code)" "400 DIGEST_MISMATCH" "digest mismatch"
is "$(count_tmp) $(find "$TMP/store/blobs" -type f | wc -l)" "0 1" "the mismatched upload left nothing"

# a declared Content-Length, fewer bytes, then the client hangs up
head -c 100000 /dev/urandom >"$TMP/short"
ABORTED_BEFORE=$(grep -c 'msg="upload aborted"' "$TMP/server.log")
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'PUT /v1/blobs/sha256:%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n' \
    "$(sha256 "$TMP/short")" "$ADMIN" >&3
head -c 5000 "$TMP/short" >&3
# hang up once the server has the upload open (its temporary file): a
# request whose bytes and FIN are all queued before libmicrohttpd accepts
# the connection may wait for --idle-timeout, which is not what this checks
for i in $(seq 1 400); do
    [ "$(tmp_open)" -gt 0 ] || [ "$(count_tmp)" -gt 0 ] && break
    sleep 0.05
done
exec 3>&-
for i in $(seq 1 400); do
    [ "$(grep -c 'msg="upload aborted"' "$TMP/server.log")" -gt "$ABORTED_BEFORE" ] && break
    sleep 0.05
done
is "$(grep -c 'msg="upload aborted"' "$TMP/server.log")" "$((ABORTED_BEFORE + 1))" \
   "the server saw the short body as an aborted upload"
is "$(tmp_open) $(count_tmp) $(find "$TMP/store/blobs" -type f | wc -l)" "0 0 1" \
   "a body shorter than its Content-Length leaves nothing"

# --- dependencies: ?depends=NAME%20CONSTRAINT, repeatable
# put_pkg PATH FILE: PUT FILE with Expect: 100-continue; sets STATUS, BODY
# and SENT, the body bytes curl sent (0 when answered before the body)
put_pkg() {
    local out
    out=$(curl -s -o "$TMP/body" -w '%{http_code} %{size_upload}' "${H[@]}" -X PUT \
        -H 'Expect: 100-continue' --data-binary @"$2" "$URL$1")
    STATUS=${out% *}
    SENT=${out#* }
    BODY=$(cat "$TMP/body")
}
# blob_gone FILE: its bytes cannot be downloaded and have no file under blobs/
blob_gone() {
    local digest
    digest=$(sha256 "$1")
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "$URL/v1/blobs/sha256:$digest")" = 404 ] &&
        [ -z "$(find "$TMP/store/blobs" -name "$digest*")" ]
}
printf 'collector 0.95.0\n' >"$TMP/collector"
printf 'base library 1.2.0\n' >"$TMP/baselib"
req PUT "/v1/packages/otelcol-contrib/0.95.0?platform=linux/amd64" --data-binary @"$TMP/collector"
FIRST=$STATUS
req PUT "/v1/packages/base-lib/1.2.0?platform=any" --data-binary @"$TMP/baselib"
is "$FIRST $STATUS" "201 201" "two primary packages to depend on"

head -c 100000 /dev/urandom >"$TMP/helper-amd64"
put_pkg "/v1/packages/helper/1.0.0?platform=linux/amd64&type=addon&depends=otelcol-contrib%20%3E%3D0.90.0%20%3C1.0.0&depends=base-lib" \
    "$TMP/helper-amd64"
is "$STATUS $SENT" "201 100000" "an upload with two met depends is stored"
req GET /v1/packages/helper/1.0.0
is "$STATUS $(json '.dependencies | tojson')" \
   '200 [{"name":"otelcol-contrib","version":">=0.90.0 <1.0.0"},{"name":"base-lib","version":"*"}]' \
   "the manifest lists both, %20 and %3E%3D decoded, NAME alone as '*'"

head -c 100000 /dev/urandom >"$TMP/helper-arm64"
put_pkg "/v1/packages/helper/1.0.0?platform=linux/arm64&type=addon&depends=base-lib%20%5E1.2" \
    "$TMP/helper-arm64"
req GET /v1/packages/helper/1.0.0
is "$STATUS $(json '.artifacts | length') $(json '.dependencies | tojson')" \
   '200 2 [{"name":"otelcol-contrib","version":">=0.90.0 <1.0.0"},{"name":"base-lib","version":"^1.2"}]' \
   "another platform's depends replaces the constraint of the same name and keeps the rest"

head -c 100000 /dev/urandom >"$TMP/helper-unmet"
put_pkg "/v1/packages/helper/2.0.0?platform=linux/amd64&type=addon&depends=otelcol-contrib%20%3E%3D5.0.0&depends=base-lib" \
    "$TMP/helper-unmet"
is "$STATUS $(error_code)" "409 DEPENDENCY" "an unmet dependency: 409 DEPENDENCY"
is "$(json .error.message)" \
   "package: helper 2.0.0: unmet dependency: otelcol-contrib >=5.0.0 (no matching version)" \
   "the message names the unmet dependency, and only it"
req GET /v1/packages/helper/2.0.0
is "$STATUS" "404" "the refused version was not stored"
blob_gone "$TMP/helper-unmet"
ok $? "the refused upload's blob is withdrawn: not downloadable, no file under blobs/"
put_pkg "/v1/packages/helper/2.0.0?platform=linux/amd64&type=addon&depends=otelcol-contrib%20%3E%3D5.0.0&force=1" \
    "$TMP/helper-unmet"
is "$STATUS $(json '.dependencies | tojson')" '201 [{"name":"otelcol-contrib","version":">=5.0.0"}]' \
   "force=1 stores it with the unmet dependency"

# refused before a byte of the body is read: curl sends none after the answer
head -c 2000000 /dev/urandom >"$TMP/dep-body"
bad_depends() { # bad_depends DESCRIPTION QUERY EXPECTED-MESSAGE-START [EXPECTED-END]
    put_pkg "/v1/packages/helper/3.0.0?platform=linux/amd64&type=addon&$2" "$TMP/dep-body"
    local message start end
    message=$(json .error.message)
    start=${message:0:${#3}}
    end=${4:+${message: -${#4}}}
    is "$STATUS $(error_code) $SENT|$start|$end" "400 INVALID 0|$3|${4:-}" \
       "$1: 400 INVALID before the body, naming depends and the value"
}
bad_depends "a bad name" "depends=Bad_Name%20%3E%3D1.0.0" \
    "depends: 'Bad_Name >=1.0.0': name: invalid character 'B' at position 1 (names match [a-z0-9][a-z0-9._-]*)"
bad_depends "a bad constraint, with the library's reason" "depends=base-lib%20%3E%3E1" \
    "depends: 'base-lib >>1': constraint: expected the major number or a wildcard at position 1 ('>') in \">[>]1\""
bad_depends "a name given twice" "depends=base-lib&depends=otelcol-contrib&depends=base-lib%20%5E1" \
    "depends: 'base-lib' is given twice"
bad_depends "'+' is a plus, not a space" "depends=base-lib+%5E1" \
    "depends: 'base-lib+^1': name: invalid character '+' at position 9"
bad_depends "an empty value" "platform=any&depends=base-lib&depends=" \
    "depends: empty (give NAME, or NAME%20CONSTRAINT)"
bad_depends "a bad escape" "depends=base-lib%2" "depends: bad escape, NUL or longer than 511 bytes"
bad_depends "a value over 511 bytes" "depends=base-lib%20$(printf '%0600d' 1)" \
    "depends: bad escape, NUL or longer than 511 bytes"
bad_depends "a constraint over 256 bytes (not 413)" "depends=base-lib%20%3E%3D1.0.0$(printf '%%20%.0s' $(seq 250))" \
    "depends: 'base-lib >=1.0.0 " "': constraint: longer than 256 bytes"
MANY=$(for i in $(seq 0 64); do printf '&depends=p%d' "$i"; done)
bad_depends "65 dependencies" "force=1$MANY" "depends: more than 64 dependencies"
MANY=$(for i in $(seq 1 64); do printf '&depends=p%d' "$i"; done)
put_pkg "/v1/packages/helper/3.0.0?platform=linux/amd64&type=addon&force=1$MANY" "$TMP/helper-amd64"
is "$STATUS $(json '.dependencies | length')" "201 64" "64 dependencies are taken"
is "$(count_tmp)" "0" "the refused uploads left nothing in tmp/"
blob_gone "$TMP/dep-body"
ok $? "and no blob of their body"

server_alive
ok $? "the server is still running"
finish
