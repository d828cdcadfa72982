#!/usr/bin/env bash
# Streaming uploads: a 1 GiB body with bounded server memory, concurrent
# uploads of the same blob, and aborted or rejected uploads leave nothing.
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

server_alive
ok $? "the server is still running"
finish
