#!/usr/bin/env bash
# Blob downloads: Range (resume byte for byte, suffix, 416), conditionals,
# and zstd from the .zst transfer copy.
. "$(dirname "$0")/server_common.sh"

start_server
H=(-H "Authorization: Bearer $AGENT")
# compressible but not trivial: text with random numbers
seq 1 400000 | awk 'BEGIN{srand(7)} {print $1, int(rand()*1000000)}' >"$TMP/blob"
SIZE=$(stat -c %s "$TMP/blob")
D=$(sha256 "$TMP/blob")
req POST /v1/blobs --data-binary @"$TMP/blob"
is "$STATUS $(json .digest)" "201 sha256:$D" "setup: a ${SIZE}-byte blob"
BURL="$URL/v1/blobs/sha256:$D"

# --- resume with Range
HALF=$((SIZE / 2))
STATUS=$(curl -s -D "$TMP/h" -o "$TMP/part" -w '%{http_code}' "${H[@]}" -r "0-$((HALF - 1))" "$BURL")
is "$STATUS $(stat -c %s "$TMP/part")" "206 $HALF" "Range: bytes=0-N gives 206 and the first half"
grep -qi "^content-range: bytes 0-$((HALF - 1))/$SIZE" "$TMP/h"
ok $? "Content-Range names the part and the total"
STATUS=$(curl -s -o "$TMP/part" -w '%{http_code}' "${H[@]}" -C - "$BURL")
is "$STATUS" "206" "curl -C - resumes with Range: bytes=$HALF-"
cmp -s "$TMP/part" "$TMP/blob"
ok $? "the resumed download matches byte for byte"
is "$(sha256 "$TMP/part")" "$D" "and hashes to the blob's digest"
STATUS=$(curl -s -o "$TMP/tail" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=-100' "$BURL")
is "$STATUS $(cmp -s "$TMP/tail" <(tail -c 100 "$TMP/blob"); echo $?)" "206 0" "a suffix range gives the last 100 bytes"
STATUS=$(curl -s -D "$TMP/h" -o "$TMP/body" -w '%{http_code}' "${H[@]}" -H "Range: bytes=$SIZE-" "$BURL")
BODY=$(cat "$TMP/body")
is "$STATUS $(error_code)" "416 INVALID" "a range past the end: 416 with a JSON body"
grep -qi "^content-range: bytes \*/$SIZE" "$TMP/h"
ok $? "416 carries Content-Range: bytes */SIZE"
STATUS=$(curl -s -o "$TMP/all" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=0-1,5-9' "$BURL")
is "$STATUS $(stat -c %s "$TMP/all")" "200 $SIZE" "several ranges are ignored: the whole blob"
STATUS=$(curl -s -o "$TMP/all" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=0-9' -H 'If-Range: "sha256:0000"' "$BURL")
is "$STATUS $(stat -c %s "$TMP/all")" "200 $SIZE" "If-Range with another ETag: the whole blob"
STATUS=$(curl -s -o "$TMP/all" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=0-9' -H "If-Range: \"sha256:$D\"" "$BURL")
is "$STATUS $(stat -c %s "$TMP/all")" "206 10" "If-Range with the ETag: the range"
STATUS=$(curl -s -o "$TMP/all" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=0-9' -H "If-Range: W/\"sha256:$D\"" "$BURL")
is "$STATUS $(stat -c %s "$TMP/all")" "200 $SIZE" "If-Range compares strongly: a weak ETag gets the whole blob"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" -H "If-None-Match: W/\"sha256:$D\"" "$BURL")
is "$STATUS" "304" "If-None-Match compares weakly: W/ETag gives 304"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" -H 'If-None-Match: "sha256:0000", *' "$BURL")
is "$STATUS" "304" "If-None-Match: * gives 304"

EMPTY=$(printf '' | sha256sum | cut -c1-64)
req POST /v1/blobs --data-binary ''
STATUS=$(curl -s -o "$TMP/empty" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=-100' "$URL/v1/blobs/sha256:$EMPTY")
is "$STATUS $(stat -c %s "$TMP/empty")" "200 0" "a suffix range over an empty blob: 200 with the (empty) blob, not 416"

# --- zstd
ZST=$(find "$TMP/store/blobs" -name '*.zst' | head -n 1)
ok "$([ -n "$ZST" ]; echo $?)" "the upload wrote a .zst transfer copy"
STATUS=$(curl -s -D "$TMP/h" -o "$TMP/z" -w '%{http_code}' "${H[@]}" -H 'Accept-Encoding: gzip, zstd' "$BURL")
is "$STATUS" "200" "GET with Accept-Encoding: zstd"
grep -qi '^content-encoding: zstd' "$TMP/h"
ok $? "Content-Encoding: zstd"
grep -qi "^etag: \"sha256:$D+zstd\"" "$TMP/h"
ok $? "the zstd representation has its own ETag"
ok "$([ "$(stat -c %s "$TMP/z")" -lt "$SIZE" ]; echo $?)" "the zstd body is smaller ($(stat -c %s "$TMP/z") < $SIZE)"
is "$(zstd -dc <"$TMP/z" | sha256sum | cut -c1-64)" "$D" "the zstd body decodes to the blob's digest"
STATUS=$(curl -s -D "$TMP/h" -o "$TMP/z2" -w '%{http_code}' "${H[@]}" -H 'Accept-Encoding: zstd' -r 0-99 "$BURL")
cmp -s "$TMP/z2" <(head -c 100 "$TMP/z")
is "$STATUS $?" "206 0" "a Range over the zstd representation gives its bytes"
STATUS=$(curl -s -D "$TMP/h" -o "$TMP/id" -w '%{http_code}' "${H[@]}" -H 'Accept-Encoding: zstd;q=0, gzip' "$BURL")
grep -qi '^content-encoding' "$TMP/h"
is "$STATUS $? $(sha256 "$TMP/id")" "200 1 $D" "zstd;q=0 gets the identity bytes"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" -H 'Accept-Encoding: zstd' -H "If-None-Match: \"sha256:$D\"" "$BURL")
is "$STATUS" "304" "a client holding the identity bytes gets 304 for the zstd variant too"

# --- served bytes are counted
req GET /metrics
echo "$BODY" | grep -q '^pkgstored_requests_total{route="/v1/blobs/{digest}",code="206"}'
ok $? "/metrics counts the 206 responses"
finish
