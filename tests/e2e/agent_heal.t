#!/bin/bash
# Issue 11 finding 3, against the real pkgstored: a live binary deleted by
# hand is healed when the collector exits and cannot be started again:
#  a) from the agent's kept copy (state_dir/keep/, the same version);
#  b) without the kept copy, from the .bak (the previous version, reported
#     RolledBack), after which the server's offer brings the version back;
#  c) with nothing to restore, the agent reports the package NotInstalled
#     and the server's offer installs it again.
. "$(dirname "$0")/lib/agent.sh"
echo "1..10"
real_server
export RETRY_INITIAL=1 WATCHDOG_WINDOW=1
real_node 1
v1=$(sha "$d/bin/otelcol")
make_variant v2 "$d/v2" heal-v2
v2=$(sha "$d/v2")
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null
start_agent "$d"
wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded2.0.0 ]' "$d"
wait_until 10 grep -q 'msg="watchdog passed" package=otelcol version=2.0.0' "$d/agent.log"
runs() { [ "$(exe_sha "$(collector_pid "$1")")" = "$2" ] && node_healthy "$1"; }
upgraded_to_v2() { [ "$(journal_of "$1" otelcol status)$(journal_of "$1" otelcol version)" = Upgraded2.0.0 ]; }
export -f runs upgraded_to_v2
check "Upgraded to 2.0.0, a kept copy of it in state/keep" \
    bash -c 'runs "$0" "$1" && [ "$(sha "$0/state/keep/primary-otelcol")" = "$1" ]' "$d" "$v2"

# a) the binary deleted, then the collector dies
pid=$(collector_pid "$d")
rm "$d/bin/otelcol"; kill -KILL "$pid"
check "a) restored from the kept copy, v2 running and healthy again" \
    wait_until 20 bash -c 'grep -q "restored the live executable from its kept copy" "$0/agent.log" && [ "$(sha "$0/bin/otelcol")" = "$1" ] && runs "$0" "$1"' "$d" "$v2"
check "a) still Upgraded 2.0.0 (the same version)" upgraded_to_v2 "$d"

# b) the binary and its kept copy deleted: the .bak (v1) comes back, the
# server offers v2 again and the agent reinstalls it
pid=$(collector_pid "$d")
rm "$d/bin/otelcol" "$d/state/keep/primary-otelcol"; kill -KILL "$pid"
check "b) RolledBack to the .bak with the reason" \
    wait_until 20 bash -c '[[ "$(admin /v1/agents/node | jq -r "[.history[] | select(.status == \"RolledBack\") | .message] | last")" == *"missing"*"restored the previous binary (.bak)"* ]]'
check "b) the server's offer brings 2.0.0 back: Upgraded, running v2" \
    wait_until 30 bash -c 'upgraded_to_v2 "$0" && runs "$0" "$1"' "$d" "$v2"
check "b) the .bak is v1 again" bash -c '[ "$(sha "$0/bin/otelcol.bak")" = "$1" ]' "$d" "$v1"

# c) nothing at all to restore: reported NotInstalled, installed again
wait_until 10 bash -c '[ "$(log_count "$0" "msg=\"watchdog passed\" package=otelcol version=2.0.0")" -ge 2 ]' "$d"
# the policy is set again only once NotInstalled has been seen: with its
# offer standing, the reinstall could replace the state before a look
policy rm everyone > /dev/null
pid=$(collector_pid "$d")
rm "$d/bin/otelcol" "$d/bin/otelcol.bak" "$d/state/keep/primary-otelcol"; kill -KILL "$pid"
check "c) no copy: the agent says so and reports the package NotInstalled" \
    wait_until 20 bash -c 'grep -q "no copy of the executable to restore" "$0/agent.log" && admin /v1/agents/node | jq -e ".packages[] | select(.name == \"otelcol\" and .state == \"NotInstalled\")" > /dev/null' "$d"
policy set everyone --package otelcol --version 2.0.0 > /dev/null
check "c) the server offers 2.0.0 and the agent installs it: Upgraded, running v2" \
    wait_until 30 bash -c 'upgraded_to_v2 "$0" && runs "$0" "$1"' "$d" "$v2"
check "c) the fleet view shows 2.0.0 running" \
    wait_until 10 bash -c '[ "$(fleet_of node otelcol)" = "2.0.0 sha256:$0 Running" ]' "$v2"
check "the spawn failures were few, not a loop ($(log_count "$d" 'cannot start'))" \
    test "$(log_count "$d" 'cannot start')" -le 6
[ "$FAILED" = 0 ] || dump "$d/agent.log"
