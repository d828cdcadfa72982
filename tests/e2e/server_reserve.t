#!/usr/bin/env bash
# A declared Content-Length reserves nothing before the bytes come
# (issue 9): three uploads that each declare 1 GiB and then send nothing
# hold no disk space, a declared size over the free space is refused at
# once with 507, and the abandoned uploads leave nothing behind.
. "$(dirname "$0")/server_common.sh"

CLIENT="$SRC/tests/fixtures/slow-client.pl"
GIB=1073741824

# reserved_bytes: disk space held by the server's open temporary files
# (O_TMPFILE files in the store's tmp/, seen through /proc/PID/fd).
reserved_bytes() {
    local fd total=0 blocks
    for fd in /proc/"$SERVER_PID"/fd/*; do
        case "$(readlink "$fd")" in
        "$TMP/store/tmp/"*)
            blocks=$(stat -L -c '%b*%B' "$fd" 2>/dev/null) || continue
            total=$((total + blocks));;
        esac
    done
    echo "$total"
}
tmp_files() {
    local fd n=0
    for fd in /proc/"$SERVER_PID"/fd/*; do
        case "$(readlink "$fd")" in "$TMP/store/tmp/"*) n=$((n + 1));; esac
    done
    echo "$n"
}

start_server --max-upload 1048576T
mkfifo "$TMP/hold"
PIDS=()
for i in 1 2 3; do
    perl "$CLIENT" declare "$PORT" "127.0.0.$((i + 1))" "$ADMIN" "$GIB" "$TMP/ready$i" "$TMP/hold" &
    PIDS+=($!)
    EXTRA_PIDS+=($!)
done
exec 4>"$TMP/hold" # the clients hold their uploads open until this closes
for i in 1 2 3; do
    for _ in $(seq 1 300); do
        [ -s "$TMP/ready$i" ] && break
        sleep 0.1
    done
    # 100 Continue: the server has routed the request and opened the upload
    is "$(tr -d '\r' <"$TMP/ready$i")" "HTTP/1.1 100 Continue" "upload $i declaring 1 GiB was accepted"
done
is "$(tmp_files)" "3" "the three uploads each have their temporary file open"
RESERVED=$(reserved_bytes)
ok "$([ "$RESERVED" -lt 1048576 ]; echo $?)" \
   "three idle 1 GiB uploads hold less than 1 MiB of disk ($RESERVED bytes)"

# a declared size that cannot fit: refused before the body is sent
FREE=$(df -B1 --output=avail "$TMP/store" | tail -1)
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -X POST \
    -H "Content-Length: $((FREE * 2))" -H 'Expect: 100-continue' --data-binary '' "$URL/v1/blobs")
BODY=$(cat "$TMP/body")
is "$STATUS $(error_code)" "507 NOSPC" "a Content-Length of twice the free space: 507 at once"
diag "$(json .error.message)"

exec 4>&-
for pid in "${PIDS[@]}"; do wait "$pid"; done
for _ in $(seq 1 300); do
    [ "$(grep -c 'msg="upload aborted"' "$TMP/server.log")" -ge 3 ] && break
    sleep 0.1
done
is "$(grep -c 'msg="upload aborted"' "$TMP/server.log")" "3" "the three abandoned uploads were aborted"
is "$(tmp_files)" "0" "no temporary file stays open"

# uploads still work and grow as the data comes
head -c 3000000 /dev/urandom >"$TMP/blob"
req POST /v1/blobs --data-binary @"$TMP/blob"
is "$STATUS $(json .size)" "201 3000000" "a 3 MB upload with Content-Length is stored"
curl -s -H "Authorization: Bearer $ADMIN" -o "$TMP/back" "$URL/v1/blobs/sha256:$(sha256 "$TMP/blob")"
cmp -s "$TMP/blob" "$TMP/back"
ok $? "and reads back identical"
finish
