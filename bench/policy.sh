#!/usr/bin/env bash
# bench/policy.sh: the policy module's heartbeat path, memory per node and
# fleet views (build/bench/policy; see the comment at the top of
# bench/policy.c). Runs at low priority: the machine may be shared.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${PKGSTORE_BUILD:-$here/build}/bench/policy
[ -x "$bin" ] || { echo "bench/policy.sh: $bin not built (make)" >&2; exit 2; }
exec nice -n 19 "$bin" "$@"
