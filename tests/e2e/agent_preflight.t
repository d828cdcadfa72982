#!/bin/bash
# Issue 11 finding 9, against the real pkgstored: what can be checked is
# checked before the collector is stopped (pkgstore_install_check): a
# directory in the .bak's way, or a read-only install directory, fails the
# upgrade with the reason while the old collector keeps running, on every
# retry; once fixed, the upgrade goes through.
. "$(dirname "$0")/lib/agent.sh"
echo "1..7"
real_server
export RETRY_INITIAL=0.5 RETRY_MAX=1
real_node 1
for v in 2 3; do
    make_variant v2 "$T/v$v" "preflight-v$v"
    push --name otelcol --version "$v.0.0" "$T/v$v" > /dev/null
done
stops() { log_count "$1" 'msg="child stopped" name=collector:otelcol'; }
export -f stops
start_agent "$d"
wait_until 10 node_healthy "$d"
pid=$(collector_pid "$d")

# a) a directory where the .bak goes
mkdir "$d/bin/otelcol.bak"
policy set everyone --package otelcol --version 2.0.0 > /dev/null
check "a) .bak is a directory: UpgradeFailed naming it, nothing stopped" \
    wait_until 20 bash -c '[[ "$(state_message "$0")" == *"otelcol.bak: is a directory (nothing stopped)"* ]]' "$d"
check "a) retried (attempt 3) and the collector never stopped: the same pid, healthy" \
    bash -c 'wait_until 20 bash -c "[[ \"\$(state_message \"$0\")\" == *\"(attempt 3,\"* ]]" && [ "$(stops "$0")" = 0 ] && [ "$(collector_pid "$0")" = "$1" ] && node_healthy "$0"' "$d" "$pid"
rmdir "$d/bin/otelcol.bak"
check "a) fixed: Upgraded to 2.0.0" wait_until 30 bash -c '[ "$(sv "$0")" = Upgraded2.0.0 ]' "$d"

# b) a read-only install directory (immutable for root, a-w for others)
pid=$(collector_pid "$d")
stopped=$(stops "$d")
IMMUTABLE+=("$d/bin")
if [ "$(id -u)" = 0 ]; then chattr +i "$d/bin"; else chmod a-w "$d/bin"; fi
check "b) the directory really is read-only" bash -c '! touch "$0/bin/probe" 2>/dev/null' "$d"
policy set everyone --package otelcol --version 3.0.0 > /dev/null
check "b) read-only: UpgradeFailed naming it, nothing stopped" \
    wait_until 20 bash -c '[[ "$(state_message "$0")" == *"directory not writable"*"(nothing stopped)"* ]]' "$d"
check "b) retried (attempt 3) and the collector never stopped: the same pid, healthy" \
    bash -c 'wait_until 20 bash -c "[[ \"\$(state_message \"$0\")\" == *\"(attempt 3,\"* ]]" && [ "$(stops "$0")" = "$2" ] && [ "$(collector_pid "$0")" = "$1" ] && node_healthy "$0"' "$d" "$pid" "$stopped"
if [ "$(id -u)" = 0 ]; then chattr -i "$d/bin"; else chmod u+w "$d/bin"; fi
check "b) writable again: Upgraded to 3.0.0, running v3" \
    bash -c 'wait_until 30 bash -c "[ \"\$(sv \"$0\")\" = Upgraded3.0.0 ]" && [ "$(exe_sha "$(collector_pid "$0")")" = "$(sha "$1")" ]' "$d" "$T/v3"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
