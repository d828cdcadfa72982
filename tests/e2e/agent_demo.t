#!/bin/bash
# `make demo` keeps working: examples/demo.sh runs to the end, shows the
# canary rolled back and everyone on v2, and leaves no process behind
# (neither pkgstored nor an agent nor a collector); it runs over HTTPS; its
# staged rollout of v3 pauses itself.
set -u
echo "1..5"
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
LOG=$(mktemp "${TMPDIR:-/tmp}/pkgstore-demo-log-XXXXXX")
trap 'rm -f "$LOG"' EXIT
# Output to a file, not $(...): a process the demo left running would hold
# the pipe open and hang the test instead of failing it.
PKGSTORE_BIN=${PKGSTORE_BIN:?} bash "$SRC/examples/demo.sh" >"$LOG" 2>&1; rc=$?
if [ $rc = 0 ]; then echo "ok 1 - demo exits 0"; else echo "not ok 1 - demo exits 0 ($rc)"; tail -20 "$LOG" | sed 's/^/# /'; fi
if grep -q 'edge-canary .*2\.0\.0 .*RolledBack' "$LOG" && grep -q 'edge-prod .*2\.0\.0 .*Upgraded' "$LOG"; then
    echo "ok 2 - fleet view: canary RolledBack on v2, prod Upgraded to v2"
else echo "not ok 2 - fleet view: canary RolledBack on v2, prod Upgraded to v2"; fi
dir=$(grep -o '/[^ ]*/pkgstore-demo-[A-Za-z0-9]*' "$LOG" | head -1)
# Whatever the demo started names its directory: pkgstored (--store), the
# agents (--config), the collectors (their path, and the agent's marker).
# The command line is read by a builtin: a grep would find itself.
left=()
for p in /proc/[0-9]*; do
    args=()
    mapfile -d '' args 2>/dev/null <"$p/cmdline"   # stderr first: a process may be gone
    if [[ -n "$dir" && "${args[*]}" == *"$dir/"* ]] ||
        grep -qa "PKGSTORE_AGENT_CHILD=$dir/" "$p/environ" 2>/dev/null; then
        left+=("${p#/proc/}")
    fi
done
if [ -n "$dir" ] && [ ! -e "$dir" ] && [ ${#left[@]} = 0 ]; then echo "ok 3 - everything stopped and removed"; else
    echo "not ok 3 - everything stopped and removed ($dir, ${#left[@]} left: ${left[*]})"
    # stop what the demo left behind, by pid
    [ ${#left[@]} = 0 ] || kill -KILL "${left[@]}" 2>/dev/null
fi
if grep -q 'listening on https://127.0.0.1:' "$LOG" && grep -q '^pushed otelcol 2.0.0' "$LOG"; then
    echo "ok 4 - the demo runs over HTTPS"
else echo "not ok 4 - the demo runs over HTTPS"; fi
if grep -q '^   state: *paused' "$LOG" && grep -q '^   reason: *batch 1: 1 of 1 nodes failed (0 tolerated)' "$LOG"; then
    echo "ok 5 - the staged rollout paused itself and said why"
else echo "not ok 5 - the staged rollout paused itself and said why"; fi
