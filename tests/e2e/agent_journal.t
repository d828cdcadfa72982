#!/bin/bash
# Issue 11 finding 7, against the real pkgstored: the journal is written
# twice, so one damaged or emptied file is survivable, and a live binary is
# identified by its digest, never taken for the configuration's version:
#  a) state.json damaged: the copy is read; the node still reports 2.0.0;
#  b) both lost: the live binary is named by the server's target digest;
#  c) state.json emptied while a crashing binary was in its monitor window
#     and the agent was killed: the copy rolls it back;
#  d) both emptied in that window: the crash-looping binary is not known
#     good, so it goes back to its .bak, and is remembered as bad.
. "$(dirname "$0")/lib/agent.sh"
echo "1..10"
real_server
export RETRY_INITIAL=60 WATCHDOG_WINDOW=1
real_node 4
echo "crash_after_s: 2" > "$d/crash.yaml"; sed -i 's/^crash_after_s: .*/crash_after_s: 2/' "$d/collector.yaml"
make_variant v2 "$d/v2" journal-v2
make_variant crashes-after "$d/v3" journal-v3
v2=$(sha "$d/v2"); v3=$(sha "$d/v3")
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
push --name otelcol --version 3.0.0 "$d/v3" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null
start_agent "$d"
wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded2.0.0 ]' "$d"
wait_until 10 grep -q 'watchdog passed' "$d/agent.log"
check "Upgraded to 2.0.0; the journal's copy is written too" \
    bash -c 'jq -e ".packages[0].version == \"2.0.0\"" "$0/state/state.copy.json" > /dev/null' "$d"

# a) state.json damaged while the agent is stopped
stop_agent "$d"
echo 'garbage {' > "$d/state/state.json"
starts=$(log_count "$d" 'msg="upgrade starting"')
start_agent "$d"
wait_heartbeats 4 20
check "a) the copy is read" grep -q 'msg="using the journal.s copy"' "$d/agent.log"
check "a) the node reports 2.0.0 with v2's digest, not the configuration's 1.0.0" \
    wait_until 10 bash -c '[ "$(fleet_of node otelcol)" = "2.0.0 sha256:$0 Running" ]' "$v2"
check "a) and starts no upgrade" test "$(log_count "$d" 'msg="upgrade starting"')" = "$starts"

# b) both copies lost
stop_agent "$d"
: > "$d/state/state.json"; : > "$d/state/state.copy.json"
start_agent "$d"
check "b) both lost: the live binary is named by the server's target digest, 2.0.0" \
    bash -c 'wait_until 20 grep -q "identified the live binary by its digest.*version=2.0.0" "$1/agent.log" && wait_until 10 bash -c "[ \"\$(fleet_of node otelcol)\" = \"2.0.0 sha256:$0 Running\" ]"' "$v2" "$d"
check "b) and still starts no upgrade" test "$(log_count "$d" 'msg="upgrade starting"')" = "$starts"

# c) a crashing 3.0.0 in its monitor window: kill the agent, empty
# state.json (the copy is written right after it, so it may still say
# Swapping: either step rolls back)
policy set everyone --package otelcol --version 3.0.0 > /dev/null
in_window() { [ "$(jq -r '.upgrade.step // empty' "$1/state/state.json" 2>/dev/null)" = Monitoring ]; }
export -f in_window
wait_until 30 in_window "$d"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
: > "$d/state/state.json"
start_agent "$d"
check "c) state.json emptied in the window: the copy rolls the upgrade back to 2.0.0" \
    wait_until 20 bash -c '[[ "$(journal_of "$0" otelcol status) $(journal_of "$0" otelcol message)" == "RolledBack agent restarted during "*"; restored the previous binary"* ]] && [ "$(sha "$0/bin/otelcol")" = "$1" ]' "$d" "$v2"
check "c) v2 runs, healthy" wait_until 10 bash -c '[ "$(exe_sha "$(collector_pid "$0")")" = "$1" ] && node_healthy "$0"' "$d" "$v2"

# d) the same with both files emptied: nothing says 3.0.0 was on trial
stop_agent "$d"
policy retry everyone > /dev/null   # the rollback was transient: 3.0.0 is tried again
start_agent "$d"
wait_until 90 in_window "$d"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
: > "$d/state/state.json"; : > "$d/state/state.copy.json"
start_agent "$d"
check "d) both emptied: the crash-looping binary, not known good, goes back to its .bak (v2)" \
    wait_until 30 bash -c 'grep -q "crash loop: .* of a binary that is not known good" "$0/agent.log" && [ "$(sha "$0/bin/otelcol")" = "$1" ] && wait_until 5 node_healthy "$0"' "$d" "$v2"
check "d) 3.0.0 is remembered as bad and not tried again" \
    bash -c 'jq -e --arg d "sha256:$1" ".bad[] | select(.digest == \$d)" "$0/state/state.json" > /dev/null && n=$(log_count "$0" "msg=\"upgrade starting\"") && wait_heartbeats 6 30 && [ "$(log_count "$0" "msg=\"upgrade starting\"")" = "$n" ]' "$d" "$v3"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
