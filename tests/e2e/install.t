#!/usr/bin/env bash
# `make install` into a DESTDIR, then use the installed tree as an embedder
# would: pkg-config, headers, the shared and the static library, and
# examples/embed_store.c built and run against them. Also checks that the
# shared library exports exactly the public API (pkgstore_*, nothing else)
# and every function the headers declare. Prints TAP; run by prove.
set -u
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${PKGSTORE_BUILD:-$SRC/build}
BIN=${PKGSTORE_BIN:-$BUILD/bin}
CC=${CC:-cc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-install-XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
DEST=$WORK/dest
PREFIX=/usr
LIBDIR=$DEST$PREFIX/lib

n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }
# show FILE: the first lines of FILE as TAP comments
show() { sed 's/^/# /' "$1" | head -${2:-15}; }

# The library's version and soname major come from the Makefile.
VERSION=$(sed -n 's/^VERSION *:= *//p' "$SRC/Makefile")
SOMAJOR=$(sed -n 's/^SOMAJOR *:= *//p' "$SRC/Makefile")

# ---------------------------------------------------------------- make install
# Same BUILD as the tree under test: install must not rebuild elsewhere.
if make -C "$SRC" --no-print-directory install DESTDIR="$DEST" PREFIX="$PREFIX" \
    BUILD="$BUILD" >"$WORK/install.log" 2>&1; then
    ok "make install DESTDIR=... PREFIX=$PREFIX"
else
    not_ok "make install DESTDIR=... PREFIX=$PREFIX"; show "$WORK/install.log" 30
    echo "1..$n"; exit 1
fi
check "install compiled nothing (the tree under test was already built)" \
    "! grep -qE '(^| )-c [^ ]+\.c' '$WORK/install.log'"
check "nothing was written outside DESTDIR's prefix" \
    "[ -z \"\$(ls -A '$DEST' | grep -vx '${PREFIX#/}')\" ]"

# ---------------------------------------------------------------- library files
REAL=libpkgstore.so.$VERSION
check "$REAL installed as a regular file" "[ -f '$LIBDIR/$REAL' ] && [ ! -L '$LIBDIR/$REAL' ]"
check "libpkgstore.so.$SOMAJOR -> $REAL (relative symlink)" \
    "[ -L '$LIBDIR/libpkgstore.so.$SOMAJOR' ] && [ \"\$(readlink '$LIBDIR/libpkgstore.so.$SOMAJOR')\" = '$REAL' ]"
check "libpkgstore.so -> libpkgstore.so.$SOMAJOR (relative symlink)" \
    "[ -L '$LIBDIR/libpkgstore.so' ] && [ \"\$(readlink '$LIBDIR/libpkgstore.so')\" = 'libpkgstore.so.$SOMAJOR' ]"
check "the symlinks resolve" "[ -e '$LIBDIR/libpkgstore.so' ] && [ -e '$LIBDIR/libpkgstore.so.$SOMAJOR' ]"
check "SONAME is libpkgstore.so.$SOMAJOR" \
    "readelf -d '$LIBDIR/$REAL' | grep -q 'SONAME.*\[libpkgstore.so.$SOMAJOR\]'"
check "the shared library has no RPATH/RUNPATH" "! readelf -d '$LIBDIR/$REAL' | grep -qE 'RPATH|RUNPATH'"
check "libpkgstore.a installed" "[ -f '$LIBDIR/libpkgstore.a' ] && ar t '$LIBDIR/libpkgstore.a' | grep -q '\.o$'"

