#!/bin/bash
# Issue 11 finding 11, against the real pkgstored: a kill during a swap can
# leave "<exe>.bak.tmp" (or ".new.tmp", ".restore.tmp") beside the live
# binary; the next agent removes them at start, and recovers the upgrade.
# The kills land at known steps through the agent's test build
# (PKGSTORE_AGENT_TEST_FAULT=kill-at:STEP, docs/pkgstore-agent.md).
. "$(dirname "$0")/lib/agent.sh"
echo "1..7"
real_server
export RETRY_INITIAL=0.5 RETRY_MAX=1
real_node 1
v1=$(sha "$d/bin/otelcol")

# a) leftovers put there by hand, as a kill leaves them
head -c 10000 "$d/bin/otelcol" > "$d/bin/otelcol.bak.tmp"
head -c 20000 "$d/bin/otelcol" > "$d/bin/otelcol.new.tmp"
start_agent "$d"
check "a) the starting agent removes otelcol.bak.tmp and otelcol.new.tmp" \
    wait_until 10 bash -c '[ ! -e "$0/bin/otelcol.bak.tmp" ] && [ ! -e "$0/bin/otelcol.new.tmp" ] && grep -q "removed a leftover.*otelcol.bak.tmp" "$0/agent.log"' "$d"
check "a) and runs v1, healthy" bash -c 'wait_until 10 node_healthy "$0" && [ "$(sha "$0/bin/otelcol")" = "$1" ]' "$d" "$v1"
stop_agent "$d"

# b) the test build kills itself after linking the .bak.tmp, before its rename
make_variant v2 "$d/v2" leftover-v2
v2=$(sha "$d/v2")
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null
PKGSTORE_AGENT_TEST_FAULT=kill-at:bak:rename AGENT_BIN=$TB/pkgstore-agent start_agent "$d"
{ wait "$AGENT_PID"; } 2>/dev/null; rc=$?
check "b) the test build died at bak:rename (SIGKILL)" test "$rc" = 137
check "b) it left otelcol.bak.tmp, and v1 complete at the live path" \
    bash -c '[ -e "$0/bin/otelcol.bak.tmp" ] && [ "$(sha "$0/bin/otelcol")" = "$1" ]' "$d" "$v1"
start_agent "$d"
check "b) the next agent removes it and converges: Upgraded to 2.0.0" \
    wait_until 30 bash -c '[ ! -e "$0/bin/otelcol.bak.tmp" ] && [ "$(sv "$0")" = Upgraded2.0.0 ] && [ "$(sha "$0/bin/otelcol")" = "$1" ]' "$d" "$v2"
stop_agent "$d"

# c) killed after the new binary's rename, before the directory fsync: the
# journal says Swapping, the new binary is live: rolled back, retried
make_variant v2 "$d/v3" leftover-v3
push --name otelcol --version 3.0.0 "$d/v3" > /dev/null
policy set everyone --package otelcol --version 3.0.0 > /dev/null
PKGSTORE_AGENT_TEST_FAULT=kill-at:new:dirsync AGENT_BIN=$TB/pkgstore-agent start_agent "$d"
{ wait "$AGENT_PID"; } 2>/dev/null; rc=$?
check "c) the test build died at new:dirsync with 3.0.0 live and the journal at Swapping" \
    bash -c '[ "$2" = 137 ] && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ] && [ "$(jq -r .upgrade.step "$0/state/state.json")" = Swapping ]' "$d" "$d/v3" "$rc"
start_agent "$d"
check "c) the next agent rolls back to 2.0.0, then retries: Upgraded to 3.0.0, nothing left beside it" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded3.0.0 ]" && grep -q "rolled back after restart" "$0/agent.log" && [ -z "$(ls "$0/bin" | grep tmp)" ]' "$d"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
