#!/usr/bin/env bash
# The public headers: each include/pkgstore/*.h compiles on its own (and
# twice, for the include guard) as C99 with -pedantic and as C++, has C++
# guards, and pulls in no third-party header or type; include/pkgstore.h
# includes every module header. Prints TAP; run by prove.
set -u
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
CC=${CC:-cc}
CXX=${CXX:-g++}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-headers-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
INC=$SRC/include

n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }
# compile DESCRIPTION LOG CMD...: ok when CMD succeeds, else its output as comments
compile() {
    local desc=$1 log=$2; shift 2
    if "$@" >"$log" 2>&1; then ok "$desc"; else not_ok "$desc"; sed 's/^/# /' "$log" | head -10; fi
}

# Third-party headers a public header must never include (STYLE.md).
THIRD_PARTY='lmdb\.h|archive\.h|archive_entry\.h|zstd\.h|zstd_errors\.h|curl/|curl\.h|microhttpd\.h|jansson\.h|openssl/|yaml\.h|cmocka\.h'
# Their types and macros, which would leak through a declaration.
THIRD_PARTY_NAMES='MDB_[A-Za-z_]+|\bmdb_[a-z_]+|\bjson_t\b|\bCURL[A-Za-z_]*\b|\bEVP_[A-Za-z_]+|\bZSTD_[A-Za-z_]+|\bstruct archive\b|\bMHD_[A-Za-z_]+|\byaml_[a-z_]+_t\b'

headers=("$INC"/pkgstore/*.h)
if [ ! -e "${headers[0]}" ]; then
    echo "1..0 # SKIP no headers under $INC/pkgstore"; exit 0
fi

for h in "${headers[@]}"; do
    name=pkgstore/${h##*/}
    tu=$WORK/${h##*/}
    # Included twice: the include guard must hold.
    printf '#include <%s>\n#include <%s>\n' "$name" "$name" >"$tu.c"
    cp "$tu.c" "$tu.cc"

    compile "$name compiles alone as C99 (-pedantic -Werror -Wall -Wextra -Wstrict-prototypes)" \
        "$tu.c.log" $CC -std=c99 -pedantic -Werror -Wall -Wextra -Wstrict-prototypes \
        -I"$INC" -fsyntax-only "$tu.c"
    compile "$name compiles alone as C++ (-pedantic -Werror -Wall)" "$tu.cc.log" \
        $CXX -std=c++11 -pedantic -Werror -Wall -Wextra -I"$INC" -fsyntax-only "$tu.cc"

    if grep -q '__cplusplus' "$h" && grep -q 'extern "C"' "$h"; then
        ok "$name has C++ guards (extern \"C\")"
    else
        not_ok "$name has C++ guards (extern \"C\")"
    fi

    # Textual includes of third-party headers, and then everything the
    # preprocessor really reads: only this tree and the C library.
    bad=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($THIRD_PARTY)" "$h" |
        grep -vE '#[[:space:]]*include[[:space:]]*"(archive)\.h"')
    deps=$($CC -std=c99 -I"$INC" -M "$tu.c" 2>/dev/null | tr ' \\' '\n\n' | grep '\.h$' |
        grep -v "^$INC/" | grep -E "/($THIRD_PARTY)" || true)
    if [ -z "$bad" ] && [ -z "$deps" ]; then
        ok "$name includes no third-party header"
    else
        not_ok "$name includes no third-party header"
        printf '%s\n%s\n' "$bad" "$deps" | grep -v '^$' | sed 's/^/# /'
    fi

    # Comments stripped: no third-party type or macro in the declarations.
    leak=$($CC -fpreprocessed -dD -E -P -x c "$h" 2>/dev/null | grep -nE "$THIRD_PARTY_NAMES" || true)
    if [ -z "$leak" ]; then
        ok "$name declares no third-party type"
    else
        not_ok "$name declares no third-party type"; printf '%s\n' "$leak" | sed 's/^/# /' | head -5
    fi
done

# A quoted include inside a public header must name a sibling public header.
stray=
for h in "${headers[@]}"; do
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$h"); do
        [ -f "$INC/pkgstore/$inc" ] || stray="$stray ${h##*/}:$inc"
    done
done
if [ -z "$stray" ]; then ok "quoted includes name sibling public headers"
else not_ok "quoted includes name sibling public headers (not found:$stray)"; fi

# The umbrella header includes every module header, and compiles both ways.
missing=
for h in "${headers[@]}"; do
    grep -qE "^#include \"pkgstore/${h##*/}\"" "$INC/pkgstore.h" || missing="$missing ${h##*/}"
done
if [ -z "$missing" ]; then ok "pkgstore.h includes every include/pkgstore/*.h"
else not_ok "pkgstore.h includes every include/pkgstore/*.h (missing:$missing)"; fi
printf '#include <pkgstore.h>\n#include <pkgstore.h>\nint main(void) { return pkgstore_library_version() == 0; }\n' \
    >"$WORK/umbrella.c"
cp "$WORK/umbrella.c" "$WORK/umbrella.cc"
compile "pkgstore.h compiles as C99 (-pedantic -Werror)" "$WORK/umbrella.c.log" \
    $CC -std=c99 -pedantic -Werror -Wall -Wextra -Wstrict-prototypes -I"$INC" -fsyntax-only "$WORK/umbrella.c"
compile "pkgstore.h compiles as C++ (-pedantic -Werror)" "$WORK/umbrella.cc.log" \
    $CXX -std=c++11 -pedantic -Werror -Wall -Wextra -I"$INC" -fsyntax-only "$WORK/umbrella.cc"

# clang is stricter about some C99 corners (enum ranges, empty macro args).
if command -v clang >/dev/null 2>&1; then
    compile "pkgstore.h compiles with clang as C99 (-pedantic -Werror)" "$WORK/umbrella.clang.log" \
        clang -std=c99 -pedantic -Werror -Wall -Wextra -I"$INC" -fsyntax-only "$WORK/umbrella.c"
else
    skip "clang not installed: the clang C99 check did not run"
fi

echo "1..$n"
[ "$fails" = 0 ]