# ---------------------------------------------------------------- headers
hdr_bad=
for h in "$SRC"/include/pkgstore/*.h; do
    cmp -s "$h" "$DEST$PREFIX/include/pkgstore/${h##*/}" || hdr_bad="$hdr_bad ${h##*/}"
done
check "every include/pkgstore/*.h installed unchanged${hdr_bad:+ (missing or different:$hdr_bad)}" \
    "[ -z '$hdr_bad' ]"
check "include/pkgstore.h installed unchanged" "cmp -s '$SRC/include/pkgstore.h' '$DEST$PREFIX/include/pkgstore.h'"
check "headers are not executable" \
    "[ -z \"\$(find '$DEST$PREFIX/include' -type f -perm /111)\" ]"

# ---------------------------------------------------------------- pkgstore.pc
PC=$LIBDIR/pkgconfig/pkgstore.pc
check "pkgstore.pc installed in \$libdir/pkgconfig" "[ -f '$PC' ]"
check "pkgstore.pc has the install prefix $PREFIX" "grep -qx 'prefix=$PREFIX' '$PC'"
check "pkgstore.pc libdir and includedir are under the prefix" \
    "grep -qx 'libdir=$PREFIX/lib' '$PC' && grep -qx 'includedir=$PREFIX/include' '$PC'"
check "pkgstore.pc names no build or DESTDIR path" "! grep -qE '$BUILD|$DEST' '$PC'"
[ -f "$PC" ] && ! grep -qx "prefix=$PREFIX" "$PC" && show "$PC"

# PKG_CONFIG_PATH is searched before the system's .pc files (which
# Requires.private names); the sysroot maps the installed paths into DESTDIR.
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DEST
check "pkg-config --modversion pkgstore is $VERSION" "[ \"\$(pkg-config --modversion pkgstore)\" = '$VERSION' ]"
PC_CFLAGS=$(pkg-config --cflags pkgstore)
PC_LIBS=$(pkg-config --libs pkgstore)
check "pkg-config --cflags points into DESTDIR ($PC_CFLAGS)" "[[ ' $PC_CFLAGS ' == *' -I$DEST$PREFIX/include '* ]]"
check "pkg-config --libs links -lpkgstore from DESTDIR ($PC_LIBS)" \
    "[[ ' $PC_LIBS ' == *' -L$LIBDIR '* && ' $PC_LIBS ' == *' -lpkgstore '* ]]"
check "pkg-config --static --libs resolves (Requires.private present)" \
    "pkg-config --static --libs pkgstore >'$WORK/static-libs' 2>&1"

# ---------------------------------------------------------------- programs and man pages
missing=
for p in "$BIN"/pkgstore*; do
    [ "${p##*/}" = pkgstore-agent-helper ] && continue
    [ -x "$DEST$PREFIX/bin/${p##*/}" ] || missing="$missing ${p##*/}"
done
check "every pkgstore* program installed in \$prefix/bin${missing:+ (missing:$missing)}" "[ -z '$missing' ]"
HELPER=$DEST$PREFIX/libexec/pkgstore/pkgstore-agent-helper
check "the agent's helper installed in \$prefix/libexec/pkgstore, not in bin" \
    "[ -x '$HELPER' ] && [ ! -e '$DEST$PREFIX/bin/pkgstore-agent-helper' ]"
check "the installed helper finds the installed library (rpath \$ORIGIN/../../lib)" \
    "[ \"\$(readlink -f \"\$(ldd '$HELPER' | awk '/libpkgstore\\.so/ {print \$3}')\")\" = '$LIBDIR/$REAL' ]"
check "the installed helper runs" "'$HELPER' --version | grep -q '$VERSION'"
cat > "$WORK/agent.yaml" <<YAML
server: {url: http://127.0.0.1:9}
state_dir: $WORK/agent-state
collector: {package: otelcol, executable: $WORK/otelcol, config: $WORK/otelcol.yaml}
YAML
check "the installed agent finds the installed helper" \
    "'$DEST$PREFIX/bin/pkgstore-agent' --config '$WORK/agent.yaml' --check-config | grep -q 'helper $HELPER)'"
check "the installed agent maps neither libcurl nor OpenSSL nor libarchive" \
    "! ldd '$DEST$PREFIX/bin/pkgstore-agent' | grep -Eq 'libcurl|libcrypto|libarchive|libpkgstore'"
check "no example or test program installed" \
    "[ -z \"\$(ls '$DEST$PREFIX/bin' | grep -E '^(example-|fake-)')\" ]"
# loaded_lib PROGRAM: the libpkgstore the dynamic linker picks for PROGRAM
loaded_lib() { readlink -f "$(ldd "$1" | awk '/libpkgstore\.so/ {print $3}')"; }
check "an installed program finds the installed library (rpath \$ORIGIN/../lib)" \
    "[ \"\$(loaded_lib '$DEST$PREFIX/bin/pkgstore-add')\" = '$LIBDIR/$REAL' ]"
check "an installed program runs" "'$DEST$PREFIX/bin/pkgstore-add' --version | grep -q '$VERSION'"
man_bad=
for m in "$SRC"/docs/*.[18]; do
    s=${m##*.}
    cmp -s "$m" "$DEST$PREFIX/share/man/man$s/${m##*/}" || man_bad="$man_bad ${m##*/}"
done
check "every docs/*.1 and *.8 installed in share/man/man1 or man8${man_bad:+ (missing:$man_bad)}" \
    "[ -z '$man_bad' ]"
# A cross-reference such as ".BR pkgstore\-agent (8)" names an installed page.
bad_refs=$(for m in "$DEST$PREFIX"/share/man/man[18]/*.[18]; do
    sed -n 's/\\-/-/g; s/^\.BR* \(pkgstore[a-z-]*\) (\([18]\)).*/\1 \2/p' "$m" | while read -r page s; do
        [ -f "$DEST$PREFIX/share/man/man$s/$page.$s" ] || echo "${m##*/}:$page($s)"
    done
done)
check "every man page cross-reference names an installed page${bad_refs:+ (dangling: $(echo $bad_refs))}" \
    "[ -z '$bad_refs' ]"
ui_bad=
for f in "$SRC"/ui/*; do
    [ -f "$f" ] || continue
    cmp -s "$f" "$DEST$PREFIX/share/pkgstore/ui/${f##*/}" || ui_bad="$ui_bad ${f##*/}"
done
check "every file of ui/ (the web console) installed in share/pkgstore/ui${ui_bad:+ (missing or different:$ui_bad)}" \
    "[ -z '$ui_bad' ] && [ -f '$DEST$PREFIX/share/pkgstore/ui/index.html' ]"
check "every program has its man page" \
    "for p in '$DEST$PREFIX'/bin/* '$HELPER'; do b=\${p##*/}; ls '$DEST$PREFIX'/share/man/man[18]/\$b.[18] >/dev/null 2>&1 || { echo \"# no man page for \$b\"; exit 1; }; done"

# ---------------------------------------------------------------- exported symbols
nm -D --defined-only "$LIBDIR/$REAL" | awk '{print $3}' | sort -u >"$WORK/exported"
check "the shared library exports symbols ($(wc -l <"$WORK/exported"))" "[ -s '$WORK/exported' ]"
grep -v '^pkgstore_' "$WORK/exported" >"$WORK/foreign"
check "it exports only pkgstore_* symbols" "[ ! -s '$WORK/foreign' ]"
[ -s "$WORK/foreign" ] && show "$WORK/foreign"
check "no ps_* internal is exported" "! grep -q '^ps_' '$WORK/exported'"
# Every PKGSTORE_API declaration in the installed headers, by name.
perl -0777 -ne 'while (/PKGSTORE_API\b([^;(]*)\(/g) { my $d = $1; print "$1\n" if $d =~ /\b(pkgstore_\w+)\s*$/ }' \
    "$DEST$PREFIX"/include/pkgstore/*.h | sort -u >"$WORK/declared"
comm -23 "$WORK/declared" "$WORK/exported" >"$WORK/undefined"
comm -13 "$WORK/declared" "$WORK/exported" >"$WORK/undeclared"
check "every function the headers declare is exported ($(wc -l <"$WORK/declared"))" "[ ! -s '$WORK/undefined' ]"
[ -s "$WORK/undefined" ] && show "$WORK/undefined"
check "every exported function is declared in a public header" "[ ! -s '$WORK/undeclared' ]"
[ -s "$WORK/undeclared" ] && show "$WORK/undeclared"

# ---------------------------------------------------------------- build an embedder
# A sanitized library (make asan) needs the sanitizer runtime in the program too.
SAN=
if readelf -d "$LIBDIR/$REAL" | grep -qE 'NEEDED.*lib(asan|ubsan)'; then
    SAN="-fsanitize=address,undefined"
fi
EX_SRC=$SRC/examples/embed_store.c
# Only the installed tree is on the include path: no -I into the source.
if $CC -std=c99 -Wall -Wextra -Werror $SAN -o "$WORK/embed_store" "$EX_SRC" \
    $PC_CFLAGS $PC_LIBS >"$WORK/cc.log" 2>&1; then
    ok "examples/embed_store.c builds against the installed tree (pkg-config)"
else
    not_ok "examples/embed_store.c builds against the installed tree (pkg-config)"; show "$WORK/cc.log"
fi
check "it was compiled with the installed pkgstore.h" \
    "$CC -std=c99 -M $PC_CFLAGS '$EX_SRC' 2>/dev/null | tr ' \\\\' '\n\n' | grep -qx '$DEST$PREFIX/include/pkgstore.h'"
export LD_LIBRARY_PATH=$LIBDIR
check "at run time it loads the installed libpkgstore" \
    "[ \"\$(loaded_lib '$WORK/embed_store')\" = '$LIBDIR/$REAL' ]"
head -c 300000 /dev/urandom >"$WORK/payload"
WANT=sha256:$(sha256sum "$WORK/payload" | cut -d' ' -f1)
"$WORK/embed_store" --expect "$WANT" "$WORK/store" "$WORK/payload" >"$WORK/out" 2>"$WORK/err"; rc=$?
check "the embedder stores and verifies a blob (exit $rc)" "[ $rc = 0 ]"
[ $rc = 0 ] || show "$WORK/err"
check "it prints the digest and size" "[ \"\$(cat '$WORK/out')\" = '$WANT 300000' ]"
check "the blob is in the store, named by its digest" \
    "[ -f '$WORK/store/blobs/sha256/${WANT:7:2}/${WANT#sha256:}' ]"
"$WORK/embed_store" --expect "sha256:$(printf '%064d' 0)" "$WORK/store2" "$WORK/payload" \
    >"$WORK/out" 2>"$WORK/err"; rc=$?
check "a wrong expected digest fails with exit 1" "[ $rc = 1 ]"
check "in one line 'example-embed_store: <object>: <reason>'" \
    "[ \$(wc -l <'$WORK/err') = 1 ] && grep -q '^example-embed_store: $WORK/payload: digest mismatch' '$WORK/err'"
show "$WORK/err" 1
check "and leaves no blob behind" \
    "[ -f '$WORK/store2/pkgstore.json' ] && [ -z \"\$(find '$WORK/store2/blobs' '$WORK/store2/tmp' -type f 2>/dev/null)\" ]"
unset LD_LIBRARY_PATH

# The static library: pkgstore.pc's Libs.private must name every library
# libpkgstore.a needs. (Not `pkg-config --static --libs`: that recurses into
# libarchive's own private libraries, whose static -dev packages need not be
# installed.)
PRIVATE_LIBS=$(sed -n 's/^Libs.private: *//p' "$PC")
if $CC -std=c99 $SAN -o "$WORK/embed_store_static" "$EX_SRC" $PC_CFLAGS \
    "$LIBDIR/libpkgstore.a" $PRIVATE_LIBS >"$WORK/cc-static.log" 2>&1; then
    ok "examples/embed_store.c links the installed libpkgstore.a with Libs.private"
    check "the statically linked embedder needs no libpkgstore.so" \
        "! ldd '$WORK/embed_store_static' | grep -q libpkgstore"
    "$WORK/embed_store_static" "$WORK/store3" "$WORK/payload" >"$WORK/out" 2>"$WORK/err"; rc=$?
    check "and works (exit $rc)" "[ $rc = 0 ] && [ \"\$(cat '$WORK/out')\" = '$WANT 300000' ]"
else
    not_ok "examples/embed_store.c links the installed libpkgstore.a with Libs.private"
    show "$WORK/cc-static.log"
fi

# ---------------------------------------------------------------- the built examples
# build/bin/example-* (make builds every examples/*.c) against the build tree.
X=$WORK/examples
mkdir -p "$X"
printf '\177ELF fake collector\n' >"$X/collector"
COLLECTOR=sha256:$(sha256sum "$X/collector" | cut -d' ' -f1)
COLLECTOR_SIZE=$(wc -c <"$X/collector")
"$BIN/example-embed_registry" "$X/store" otelcol-contrib 0.98.0 linux/x86_64 "$X/collector" \
    '>=0.90.0 <1.0.0' linux/amd64 >"$X/out" 2>"$X/err"; rc=$?
check "example-embed_registry adds and resolves (exit $rc)" "[ $rc = 0 ]"
[ $rc = 0 ] || show "$X/err"
check "it prints the manifest with the normalized platform" \
    "grep -q '\"platform\": \"linux/amd64\"' '$X/out' && grep -q '\"schemaVersion\": 1' '$X/out'"
check "it resolves to the artifact" \
    "grep -qx 'resolved otelcol-contrib 0.98.0 linux/amd64 $COLLECTOR $COLLECTOR_SIZE binary otelcol-contrib' '$X/out'"
"$BIN/example-embed_registry" "$X/store" otelcol-contrib 0.98.0 linux/amd64 "$X/collector" '^2' \
    >"$X/out" 2>"$X/err"; rc=$?
check "an unmatched constraint fails with exit 1 and one line naming it" \
    "[ $rc = 1 ] && [ \$(wc -l <'$X/err') = 1 ] && grep -q '^example-embed_registry: resolve: .*\\^2' '$X/err'"
"$BIN/example-embed_registry" "$X/store" Bad-Name 1.0.0 linux/amd64 "$X/collector" >"$X/out" 2>"$X/err"; rc=$?
check "a bad package name fails with exit 1" "[ $rc = 1 ] && grep -q '^example-embed_registry: Bad-Name 1.0.0: name: ' '$X/err'"
"$BIN/example-embed_registry" "$X/store" >"$X/out" 2>"$X/err"; rc=$?
check "example-embed_registry without arguments is a usage error (exit 2)" "[ $rc = 2 ]"

"$BIN/example-embed_policy" "$X/pstore" "$X/collector" >"$X/out" 2>"$X/err"; rc=$?
check "example-embed_policy puts a policy and evaluates a node (exit $rc)" "[ $rc = 0 ]"
[ $rc = 0 ] || show "$X/err"
check "the canary policy offers its version for linux/amd64" \
    "grep -q '^decision: policy=canary verdict=offer package=otelcol-contrib version=0.98.0 platform=linux/amd64 digest=$COLLECTOR\$' '$X/out'"
check "the stored policy has the selector in canonical form" \
    "grep -q '^policy canary: selector \"canary=true,env=dev\" -> otelcol-contrib 0.98.0 (priority 10)\$' '$X/out'"
"$BIN/example-embed_policy" "$X/pstore" "$X/missing" >"$X/out" 2>"$X/err"; rc=$?
check "a missing file fails with exit 1 and one line" \
    "[ $rc = 1 ] && [ \$(wc -l <'$X/err') = 1 ] && grep -q '^example-embed_policy: artifact: ' '$X/err'"
for e in "$BIN"/example-*; do
    "$e" --version >"$X/out" 2>&1 && "$e" --help >>"$X/out" 2>&1 ||
        { not_ok "${e##*/} --help and --version"; continue; }
    check "${e##*/} --help and --version" "grep -q '(pkgstore) $VERSION' '$X/out' && grep -q '^usage: ' '$X/out'"
done

echo "1..$n"
[ "$fails" = 0 ]
