#!/bin/bash
# Addons: sidecars installed under state_dir/addons/NAME/, started with args
# from the agent config or the manifest's annotations, restarted when they
# die, upgraded with fallback, stopped and removed when no longer offered.
. "$(dirname "$0")/lib/agent.sh"
echo "1..12"
d=$T/node; mkdir -p "$d/manifests/helper"
start_fake_server "$d"
ap=$(free_port); ah=$(free_port); hp=$(free_port); hh=$(free_port)
printf 'ports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/shipper.yaml"
printf 'ports: [%s]\nhealth_port: %s\n' "$hp" "$hh" > "$d/helper.yaml"
export ADDONS_YAML="addons:
  - name: shipper
    args: [\"--config\", \"$d/shipper.yaml\"]
    env: {SHIPPER_MODE: test}
    ports: [$ap]
    health_url: http://127.0.0.1:$ah/
    monitor_window_s: 1"
new_node "$d" "$FAKE_URL" 1
make_variant v1 "$d/shipper-1" shipper-1
make_variant crashes-at-start "$d/shipper-bad" shipper-bad
make_variant v2 "$d/shipper-2" shipper-2
make_variant v1 "$d/helper-1" helper-1
# the helper is not in the agent config: its args come from the manifest
jq -n --arg cfg "$d/helper.yaml" '{schemaVersion: 1, name: "helper", version: "1.0.0", type: "addon",
    annotations: {"io.pkgstore.addon.args": (["--config", $cfg] | tojson)}}' > "$d/manifests/helper/1.0.0.json"

addon() { jq -r --arg n "$2" '.packages[] | select(.name == $n) | .'"$3" "$1/state/state.json" 2>/dev/null; }
addon_pid() { cat "$1/state/run/addon-$2.pid" 2>/dev/null; }
export -f addon addon_pid

start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/shipper-1" shipper 1.0.0 addon)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
check "addon installed under state_dir/addons/NAME and Upgraded" bash -c 'wait_until 15 bash -c "[ \"\$(addon \"$0\" shipper status)\" = Upgraded ]" && [ "$(sha "$0/state/addons/shipper/shipper")" = "$(sha "$0/shipper-1")" ]' "$d"
check "addon runs with the configured args and is healthy" health_ok "$ah"
check "addon env from the config" bash -c 'tr "\0" "\n" < /proc/$(addon_pid "$0" shipper)/environ | grep -qx SHIPPER_MODE=test' "$d"
check "second addon runs with args from the manifest annotations" bash -c 'wait_until 15 health_ok "$1" && tr "\0" " " < /proc/$(addon_pid "$0" helper)/cmdline | grep -q -- "--config $0/helper.yaml"' "$d" "$hh"
check "heartbeat lists the addons" wait_until 5 bash -c 'tail -1 "$0/heartbeats.jsonl" | jq -e "[.packages[] | select(.type == \"addon\") | .name] | sort == [\"helper\", \"shipper\"]" > /dev/null' "$d"

old=$(addon_pid "$d" shipper)
kill -KILL "$old"
check "a dead addon is restarted" bash -c 'wait_until 10 bash -c "p=\$(addon_pid \"$0\" shipper); [ -n \"\$p\" ] && [ \"\$p\" != $1 ] && health_ok $2"' "$d" "$old" "$ah"
check "the collector was not touched" node_healthy "$d"

set_offers "$d" "$(offer_json "$d" "$d/shipper-bad" shipper 1.1.0 addon)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
check "a failing addon upgrade rolls back" bash -c 'wait_until 15 bash -c "[ \"\$(addon \"$0\" shipper status)\" = RolledBack ]" && [ "$(sha "$0/state/addons/shipper/shipper")" = "$(sha "$0/shipper-1")" ] && wait_until 5 health_ok "$1"' "$d" "$ah"
set_offers "$d" "$(offer_json "$d" "$d/shipper-2" shipper 2.0.0 addon)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
check "a good addon upgrade succeeds" bash -c 'wait_until 15 bash -c "[ \"\$(addon \"$0\" shipper status)\$(addon \"$0\" shipper version)\" = Upgraded2.0.0 ]" && wait_until 5 health_ok "$1"' "$d" "$ah"

hpid=$(addon_pid "$d" helper)
set_offers "$d" "$(offer_json "$d" "$d/shipper-2" shipper 2.0.0 addon)"
check "an addon no longer offered is stopped" bash -c 'wait_until 10 bash -c "! kill -0 $1 2>/dev/null"' "$d" "$hpid"
check "and removed with its directory and state" bash -c 'wait_until 5 bash -c "[ ! -e \"$0/state/addons/helper\" ] && [ -z \"\$(addon \"$0\" helper name)\" ]"' "$d"
check "the other addon keeps running" health_ok "$ah"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
