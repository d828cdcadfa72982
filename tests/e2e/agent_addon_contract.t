#!/bin/bash
# Issue 11 finding 1, against the real pkgstored: once an addon is
# Upgraded the server no longer offers it, but its policy still targets it
# ("targets" in the heartbeat reply, docs/api.md "The addon contract"), so
# the agent keeps it: installed once, its data/ intact over many
# heartbeats. Deleting the policy removes it; a reply without "targets"
# (an older server) removes nothing.
. "$(dirname "$0")/lib/agent.sh"
echo "1..11"
real_server
d=$T/node; mkdir -p "$d"
ap=$(free_port); ah=$(free_port)
printf 'ports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/shipper.yaml"
export ADDONS_YAML="addons:
  - name: shipper
    args: [\"--config\", \"$d/shipper.yaml\"]
    ports: [$ap]
    health_url: http://127.0.0.1:$ah/
    monitor_window_s: 1"
new_node "$d" "$URL" 1
make_variant v1 "$d/shipper" contract-shipper
server_add --name shipper --version 1.0.0 --type addon --entrypoint shipper "$d/shipper" > /dev/null
policy set shippers --package shipper --version 1.0.0 > /dev/null
start_agent "$d"

check "the addon is installed, Upgraded and healthy" \
    bash -c 'wait_until 20 bash -c "[ \"\$(journal_of \"$0\" shipper status)\" = Upgraded ]" && wait_until 5 health_ok "$1"' "$d" "$ah"
mkdir -p "$d/state/addons/shipper/data"
echo precious > "$d/state/addons/shipper/data/keep.txt"
pid=$(cat "$d/state/run/addon-shipper.pid")
# The server does not offer what runs already, but names it in targets.
check "heartbeat reply: no offer for shipper, a target Upgraded with its digest" \
    bash -c 'curl -fsS -H "Authorization: Bearer $(cat "$AGENT_TOKEN_FILE")" "$URL/v1/agents/heartbeat" \
        -d "$(tail -0 /dev/null; jq -nc --arg d "sha256:$(sha "$0")" "{node_id:\"probe\",platform:\"$1\",packages:[{name:\"shipper\",type:\"addon\",version:\"1.0.0\",digest:\$d}]}")" |
        jq -e "(.offers | map(select(.name == \"shipper\")) | length == 0) and (.targets | map(select(.name == \"shipper\" and .state == \"Upgraded\" and .digest != null)) | length == 1)" > /dev/null' \
    "$d/shipper" "$(jq -r .node.platform <("$B/pkgstore-agent" --config "$d/agent.yaml" --check-config --json))"

# Wait for 10 more heartbeats (events: pkgstored's counter), then look.
wait_heartbeats 10 || diag "fewer than 10 heartbeats"
check "the agent started the addon's upgrade once ($(log_count "$d" 'msg="upgrade starting" package=shipper'))" \
    test "$(log_count "$d" 'msg="upgrade starting" package=shipper')" = 1
check "the agent never removed it" test "$(log_count "$d" 'removing" addon=shipper')" = 0
check "server history: the six steps once" \
    test "$(history_of node shipper)" = "Downloading Verifying Validating Swapping Monitoring Upgraded"
check "its data/ survived" grep -qx precious "$d/state/addons/shipper/data/keep.txt"
check "the same process runs, healthy" bash -c '[ "$(cat "$0/state/run/addon-shipper.pid")" = "$1" ] && kill -0 "$1" && health_ok "$2"' "$d" "$pid" "$ah"

# No policy, no target: the addon goes, with its directory.
policy rm shippers > /dev/null
check "without a policy the addon is stopped and removed" \
    bash -c 'wait_until 15 bash -c "[ ! -e \"$0/state/addons/shipper\" ] && [ -z \"\$(journal_of \"$0\" shipper name)\" ]" && ! kill -0 "$1" 2>/dev/null' "$d" "$pid"
check "the collector was not touched" node_healthy "$d"

# An older server (no "targets" in its replies) removes nothing: the
# scripted server offers an addon, then stops offering it.
f=$T/old; mkdir -p "$f"
FAKE_NO_TARGETS=1 start_fake_server "$f"
ADDONS_YAML="addons:
  - name: shipper
    args: [\"--config\", \"$d/shipper.yaml\"]
    ports: [$ap]
    health_url: http://127.0.0.1:$ah/
    monitor_window_s: 1" new_node "$f" "$FAKE_URL" 1
start_agent "$f"
set_offers "$f" "$(offer_json "$f" "$d/shipper" shipper 1.0.0 addon)"
wait_until 20 bash -c '[ "$(journal_of "$0" shipper status)" = Upgraded ]' "$f"
set_offers "$f"
lines=$(wc -l < "$f/heartbeats.jsonl")
wait_until 20 bash -c '[ "$(wc -l < "$0")" -ge $(( $1 + 6 )) ]' "$f/heartbeats.jsonl" "$lines"
check "old server: 6 heartbeats since the offer was withdrawn" \
    test "$(wc -l < "$f/heartbeats.jsonl")" -ge $((lines + 6))
check "old server: the addon no longer offered stays installed and running" \
    bash -c '[ "$(journal_of "$0" shipper status)" = Upgraded ] && [ -x "$0/state/addons/shipper/shipper" ] && health_ok "$1" && [ "$(log_count "$0" "removing")" = 0 ]' "$f" "$ah"
[ "$FAILED" = 0 ] || { dump "$d/agent.log" "$S/server.log"; }
