#!/bin/bash
# Issue 11 finding 12, against the real pkgstored: a truncated zstd
# transfer copy (<blob>.zst) on the server must not block upgrades: after a
# failed zstd transfer the helper downloads the identity bytes at once.
. "$(dirname "$0")/lib/agent.sh"
echo "1..5"
real_server
export RETRY_INITIAL=1
real_node 1
make_variant v2 "$d/v2" zstd-v2
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
h=$(sha "$d/v2")
zst=$S/store/blobs/sha256/${h:0:2}/$h.zst
check "the server keeps a zstd transfer copy of the blob" test -s "$zst"
chmod u+w "$zst"; truncate -s $(( $(stat -c %s "$zst") / 2 )) "$zst"
check "the copy is cut in half (it no longer decodes)" bash -c '! zstd -t -q "$0" 2>/dev/null' "$zst"
policy set everyone --package otelcol --version 2.0.0 > /dev/null
start_agent "$d"
check "Upgraded to 2.0.0 at the first attempt" \
    bash -c 'wait_until 30 bash -c "[ \"\$(journal_of \"$0\" otelcol status)\$(journal_of \"$0\" otelcol version)\" = Upgraded2.0.0 ]" && [ "$(log_count "$0" "msg=\"upgrade starting\"")" = 1 ]' "$d"
check "the helper fell back to the identity encoding" \
    bash -c 'grep -q "zstd transfer failed, downloading without encoding" "$0/agent.log" && grep -q "download finished.*status=200 encoding=identity bytes=$1" "$0/agent.log"' "$d" "$(stat -c %s "$d/v2")"
check "v2 runs, healthy" bash -c '[ "$(exe_sha "$(collector_pid "$0")")" = "$1" ] && node_healthy "$0"' "$d" "$h"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
