#!/bin/bash
# Issue 11 finding 8, against the real pkgstored with an agent token: the
# offer carries what the agent needs (the manifest's annotations, with the
# addon's args and env, and its dependencies), so the agent never asks for
# the admin-only manifest. An addon that needs otelcol >=5.0.0 is not
# offered to a node running 1.0.0 (its target is Incompatible, with the
# reason) and is installed once the node runs 5.0.0. The agent checks
# dependencies again itself (against a server that offers regardless).
. "$(dirname "$0")/lib/agent.sh"
echo "1..10"
real_server
export RETRY_INITIAL=1
d=$T/node; mkdir -p "$d"
tp=$(free_port); th=$(free_port)
printf 'ports: [%s]\nhealth_port: %s\n' "$tp" "$th" > "$d/tracer.yaml"
# health only: the args and env come with the offer
export ADDONS_YAML="addons:
  - name: tracer
    ports: [$tp]
    health_url: http://127.0.0.1:$th/
    monitor_window_s: 1"
new_node "$d" "$URL" 1
make_variant v2 "$d/v5" deps-otelcol-5
make_variant v1 "$d/tracer" deps-tracer
push --name otelcol --version 5.0.0 "$d/v5" > /dev/null
server_add --name tracer --version 1.0.0 --type addon --entrypoint tracer \
    --depends 'otelcol >=5.0.0' \
    --annotation "io.pkgstore.addon.args=[\"--config\",\"{addon_dir}/../../../tracer.yaml\"]" \
    --annotation 'io.pkgstore.addon.env={"TRACER_MODE":"edge"}' "$d/tracer" > /dev/null
policy set tracers --package tracer --version 1.0.0 > /dev/null
start_agent "$d"
wait_heartbeats 6 30
check "on otelcol 1.0.0 the addon is not offered: its target is Incompatible, with the reason" \
    bash -c 'curl -fsS -H "Authorization: Bearer $(cat "$AGENT_TOKEN_FILE")" "$URL/v1/agents/heartbeat" \
        -d "{\"node_id\":\"probe\",\"platform\":\"$(jq -r .node.platform <("$B/pkgstore-agent" --config "$0/agent.yaml" --check-config --json))\",\"packages\":[{\"name\":\"otelcol\",\"type\":\"primary\",\"version\":\"1.0.0\"}]}" |
        jq -e "(.offers | length == 0) and (.targets[] | select(.name == \"tracer\") | .state == \"Incompatible\" and .reason == \"needs otelcol >=5.0.0; the node runs 1.0.0\")" > /dev/null' "$d"
check "the agent did not install it" \
    bash -c '[ "$(log_count "$0" "upgrade starting\" package=tracer")" = 0 ] && [ ! -e "$0/state/addons/tracer/tracer" ]' "$d"
check "the policy shows the node Incompatible" \
    test "$(policy --json show tracers | jq -r '.status.nodes[] | select(.id == "node") | .state')" = Incompatible

policy set everyone --package otelcol --version 5.0.0 > /dev/null
check "once the node runs otelcol 5.0.0 the addon is offered and Upgraded" \
    bash -c 'wait_until 40 bash -c "[ \"\$(journal_of \"$0\" tracer status)\" = Upgraded ]" && [ "$(journal_of "$0" otelcol version)" = 5.0.0 ]' "$d"
check "it runs with the args of its annotations, healthy" \
    bash -c 'c=$(tr "\0" " " < /proc/$(cat "$0/state/run/addon-tracer.pid")/cmdline); [[ "$c" == *"--config $0/state/addons/tracer/../../../tracer.yaml"* ]] && wait_until 5 health_ok "$1"' "$d" "$th"
check "and the env of its annotations" \
    bash -c 'tr "\0" "\n" < /proc/$(cat "$0/state/run/addon-tracer.pid")/environ | grep -qx TRACER_MODE=edge' "$d"
check "the agent never asked for the admin-only manifest route (no 403 on it)" \
    bash -c '! admin /metrics | grep -q "pkgstored_requests_total{route=\"/v1/packages[^\"]*\",code=\"403\"}" && ! grep -q "HTTP 403" "$0/agent.log"' "$d"

# The agent's own check, against a server that offers regardless.
f=$T/fake; mkdir -p "$f"
start_fake_server "$f"
ADDONS_YAML="addons:
  - name: tracer
    args: [\"--config\", \"$d/tracer.yaml\"]" new_node "$f" "$FAKE_URL" 1
start_agent "$f"
o=$(offer_json "$f" "$d/tracer" tracer 1.0.0 addon)
set_offers "$f" "${o%\}},\"dependencies\":[{\"name\":\"otelcol\",\"version\":\">=5.0.0\"}]}"
check "offered anyway: the agent refuses, UpgradeFailed with the unmet dependency" \
    wait_until 20 bash -c '[[ "$(journal_of "$0" tracer status) $(journal_of "$0" tracer message)" == "UpgradeFailed dependencies: requires otelcol >=5.0.0; this node runs otelcol 1.0.0" ]]' "$f"
wait_until 20 bash -c '[ "$(wc -l < "$0")" -ge 8 ]' "$f/heartbeats.jsonl"
check "and installs nothing of it" \
    bash -c '[ ! -e "$0/state/addons/tracer/tracer" ] && [ "$(log_count "$0" "upgrade starting")" = 0 ]' "$f"
check "the refusal is reported once, not on every heartbeat" \
    test "$(log_count "$f" 'status=UpgradeFailed')" = 1
[ "$FAILED" = 0 ] || { dump "$d/agent.log" "$f/agent.log"; }
