#!/bin/bash
# pkgstore-agent against the real pkgstored: a canary policy upgrades only
# the matching node, through all six steps, as seen in the fleet view;
# rolling out to everyone upgrades the rest; a blob altered on disk in the
# server's store is rejected at Verifying.
. "$(dirname "$0")/lib/agent.sh"
echo "1..11"
real_server
fleet() { curl -fsS -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL/v1/agents"; }
export -f fleet

LABELS='canary: "true", env: dev' new_node "$T/canary" "$URL" 2
LABELS='env: dev' new_node "$T/dev" "$URL" 2
LABELS='env: prod' new_node "$T/prod" "$URL" 2
for n in canary dev prod; do start_agent "$T/$n"; done
check "three agents heartbeat and appear in the fleet view" \
    wait_until 10 bash -c '[ "$(fleet | jq "[.nodes[].id] | sort == [\"canary\",\"dev\",\"prod\"]")" = true ]'

make_variant v2 "$T/v2" server-v2
push --name otelcol --version 2.0.0 "$T/v2" > "$T/push-v2.json"
check "v2 uploaded" jq -e '.version == "2.0.0"' "$T/push-v2.json"
policy set canary --package otelcol --version 2.0.0 --selector canary=true --priority 10 > /dev/null

check "canary node Upgraded to 2.0.0" bash -c 'wait_until 15 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$T/canary"
history_has_six() {
    local h
    h=$(curl -fsS -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL/v1/agents/canary" | jq -r '[.history[].status] | join(" ")')
    [[ "$h" == *"Downloading Verifying Validating Swapping Monitoring Upgraded"* ]]
}
# the agent journals a status before it reports it: give the report a moment
check "the server saw the six steps for the canary" wait_until 5 history_has_six
check "dev and prod untouched (still 1.0.0, no status)" bash -c 'for n in dev prod; do [ "$(collector_version "$0/$n")" = 1.0.0 ] && [ -z "$(state_status "$0/$n")" ] || exit 1; done' "$T"
check "fleet view: canary runs 2.0.0, the others 1.0.0" bash -c '[ "$(fleet | jq -c "[.nodes[] | {(.id): (.packages[0].version)}] | add")" = "{\"canary\":\"2.0.0\",\"dev\":\"1.0.0\",\"prod\":\"1.0.0\"}" ]'

policy set everyone --package otelcol --version 2.0.0 --priority 1 > /dev/null
check "rolled out to everyone: dev and prod Upgraded" bash -c 'for n in dev prod; do wait_until 15 status_is "$0/$n" Upgraded && [ "$(collector_version "$0/$n")" = 2.0.0 ] || exit 1; done' "$T"

# A blob altered on disk in the server's store (and its zstd copy removed,
# else that one would be served intact) is rejected by the agent.
make_variant v2 "$T/v3" server-v3
push --name otelcol --version 3.0.0 "$T/v3" > "$T/push-v3.json"
h=$(sha "$T/v3")
blob=$S/store/blobs/sha256/${h:0:2}/$h
chmod u+w "$blob"; printf 'X' | dd of="$blob" bs=1 seek=2000 conv=notrunc 2>/dev/null; rm -f "$blob.zst"
policy set canary --package otelcol --version 3.0.0 --selector canary=true --priority 10 > /dev/null
check "altered blob: canary UpgradeFailed at verify" bash -c 'wait_until 15 status_is "$0" UpgradeFailed && [[ "$(state_message "$0")" == *"verify: "* ]]' "$T/canary"
check "altered blob: canary still runs 2.0.0, healthy" bash -c '[ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$T/canary"
check "fleet view shows the UpgradeFailed" bash -c 'wait_until 5 bash -c "fleet | jq -e \".nodes[] | select(.id == \\\"canary\\\") | .last_status.status == \\\"UpgradeFailed\\\"\" > /dev/null"'
check "downloads used the server's zstd transfer copy" grep -q 'msg="download finished".*status=200 encoding=zstd' "$T/dev/agent.log"
[ "$FAILED" = 0 ] || { for n in canary dev; do diag "== $n"; dump "$T/$n/agent.log"; done; dump "$S/server.log"; }
