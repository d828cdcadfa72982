#!/bin/bash
# Issue 11 finding 5, against the real pkgstored: a validation that fails
# because the local collector.yaml is wrong marks the binary bad only
# together with that configuration's digest. Fixing the configuration
# retries it (at once, and across an agent restart); a validation that
# times out is no verdict at all and is retried with backoff.
. "$(dirname "$0")/lib/agent.sh"
echo "1..9"
real_server
export RETRY_INITIAL=1
real_node 1 "  validate_timeout_s: 1"
for v in 2 3 4; do
    make_variant v2 "$T/v$v" "config-v$v"
    push --name otelcol --version "$v.0.0" "$T/v$v" > /dev/null
done

echo "invalid: true" >> "$d/collector.yaml"
policy set everyone --package otelcol --version 2.0.0 > /dev/null
start_agent "$d"
check "a wrong collector.yaml fails the validation: UpgradeFailed, v1 keeps running" \
    bash -c 'wait_until 20 bash -c "[[ \"\$(state_message \"$0\")\" == *\"config marked invalid\"* ]]" && node_healthy "$0"' "$d"
check "the failure is remembered with the configuration's digest" \
    bash -c 'jq -e --arg d "sha256:$(sha "$0/v2")" --arg c "sha256:$(sha "$1/collector.yaml")" ".bad[] | select(.digest == \$d and .config_digest == \$c)" "$1/state/state.json" > /dev/null' "$T" "$d"
wait_heartbeats 6 30
check "with the same configuration it is not retried ($(starts "$d") attempts)" test "$(starts "$d")" = 1
sed -i '/^invalid: true$/d' "$d/collector.yaml"
check "the configuration fixed: tried again and Upgraded to 2.0.0, without a restart" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded2.0.0 ]" && grep -q "configuration changed since the validation failed" "$0/agent.log"' "$d"

# across a restart
echo "invalid: true" >> "$d/collector.yaml"
policy set everyone --package otelcol --version 3.0.0 > /dev/null
wait_until 20 bash -c 'admin /v1/agents/node | jq -e "[.history[] | select(.version == \"3.0.0\" and .status == \"UpgradeFailed\")] | length > 0" > /dev/null'
stop_agent "$d"
sed -i '/^invalid: true$/d' "$d/collector.yaml"
start_agent "$d"
check "fixed while the agent was stopped: the restarted agent upgrades to 3.0.0" \
    wait_until 30 bash -c '[ "$(sv "$0")" = Upgraded3.0.0 ]' "$d"

# a validation that times out
echo "validate_sleep_s: 3" >> "$d/collector.yaml"
policy set everyone --package otelcol --version 4.0.0 > /dev/null
check "a validation timeout is UpgradeFailed with the reason" \
    wait_until 30 bash -c '[[ "$(state_message "$0")" == *"validate: timed out after 1.0 s"* ]]' "$d"
check "and retried with backoff, not remembered as bad" \
    bash -c 'wait_until 30 bash -c "[[ \"\$(state_message \"$0\")\" == *\"(attempt 2,\"* ]]" && ! jq -e --arg d "sha256:$(sha "$1/v4")" ".bad[] | select(.digest == \$d)" "$0/state/state.json" > /dev/null' "$d" "$T"
sed -i 's/^validate_sleep_s: .*/validate_sleep_s: 0/' "$d/collector.yaml"
check "once it validates in time: Upgraded to 4.0.0" wait_until 60 bash -c '[ "$(sv "$0")" = Upgraded4.0.0 ]' "$d"
check "the collector runs 4.0.0's binary, healthy" \
    bash -c '[ "$(exe_sha "$(collector_pid "$0")")" = "$(sha "$1/v4")" ] && node_healthy "$0"' "$d" "$T"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
