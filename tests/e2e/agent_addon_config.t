#!/bin/bash
# Issue 13 section 2, against the real pkgstored and a real agent: an
# addon's configuration from its policy (arguments, environment, a config
# file) reaches a node that already runs the version, is applied (the addon
# runs with it), a bad one (the addon exits, or fails its health check) is
# rolled back to the last good one with the reason reported and is not
# applied again over many heartbeats, a raised retry generation tries it
# once more, and removing the configuration
# brings back the manifest's arguments. An addon that needs its policy's
# configuration to start at all is installed with it; a new version that
# fails with a new configuration is rolled back as a pair, and is tried
# again (once) when the configuration changes. The policy side refuses
# what it cannot mean (a configuration for a primary package, bad names, a
# file over the cap).
. "$(dirname "$0")/lib/agent.sh"
echo "1..51"
real_server
d=$T/node; mkdir -p "$d"
ap=$(free_port); ah=$(free_port)
rp=$(free_port); rh=$(free_port)
pp=$(free_port); ph=$(free_port)
printf 'ports: [%s]\nhealth_port: %s\n' "$pp" "$ph" > "$d/pinned.yaml"
# the manifest's arguments: the addon's own default configuration
printf 'ports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/default.yaml"
# the policy's files: the same ports (the local YAML's health spec), a
# marker comment, and one the fake addon refuses at start
printf '# from the policy, one\nports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/one.yaml"
printf '# from the policy, three\nports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/three.yaml"
printf 'ports: [%s]\nhealth_port: %s\nbogus_key: 1\n' "$ap" "$ah" > "$d/bad.yaml"
# one it runs with, but its health endpoint is not where the YAML looks
printf 'ports: [%s]\nhealth_port: %s\n' "$ap" "$(free_port)" > "$d/unhealthy.yaml"
printf '# relay one\nports: [%s]\nhealth_port: %s\n' "$rp" "$rh" > "$d/relay1.yaml"
printf '# relay two\nports: [%s]\nhealth_port: %s\n' "$rp" "$rh" > "$d/relay2.yaml"
printf 'ports: [%s]\nhealth_port: %s\nbogus_key: 2\n' "$rp" "$rh" > "$d/relay-bad.yaml"
# the local YAML gives the health spec only: arguments come from the
# policy, else from the manifest
export ADDONS_YAML="addons:
  - name: shipper
    ports: [$ap]
    health_url: http://127.0.0.1:$ah/
    monitor_window_s: 1
  - name: relay
    ports: [$rp]
    health_url: http://127.0.0.1:$rh/
    monitor_window_s: 1
  - name: pinned
    args: [\"--config\", \"$d/pinned.yaml\"]
    env: {PIN_LOCAL: yaml, PIN_BOTH: yaml}
    ports: [$pp]
    health_url: http://127.0.0.1:$ph/
    monitor_window_s: 1"
new_node "$d" "$URL" 1
make_variant v1 "$d/shipper" config-shipper
make_variant v1 "$d/otelcol-2" config-otelcol
server_add --name shipper --version 1.0.0 --type addon --entrypoint shipper \
    --annotation "io.pkgstore.addon.args=[\"--config\",\"$d/default.yaml\"]" "$d/shipper" > /dev/null
server_add --name otelcol --version 2.0.0 --type primary "$d/otelcol-2" > /dev/null
# relay has no arguments of its own: without its policy's it cannot start
make_variant v1 "$d/relay-1" config-relay-1
make_variant v1 "$d/relay-2" config-relay-2
make_variant v1 "$d/relay-3" config-relay-3
server_add --name relay --version 1.0.0 --type addon --entrypoint relay "$d/relay-1" > /dev/null
server_add --name relay --version 2.0.0 --type addon --entrypoint relay "$d/relay-2" > /dev/null
server_add --name relay --version 3.0.0 --type addon --entrypoint relay "$d/relay-3" > /dev/null
make_variant v1 "$d/pinned" config-pinned
server_add --name pinned --version 1.0.0 --type addon --entrypoint pinned "$d/pinned" > /dev/null

shipper_pid() { cat "$d/state/run/addon-shipper.pid" 2>/dev/null; }
cmdline() { tr '\0' ' ' < "/proc/$(shipper_pid)/cmdline" 2>/dev/null; }
mark() { tr '\0' '\n' < "/proc/$(shipper_pid)/environ" 2>/dev/null | grep '^SHIP_MARK=' ; }
applying() { log_count "$d" 'msg="config applying" addon=shipper'; }
policy_digest() { admin /v1/policies/shippers | jq -r '.config_digest // "none"'; }
node_digest() { admin /v1/agents/node | jq -r '.packages[] | select(.name == "shipper") | .config_digest // "none"'; }
journal_digest() { jq -r '.packages[] | select(.name == "shipper") | .config.digest // "none"' "$d/state/state.json" 2>/dev/null; }
conf=$d/state/addons/shipper/policy.conf
# a policy whose configuration is a file the addon reads through
# {config_file}: shipper's with a SHIP_MARK, relay's at a version
shipper_policy() { # FILE MARK
    policy set shippers --package shipper --version 1.0.0 --config-file "$1" \
        --arg --config --arg '{config_file}' --env "SHIP_MARK=$2" > /dev/null
}
relay_policy() { # VERSION FILE
    policy set relays --package relay --version "$1" --config-file "$2" \
        --arg --config --arg '{config_file}' > /dev/null
}
export -f shipper_pid cmdline mark applying policy_digest node_digest journal_digest
export d conf

# --- the policy side: what a configuration may not be
check "a configuration on a primary package's policy is refused, naming config" \
    bash -c 'out=$(policy set col --package otelcol --version 2.0.0 --arg --x 2>&1); [ $? -ne 0 ] && [[ "$out" == *"config: otelcol 2.0.0 is a primary package"* ]] || { echo "# $out"; exit 1; }'
check "an environment name that is not one is refused, naming it" \
    bash -c 'out=$(policy set s --package shipper --version 1.0.0 --env 1X=a 2>&1); [ $? -ne 0 ] && [[ "$out" == *"config.env.1X: not a variable name"* ]] || { echo "# $out"; exit 1; }'
head -c 70000 /dev/zero | tr '\0' a > "$d/big.yaml"
check "pkgstore-policy refuses a file over 64 KiB, naming the cap" \
    bash -c 'out=$(policy set s --package shipper --version 1.0.0 --config-file "$0" 2>&1); [ $? = 2 ] && [[ "$out" == *"70000 bytes, more than 65536 (config.file"* ]] || { echo "# $out"; exit 1; }' "$d/big.yaml"
check "an unreadable --config-file is a usage error (exit 2), before the server is asked" \
    bash -c '"$B/pkgstore-policy" --server http://127.0.0.1:1 set s --package shipper --version 1.0.0 --config-file "$0/missing" 2> /dev/null; [ $? = 2 ]' "$d"
check "so does the server, naming config.file" \
    bash -c 'jq -n --rawfile f "$0" "{package:\"shipper\",version:\"1.0.0\",config:{file:\$f}}" | curl -sS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL/v1/policies/s" --data-binary @- | grep -q "config.file: 70000 bytes, more than 65536"' "$d/big.yaml"
check "the PUT body's unknown config member is refused" \
    bash -c 'curl -sS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL/v1/policies/s" -d "{\"package\":\"shipper\",\"version\":\"1.0.0\",\"config\":{\"argz\":[]}}" | grep -q "config.argz: unknown member"'
check "no refused policy was stored" bash -c '[ "$(admin /v1/policies | jq "[.policies[] | select(.name == \"col\" or .name == \"s\")] | length")" = 0 ]'

# --- the addon, installed without a configuration from its policy
policy set shippers --package shipper --version 1.0.0 > /dev/null
start_agent "$d"
check "the addon is installed and runs with the manifest's arguments" \
    bash -c 'wait_until 20 bash -c "[ \"\$(journal_of \"$d\" shipper status)\" = Upgraded ]" && wait_until 5 health_ok "$0" && [[ "$(cmdline)" == *"--config $d/default.yaml"* ]]' "$ah"

# --- a configuration reaches the node already on the version
shipper_policy "$d/one.yaml" one
D1=$(policy_digest)
check "the policy holds the configuration and its digest ($D1)" \
    bash -c '[[ "$0" == sha256:* ]] && admin /v1/policies/shippers | jq -e ".config.args == [\"--config\",\"{config_file}\"] and .config.env.SHIP_MARK == \"one\"" > /dev/null' "$D1"
check "the agent applies it: the journal records its digest" \
    wait_until 20 bash -c '[ "$(journal_digest)" = "$0" ] && [ "$(journal_of "$d" shipper status)" = Upgraded ]' "$D1"
check "policy.conf holds the policy's file, mode 0600" \
    bash -c 'cmp -s "$conf" "$d/one.yaml" && [ "$(stat -c %a "$conf")" = 600 ]'
check "the addon runs with the policy's arguments ({config_file} expanded)" \
    bash -c '[[ "$(cmdline)" == *"--config $conf"* ]] || { echo "# cmdline: $(cmdline)"; exit 1; }'
check "the addon runs with the policy's environment" bash -c '[ "$(mark)" = SHIP_MARK=one ]'
check "the addon is healthy" health_ok "$ah"
check "the server's view of the node has the applied digest" \
    wait_until 10 bash -c '[ "$(node_digest)" = "$0" ]' "$D1"
good_pid=$(shipper_pid)

# --- a bad configuration: the addon exits at start; rolled back
shipper_policy "$d/bad.yaml" two
D2=$(policy_digest)
check "a bad configuration is RolledBack with the reason" \
    wait_until 20 bash -c '[ "$(journal_of "$d" shipper status)" = RolledBack ] && [[ "$(journal_of "$d" shipper message)" == *"configuration ${0:0:19}: monitor: process exit 1"*"restored the previous configuration (${1:0:19})"* ]]' "$D2" "$D1"
check "the last good configuration is back: file, arguments, environment" \
    wait_until 5 bash -c 'cmp -s "$conf" "$d/one.yaml" && [[ "$(cmdline)" == *"--config $conf"* ]] && [ "$(mark)" = SHIP_MARK=one ] && health_ok "$0"' "$ah"
check "the journal and the server's view keep the good digest" \
    wait_until 10 bash -c '[ "$(journal_digest)" = "$0" ] && [ "$(node_digest)" = "$0" ]' "$D1"
check "the server's view of the node has the refusal, under retry 0" \
    wait_until 10 bash -c '[ "$(admin /v1/agents/node | jq -r ".packages[] | select(.name == \"shipper\") | .config_refused | \"\(.digest) \(.retry)\"")" = "$0 0" ]' "$D2"
check "the policy's status counts the node as refusing it" \
    bash -c '[ "$(admin /v1/policies/shippers | jq -c .status.config)" = "{\"applied\":0,\"refused\":1}" ] && policy show shippers | grep -q "applied on 0 node(s), rolled back on 1"'
check "the server's history has the rollback" \
    wait_until 10 bash -c '[[ "$(history_of node shipper)" == *"Swapping Monitoring RolledBack" ]]'
[ "$(shipper_pid)" != "$good_pid" ] || diag "the addon was not restarted"
# no loop: over ten heartbeats the bad configuration is not applied again
# (the server still names it: the node does not run it)
wait_heartbeats 10 || diag "fewer than 10 heartbeats"
check "applied twice in all (one, the bad one): $(applying)" test "$(applying)" = 2
check "the binary was installed once" test "$(log_count "$d" 'msg="upgrade starting" package=shipper')" = 1
check "the bad configuration is remembered as one, under the policy's retry generation" \
    bash -c 'jq -e --arg d "$0" ".bad[] | select(.digest == \$d and .package == \"shipper\" and .retry == 0 and .kind == \"config\")" "$d/state/state.json" > /dev/null' "$D2"

# --- a raised retry generation tries it once more, no more
policy retry shippers > /dev/null
check "after a retry the bad configuration is tried once more and rolled back" \
    wait_until 20 bash -c '[ "$(applying)" = 3 ] && [ "$(journal_of "$d" shipper status)" = RolledBack ] && [ "$(journal_digest)" = "$0" ]' "$D1"
wait_heartbeats 6 || diag "fewer than 6 heartbeats"
check "and then not again: $(applying)" test "$(applying)" = 3

# --- a configuration the addon runs with but fails its health check:
# rolled back the same way
shipper_policy "$d/unhealthy.yaml" unhealthy
DU=$(policy_digest)
check "a configuration that fails the health check is RolledBack with the reason" \
    wait_until 20 bash -c '[ "$(applying)" = 4 ] && [ "$(journal_of "$d" shipper status)" = RolledBack ] && [[ "$(journal_of "$d" shipper message)" == *"configuration ${0:0:19}: monitor: health http://127.0.0.1:$2/"*"restored the previous configuration (${1:0:19})"* ]]' "$DU" "$D1" "$ah"
check "the last good configuration runs again, healthy" \
    wait_until 5 bash -c '[ "$(journal_digest)" = "$0" ] && cmp -s "$conf" "$d/one.yaml" && [ "$(mark)" = SHIP_MARK=one ] && health_ok "$1"' "$D1" "$ah"

# --- a fix: a new configuration is applied
shipper_policy "$d/three.yaml" three
D3=$(policy_digest)
check "a new good configuration is applied" \
    wait_until 20 bash -c '[ "$(journal_digest)" = "$0" ] && [ "$(journal_of "$d" shipper status)" = Upgraded ] && cmp -s "$conf" "$d/three.yaml" && [ "$(mark)" = SHIP_MARK=three ] && health_ok "$1"' "$D3" "$ah"
check "the policy's status counts it applied" \
    wait_until 10 bash -c '[ "$(admin /v1/policies/shippers | jq -c .status.config)" = "{\"applied\":1,\"refused\":0}" ]'

# --- the configuration removed: the manifest's arguments again
policy set shippers --package shipper --version 1.0.0 > /dev/null
check "without a configuration the addon runs with the manifest's arguments again" \
    wait_until 20 bash -c '[ "$(journal_digest)" = none ] && [ "$(journal_of "$d" shipper status)" = Upgraded ] && [[ "$(cmdline)" == *"--config $d/default.yaml"* ]] && [ -z "$(mark)" ] && health_ok "$0"' "$ah"
check "policy.conf is removed" test ! -e "$conf"
check "the server's view has no configuration digest" \
    wait_until 10 bash -c '[ "$(node_digest)" = none ]'
wait_heartbeats 4 || diag "fewer than 4 heartbeats"
check "six applications in all: $(applying)" test "$(applying)" = 6

# --- relay: installed with its policy's configuration from the start
relay_cmdline() { tr '\0' ' ' < "/proc/$(cat "$d/state/run/addon-relay.pid" 2>/dev/null)/cmdline" 2>/dev/null; }
relay_digest() { jq -r '.packages[] | select(.name == "relay") | .config.digest // "none"' "$d/state/state.json" 2>/dev/null; }
relay_starts() { log_count "$d" 'msg="upgrade starting" package=relay'; }
export -f relay_cmdline relay_digest relay_starts
rconf=$d/state/addons/relay/policy.conf
relay_policy 1.0.0 "$d/relay1.yaml"
R1=$(admin /v1/policies/relays | jq -r .config_digest)
check "an addon that needs its policy's configuration is installed with it" \
    wait_until 20 bash -c '[ "$(journal_of "$d" relay status)$(journal_of "$d" relay version)" = Upgraded1.0.0 ] && [ "$(relay_digest)" = "$0" ] && cmp -s "$1" "$d/relay1.yaml" && [[ "$(relay_cmdline)" == *"--config $1"* ]] && health_ok "$2"' "$R1" "$rconf" "$rh"
check "in one upgrade, the configuration staged with it" \
    bash -c '[ "$(relay_starts)" = 1 ] && [ "$(log_count "$d" "msg=\"config applying\" addon=relay from=none to=${0:0:19} with=upgrade")" = 1 ]' "$R1"

# --- relay 2.0.0 with a bad configuration: the pair is rolled back
relay_policy 2.0.0 "$d/relay-bad.yaml"
RB=$(admin /v1/policies/relays | jq -r .config_digest)
check "a new version with a bad configuration: RolledBack, binary and configuration restored" \
    wait_until 20 bash -c '[ "$(journal_of "$d" relay status)$(journal_of "$d" relay version)" = RolledBack1.0.0 ] && [[ "$(journal_of "$d" relay message)" == *"restored the previous binary and configuration"* ]] && [ "$(relay_digest)" = "$0" ] && cmp -s "$1" "$d/relay1.yaml"' "$R1" "$rconf"
check "relay 1.0.0 runs again with its configuration" \
    wait_until 5 bash -c '[ "$(exe_sha "$(cat "$d/state/run/addon-relay.pid")")" = "$(sha "$d/relay-1")" ] && [[ "$(relay_cmdline)" == *"--config $0"* ]] && health_ok "$1"' "$rconf" "$rh"
check "the version is bad with that configuration" \
    bash -c 'jq -e --arg d "sha256:$(sha "$d/relay-2")" --arg c "$0" ".bad[] | select(.digest == \$d and .config_digest == \$c)" "$d/state/state.json" > /dev/null' "$RB"
wait_heartbeats 8 || diag "fewer than 8 heartbeats"
check "not tried again: two upgrades in all ($(relay_starts))" test "$(relay_starts)" = 2

# --- the configuration fixed: the version is tried again, once, with it
relay_policy 2.0.0 "$d/relay2.yaml"
R2=$(admin /v1/policies/relays | jq -r .config_digest)
check "a new configuration retries the version: Upgraded 2.0.0 with it" \
    wait_until 20 bash -c '[ "$(journal_of "$d" relay status)$(journal_of "$d" relay version)" = Upgraded2.0.0 ] && [ "$(relay_digest)" = "$0" ] && cmp -s "$1" "$d/relay2.yaml" && health_ok "$2"' "$R2" "$rconf" "$rh"
wait_heartbeats 4 || diag "fewer than 4 heartbeats"
check "three upgrades in all ($(relay_starts)), and the server sees the configuration" \
    bash -c '[ "$(relay_starts)" = 3 ] && [ "$(admin /v1/agents/node | jq -r ".packages[] | select(.name == \"relay\") | .config_digest")" = "$0" ]' "$R2"

# --- a new version with the same configuration keeps it
relay_policy 3.0.0 "$d/relay2.yaml"
check "a new version with the same configuration: Upgraded 3.0.0, run with it, nothing re-applied" \
    wait_until 20 bash -c '[ "$(journal_of "$d" relay status)$(journal_of "$d" relay version)" = Upgraded3.0.0 ] && [ "$(relay_digest)" = "$0" ] && [[ "$(relay_cmdline)" == *"--config $1"* ]] && health_ok "$2" && [ "$(log_count "$d" "msg=\"config applying\" addon=relay")" = 3 ]' "$R2" "$rconf" "$rh"

# --- precedence: the local YAML's args win over the policy's (which would
# make the addon exit); environment merged, the YAML's winning per variable
pinned_pid() { cat "$d/state/run/addon-pinned.pid" 2>/dev/null; }
export -f pinned_pid
policy set pins --package pinned --version 1.0.0 --arg --no-such-flag \
    --env PIN_POLICY=policy --env PIN_BOTH=policy > /dev/null
P1=$(admin /v1/policies/pins | jq -r .config_digest)
check "with local args the policy's configuration applies, and the addon runs with the local args" \
    wait_until 20 bash -c '[ "$(jq -r ".packages[] | select(.name == \"pinned\") | .config.digest // \"none\"" "$d/state/state.json")" = "$0" ] && [ "$(journal_of "$d" pinned status)" = Upgraded ] && [[ "$(tr "\0" " " < /proc/$(pinned_pid)/cmdline)" == *"--config $d/pinned.yaml"* ]] && health_ok "$1"' "$P1" "$ph"
check "environment: the policy's over nothing, the YAML's over the policy's" \
    bash -c 'e=$(tr "\0" "\n" < /proc/$(pinned_pid)/environ | grep "^PIN_" | sort | tr "\n" " "); [ "$e" = "PIN_BOTH=yaml PIN_LOCAL=yaml PIN_POLICY=policy " ] || { echo "# $e"; exit 1; }'
check "the agent says the local args win" grep -q 'msg="the local configuration.s args win over the policy.s" addon=pinned' "$d/agent.log"

# --- the agent killed while it applies a configuration: the previous one
# is restored at start, and the new one applied again
printf '# from the policy, four\nports: [%s]\nhealth_port: %s\n' "$ap" "$ah" > "$d/four.yaml"
before=$(applying)
shipper_policy "$d/four.yaml" four
D4=$(policy_digest)
if wait_until 20 jq -e '.config_apply.name == "shipper"' "$d/state/state.json" > /dev/null; then
    killed=$(cat "$d/agent.pid")
    kill -KILL "$killed"
    wait "$killed" 2>/dev/null # its lock goes with it
    ok "the agent was killed while it applied a configuration"
else
    nok "the agent was killed while it applied a configuration (never saw config_apply)"
fi
start_agent "$d"
check "at start the previous configuration is restored" \
    wait_until 20 grep -q 'msg="recovering an interrupted configuration" addon=shipper' "$d/agent.log"
check "then the new one is applied: Upgraded with it, once more" \
    wait_until 20 bash -c '[ "$(journal_digest)" = "$0" ] && [ "$(journal_of "$d" shipper status)" = Upgraded ] && cmp -s "$conf" "$d/four.yaml" && [ "$(mark)" = SHIP_MARK=four ] && health_ok "$1" && [ "$(applying)" = $(( $2 + 2 )) ] && ! jq -e .config_apply "$d/state/state.json" > /dev/null' "$D4" "$ah" "$before"

# --- an agent restarted in the ordinary way starts the addon with the
# configuration it applied, and does not apply it again
stop_agent "$d"
before=$(applying)
start_agent "$d"
check "after a restart the addon runs with its policy's configuration" \
    wait_until 20 bash -c '[[ "$(cmdline)" == *"--config $conf"* ]] && [ "$(mark)" = SHIP_MARK=four ] && health_ok "$0"' "$ah"
wait_heartbeats 4 || diag "fewer than 4 heartbeats"
check "and nothing was applied again ($(applying))" test "$(applying)" = "$before"
[ "$FAILED" = 0 ] || { dump "$d/agent.log" "$S/server.log"; }
