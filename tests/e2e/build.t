#!/usr/bin/env bash
# The build on a machine that lacks something (issue #10, "a build
# preflight"; issue #9, "make test alone fails on a fresh machine"):
#   - `make test` and `make asan` run `make deps` first;
#   - a missing library stops the build with one line that says what to do,
#     before any compiler runs;
#   - the user's CPPFLAGS (distribution hardening) reach every object;
#   - pkgstore.pc names each dependency once.
# Dry runs (make -n) and a scratch BUILD directory only: nothing here
# builds or installs. Prints TAP; run by prove.
set -u
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${PKGSTORE_BUILD:-$SRC/build}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-build-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

n=0
fails=0
check() {
    n=$((n + 1))
    if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}

# make test / make asan: deps, then the build and tests in a sub-make
for goal in test asan; do
    make -C "$SRC" --no-print-directory -n "$goal" >"$WORK/$goal.n" 2>&1
    check "make $goal checks the Debian packages (make deps) before it builds" \
        "grep -n 'dpkg-query' '$WORK/$goal.n' | head -1 | grep -q . &&
         [ \$(grep -n 'dpkg-query' '$WORK/$goal.n' | head -1 | cut -d: -f1) -lt \
           \$(grep -n -- '-now' '$WORK/$goal.n' | head -1 | cut -d: -f1) ]"
done

# a missing library: one line, exit non-zero, no compiler run
printf '#!/bin/sh\nexit 1\n' >"$WORK/no-pkg-config"
chmod +x "$WORK/no-pkg-config"
make -C "$SRC" --no-print-directory BUILD="$WORK/b" PKGCONF="$WORK/no-pkg-config" \
    "$WORK/b/obj/libpkgstore/error.o" >"$WORK/pre.out" 2>&1
rc=$?
check "a missing library stops the build (exit $rc)" "[ $rc != 0 ]"
check "... with one line naming what is missing and 'make deps'" \
    "grep -q \"^pkgstore: missing build dependencies: .*libcrypto.*; run 'make deps'\" '$WORK/pre.out'"
check "... before any compiler ran" "[ ! -e '$WORK/b/obj/libpkgstore/error.o' ] && ! grep -q -- ' -c ' '$WORK/pre.out'"

# CPPFLAGS reach library, program and test objects
make -C "$SRC" --no-print-directory -n -B BUILD="$WORK/c" CPPFLAGS='-DPKGSTORE_CPPFLAGS_MARKER=1' \
    "$WORK/c/obj/libpkgstore/error.o" "$WORK/c/obj/server/main.o" "$WORK/c/obj/tests/test_error.o" \
    >"$WORK/cpp.n" 2>&1
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$WORK/cpp.n" >"$WORK/cpp.joined" # one line per command
check "CPPFLAGS reach every object (library, server, tests)" \
    "[ \$(grep -- ' -c ' '$WORK/cpp.joined' | grep -c PKGSTORE_CPPFLAGS_MARKER) = 3 ]"

# pkgstore.pc: a library is in Requires.private or in Libs.private, not both
PC=$BUILD/pkgstore.pc
check "pkgstore.pc lists no library twice" \
    "! grep '^Libs.private:' '$PC' | grep -Eq -- '-l(crypto|zstd|archive|jansson)\\b'"
check "pkgstore.pc: pkg-config --static resolves it" \
    "PKG_CONFIG_PATH='$BUILD' pkg-config --static --libs pkgstore | grep -q -- '-llmdb'"

echo "1..$n"
exit $((fails > 0))
