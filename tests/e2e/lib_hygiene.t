#!/usr/bin/env bash
# What the built library itself must (not) contain: no thread-unsafe
# strerror() in any of its objects, and none of the record-writing index
# calls among its exports (the registry is the only writer of package
# records). Reads the objects and the shared library with nm. Prints TAP;
# run by prove.
set -u
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${PKGSTORE_BUILD:-$SRC/build}

n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }

objects=("$BUILD"/obj/libpkgstore/*.o)
if [ ! -e "${objects[0]}" ] || [ ! -e "$BUILD/lib/libpkgstore.so" ]; then
    echo "1..1"
    echo "not ok 1 - the library is built under $BUILD (run make first)"
    exit 1
fi

# strerror() may share one buffer between threads; the library calls
# strerror_r() (through ps_error_errno_text()).
users=
for o in "${objects[@]}"; do
    nm -u "$o" | grep -qw 'strerror' && users="$users ${o##*/}"
done
if [ -z "$users" ]; then ok "no library object calls strerror() (${#objects[@]} objects)"
else not_ok "no library object calls strerror(): called in$users"; fi

exports=$(nm -D --defined-only "$BUILD/lib/libpkgstore.so" | awk '{print $3}')
for gone in pkgstore_index_package_put pkgstore_index_package_delete; do
    if grep -qx "$gone" <<<"$exports"; then not_ok "$gone is not exported (the registry is the only writer)"
    else ok "$gone is not exported (the registry is the only writer)"; fi
done
for kept in pkgstore_index_package_get pkgstore_index_package_foreach pkgstore_library_version \
            pkgstore_version; do
    if grep -qx "$kept" <<<"$exports"; then ok "$kept is exported"
    else not_ok "$kept is exported"; fi
done

echo "1..$n"
[ "$fails" = 0 ]
