#!/bin/bash
# Issue 11 finding 6, against the real pkgstored: one agent per state_dir.
# A second agent on the same configuration exits at once with a clear
# message and touches nothing (the first one's collector, journal and
# upgrades go on); the lock dies with its holder, even a SIGKILLed one.
. "$(dirname "$0")/lib/agent.sh"
echo "1..8"
real_server
real_node 1
start_agent "$d"
first=$AGENT_PID
wait_until 10 node_healthy "$d"
wait_heartbeats 2 20
cpid=$(collector_pid "$d")
journal=$(sha "$d/state/state.json")

err=$(timeout 30 "$B/pkgstore-agent" --config "$d/agent.yaml" 2>&1 >/dev/null); rc=$?
check "a second agent on the same state_dir exits 1" test "$rc" = 1
check "with one line naming the state_dir and the first agent's pid" \
    test "$err" = "pkgstore-agent: $d/state: in use by another pkgstore-agent (pid $first); not starting"
check "the first agent's collector was not touched (pid $cpid)" \
    bash -c '[ "$(collector_pid "$0")" = "$1" ] && kill -0 "$1" && node_healthy "$0"' "$d" "$cpid"
check "nor its journal" test "$(sha "$d/state/state.json")" = "$journal"
check "the first agent runs on and heartbeats" bash -c 'kill -0 "$0" && wait_heartbeats 2 20' "$first"

# Upgrades go on under the first agent alone.
make_variant v2 "$d/v2" lock-v2
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null
check "the first agent upgrades" \
    wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded2.0.0 ]' "$d"

# A SIGKILLed agent's lock is gone with it: the next agent starts.
kill -KILL "$first"; wait "$first" 2>/dev/null
start_agent "$d"
check "after a SIGKILL the next agent takes the lock and stops the leftover collector" \
    wait_until 20 bash -c 'grep -q "left by a previous agent" "$0/agent.log" && node_healthy "$0" && [ "$(collector_pid "$0")" != "$1" ]' "$d" "$cpid"
check "the lock file names the new agent" test "$(cat "$d/state/lock")" = "$AGENT_PID"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
