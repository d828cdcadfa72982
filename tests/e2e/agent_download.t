#!/bin/bash
# pkgstore-agent downloads: a corrupted blob is rejected at Verifying, an
# interrupted download resumes with Range, a body larger than the offered
# size is refused, and an absolute url (a mirror) works; transient failures
# retry with backoff.
. "$(dirname "$0")/lib/agent.sh"
echo "1..16"
W=1
export RETRY_INITIAL=1

# --- corrupted blob served under the offered digest
d=$T/corrupt; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/v2" corrupt-v2
offer=$(offer_json "$d" "$d/v2" otelcol 2.0.0)
h=$(sha "$d/v2")
printf 'X' | dd of="$d/blobs/$h" bs=1 seek=1000 conv=notrunc 2>/dev/null   # flip a byte, same size
v1=$(sha "$d/bin/otelcol")
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$offer"
check "corrupt: UpgradeFailed at verify" bash -c 'wait_until 10 status_is "$0" UpgradeFailed && [[ "$(state_message "$0")" == *"verify: "*"sha256:"* ]]' "$d"
check "corrupt: never swapped, old binary live and healthy" bash -c '[ "$(sha "$0/bin/otelcol")" = "$1" ] && node_healthy "$0" && ! grep -q Swapping "$0/heartbeats.jsonl"' "$d" "$v1"
check "corrupt: retried with backoff" wait_until 15 bash -c '[[ "$(state_message "$0")" == *"attempt 2"* ]]' "$d"
check "corrupt: the bad download is not kept" bash -c '! ls "$0"/state/tmp/*.part 2>/dev/null | grep -q .' "$d"
cp "$d/v2" "$d/blobs/$h"   # the mirror is repaired
check "corrupt: a later retry succeeds once the blob is good" wait_until 20 status_is "$d" Upgraded

# --- interrupted download resumes with Range
d=$T/resume; mkdir -p "$d"
start_fake_server "$d" --cut-after 20000; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/v2" resume-v2
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
check "resume: first attempt cut, reported UpgradeFailed (download)" bash -c 'wait_until 10 grep -q "\"status\":\"UpgradeFailed\",\"message\":\"download: " "$0/heartbeats.jsonl"' "$d"
check "resume: next attempt resumes at the cut offset" wait_until 15 grep -q 'msg="resuming download".*offset=20000' "$d/agent.log"
check "resume: Upgraded with the right binary" bash -c 'wait_until 15 status_is "$0" Upgraded && [ "$(sha "$0/bin/otelcol")" = "$(sha "$0/v2")" ]' "$d"
check "resume: the server saw one cut" grep -q "cutting" "$d/server.log"

# --- body larger than the offered size
d=$T/oversize; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/v2" oversize-v2
offer=$(offer_json "$d" "$d/v2" otelcol 2.0.0)
size=$(stat -c %s "$d/v2")
offer=${offer/\"size\":$size/\"size\":$((size - 100))}
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$offer"
check "oversize: refused while downloading" bash -c 'wait_until 10 status_is "$0" UpgradeFailed && [[ "$(state_message "$0")" == *"body grows past the offered size of $1 bytes"* ]]' "$d" $((size - 100))
check "oversize: old collector untouched and healthy" bash -c '[ "$(collector_version "$0")" = 1.0.0 ] && node_healthy "$0"' "$d"

# --- absolute url: a mirror (another server) holds the blob
d=$T/mirror; mkdir -p "$d/mirror"
start_fake_server "$d/mirror"; mirror=$FAKE_URL
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/v2" mirror-v2
offer=$(offer_json "$d/mirror" "$d/v2" otelcol 2.0.0)
offer=${offer/\"url\":\"\//\"url\":\"$mirror/}
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$offer"
check "mirror: Upgraded from an absolute url" bash -c 'wait_until 10 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ]' "$d"
# --- an archive artifact: the entrypoint is extracted, then validated and installed
d=$T/archive; mkdir -p "$d/pkg/bin"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/pkg/bin/otelcol" archive-v2
printf 'docs\n' > "$d/pkg/README"
tar -C "$d/pkg" -czf "$d/otelcol.tar.gz" bin/otelcol README
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/otelcol.tar.gz" otelcol 2.0.0 primary tar+gzip bin/otelcol)"
check "archive: tar+gzip offer Upgraded with the extracted entrypoint" bash -c 'wait_until 10 status_is "$0" Upgraded && [ "$(sha "$0/bin/otelcol")" = "$(sha "$0/pkg/bin/otelcol")" ] && node_healthy "$0"' "$d"
check "archive: the extraction directory is cleaned up" wait_until 5 bash -c '! ls -d "$0"/state/tmp/extract.* 2>/dev/null | grep -q .' "$d"

# --- leftovers in state/tmp from a crash or an offer withdrawn mid-download
d=$T/stale; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
make_variant v2 "$d/v2" stale-v2
mkdir -p "$d/state/tmp/extract.Ab12Cd/bin"
printf 'half\n' > "$d/state/tmp/extract.Ab12Cd/bin/otelcol"
stale_part="$d/state/tmp/$(printf 'withdrawn' | sha256sum | cut -c1-64).part"
head -c 4096 /dev/zero > "$stale_part"
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
check "stale: Upgraded" bash -c 'wait_until 10 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ]' "$d"
check "stale: a dead extraction and a part nobody offers are removed" bash -c '[ ! -e "$0/state/tmp/extract.Ab12Cd" ] && [ ! -e "$1" ]' "$d" "$stale_part"

[ "$FAILED" = 0 ] || for n in corrupt resume oversize mirror archive stale; do diag "== $n"; dump "$T/$n/agent.log"; done
