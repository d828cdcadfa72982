#!/usr/bin/env bash
# bench/index.sh: package record point lookups through the library
# (ps_index_package_get: rwlock, pooled read transaction, decode) against
# plain LMDB on the same environment (a transaction per lookup, and all
# lookups in one transaction), per CPU second, 5 rounds, medians.
# Extra arguments go to the driver, e.g. --packages 100 for a quick run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PKGSTORE_BUILD:-$ROOT/build}
make -C "$ROOT" -s BUILD="$BUILD" "$BUILD/bench/index" >/dev/null
exec nice -n 19 "$BUILD/bench/index" --packages 1000 --versions 50 --seconds 1 --repeat 5 "$@"
