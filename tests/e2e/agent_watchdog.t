#!/bin/bash
# Issue 11 finding 13, against the real pkgstored: a collector that passes
# its monitor window and crashes soon after is caught by the watchdog that
# follows every upgrade (upgrade_watchdog: crashes within window_s): it is
# rolled back to the previous binary, reported RolledBack with the reason
# and remembered as bad. A version that stays up passes the watchdog.
. "$(dirname "$0")/lib/agent.sh"
echo "1..8"
real_server
export RETRY_INITIAL=1 WATCHDOG_WINDOW=8 WATCHDOG_CRASHES=2
real_node 1
sed -i 's/^crash_after_s: .*/crash_after_s: 2/' "$d/collector.yaml"   # after the 1 s window
v1=$(sha "$d/bin/otelcol")
make_variant crashes-after "$d/v3" watchdog-v3
make_variant v2 "$d/v4" watchdog-v4
push --name otelcol --version 3.0.0 "$d/v3" > /dev/null
push --name otelcol --version 4.0.0 "$d/v4" > /dev/null
check "--check-config shows the watchdog" \
    bash -c '"$B/pkgstore-agent" --config "$0/agent.yaml" --check-config --json | jq -e ".upgrade_watchdog == {\"window_s\": 8, \"crashes\": 2}" > /dev/null' "$d"
policy set everyone --package otelcol --version 3.0.0 > /dev/null
start_agent "$d"
check "3.0.0 passes its monitor window: Upgraded" \
    wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded3.0.0 ]' "$d"
check "two crashes within the watchdog's window: RolledBack, with the reason" \
    wait_until 30 bash -c '[[ "$(journal_of "$0" otelcol status) $(journal_of "$0" otelcol message)" == "RolledBack watchdog: crashed 2 times within 8 s of the upgrade (last: exit 1); restored the previous binary" ]]' "$d"
check "v1 is live again and runs, healthy" \
    wait_until 10 bash -c '[ "$(sha "$0/bin/otelcol")" = "$1" ] && [ "$(exe_sha "$(collector_pid "$0")")" = "$1" ] && node_healthy "$0"' "$d" "$v1"
check "the server's history: Upgraded, then RolledBack" \
    wait_until 10 bash -c '[[ "$(history_of node otelcol)" == *"Monitoring Upgraded RolledBack" ]]'
starts=$(log_count "$d" 'msg="upgrade starting"')
wait_heartbeats 6 30
check "3.0.0 is bad: not tried again" \
    bash -c '[ "$(log_count "$0" "msg=\"upgrade starting\"")" = "$1" ] && jq -e --arg d "sha256:$(sha "$0/v3")" ".bad[] | select(.digest == \$d)" "$0/state/state.json" > /dev/null' "$d" "$starts"

policy set everyone --package otelcol --version 4.0.0 > /dev/null
check "4.0.0 stays up: the watchdog passes" \
    wait_until 40 grep -q 'msg="watchdog passed" package=otelcol version=4.0.0 crashes=0' "$d/agent.log"
check "and it is known good" \
    bash -c 'jq -e --arg d "sha256:$(sha "$0/v4")" ".packages[0].good | index(\$d)" "$0/state/state.json" > /dev/null' "$d"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
