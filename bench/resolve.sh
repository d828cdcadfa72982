#!/usr/bin/env bash
# bench/resolve.sh: pkgstore_registry_resolve() throughput on one core over an
# index of 1,000 packages x 50 versions x 4 platforms (built once with
# PKGSTORE_DURABILITY_NONE, on tmpfs when there is one), 5 rounds, median,
# against an uncached walk of the package records (the reference).
# Target: >= 500,000 resolutions per CPU second. Extra arguments go to the
# driver (see build/bench/resolve --help), e.g. --packages 100 for a quick run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PKGSTORE_BUILD:-$ROOT/build}
make -C "$ROOT" -s BUILD="$BUILD" "$BUILD/bench/resolve" >/dev/null
echo "bench/resolve: 1,000 packages x 50 versions x 4 platforms (nice 19; rates per CPU second)"
exec nice -n 19 "$BUILD/bench/resolve" --packages 1000 --versions 50 --seconds 2 --repeat 5 "$@"
