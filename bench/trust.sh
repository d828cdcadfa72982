#!/usr/bin/env bash
# bench/trust.sh: what verifying one offer's signatures costs a node
# (build/bench/trust; see the comment at the top of bench/trust.c). Fails
# when the cold path takes 1 ms or more. Runs at low priority: the machine
# may be shared.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${PKGSTORE_BUILD:-$here/build}/bench/trust
[ -x "$bin" ] || { echo "bench/trust.sh: $bin not built (make)" >&2; exit 2; }
exec nice -n 19 "$bin" "$@"
