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

# pkgstore.pc: each library once, in Libs.private (no Requires.private,
# whose --static recursion needs libarchive's static dependencies)
PC=$BUILD/pkgstore.pc
make -C "$SRC" --no-print-directory BUILD="$WORK/pc" "$WORK/pc/pkgstore.pc" >/dev/null 2>&1
PC=$WORK/pc/pkgstore.pc
check "pkgstore.pc lists each library once, in Libs.private only" \
    "! grep -q '^Requires.private' '$PC' &&
     [ \$(sed -n 's/^Libs.private: *//p' '$PC' | tr ' ' '\n' | grep -c -- '^-l') = \
       \$(sed -n 's/^Libs.private: *//p' '$PC' | tr ' ' '\n' | grep -- '^-l' | sort -u | wc -l) ]"
check "pkg-config --static --libs pkgstore gives libpkgstore.a's libraries and no others" \
    "PKG_CONFIG_PATH='$WORK/pc' pkg-config --static --libs pkgstore | grep -q -- '-llmdb' &&
     ! PKG_CONFIG_PATH='$WORK/pc' pkg-config --static --libs pkgstore | grep -q -- '-lacl'"

echo "1..$n"
exit $((fails > 0))
