#!/bin/bash
# `make demo` keeps working: examples/demo.sh runs to the end, shows the
# canary rolled back and everyone on v2, and leaves no process behind.
set -u
echo "1..3"
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
out=$(PKGSTORE_BIN=${PKGSTORE_BIN:?} bash "$SRC/examples/demo.sh" 2>&1); rc=$?
if [ $rc = 0 ]; then echo "ok 1 - demo exits 0"; else echo "not ok 1 - demo exits 0 ($rc)"; echo "$out" | tail -20 | sed 's/^/# /'; fi
if echo "$out" | grep -q 'edge-canary .*2\.0\.0 .*RolledBack' && echo "$out" | grep -q 'edge-prod .*2\.0\.0 .*Upgraded'; then
    echo "ok 2 - fleet view: canary RolledBack on v2, prod Upgraded to v2"
else echo "not ok 2 - fleet view: canary RolledBack on v2, prod Upgraded to v2"; fi
dir=$(echo "$out" | grep -o '/[^ ]*/pkgstore-demo-[A-Za-z0-9]*' | head -1)
left=0
for p in /proc/[0-9]*; do grep -qa "PKGSTORE_AGENT_CHILD=$dir/" "$p/environ" 2>/dev/null && left=$((left + 1)); done
if [ -n "$dir" ] && [ ! -e "$dir" ] && [ $left = 0 ]; then echo "ok 3 - everything stopped and removed"; else echo "not ok 3 - everything stopped and removed ($dir, $left left)"; fi
