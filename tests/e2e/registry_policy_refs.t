#!/usr/bin/env bash
# A version a policy references stays, for every program: pkgstore-rm and
# pkgstore-add --replace, run beside the real pkgstored on the same store,
# are refused by the registry itself (issue 10 section 2, issue 9), not
# only by the server's DELETE. Prints TAP; run by prove.
. "$(dirname "$0")/server_common.sh"

start_server
ok $? "pkgstored starts on 127.0.0.1:$PORT"

S=$TMP/store
printf '#!/bin/sh\necho 0.98.0\n' >"$TMP/otelcol-0.98.0"
printf '#!/bin/sh\necho rebuilt 0.98.0\n' >"$TMP/rebuilt"
printf '#!/bin/sh\necho 0.99.0\n' >"$TMP/otelcol-0.99.0"
for v in 0.98.0 0.99.0; do
    "$BIN/pkgstore-add" --store "$S" --no-fsync --name otelcol-contrib --version "$v" \
        --platform linux/amd64 --entrypoint otelcol-contrib "$TMP/otelcol-$v" >/dev/null 2>"$TMP/err"
    ok $? "pkgstore-add otelcol-contrib $v beside the server"
done

req PUT /v1/policies/canary -d '{"selector":"env=dev","package":"otelcol-contrib","version":"0.98.0"}'
is "$STATUS $(json .version)" "200 0.98.0" "the server takes a policy for 0.98.0, added by another process"

"$BIN/pkgstore-rm" --store "$S" otelcol-contrib 0.98.0 >/dev/null 2>"$TMP/err"
is "$? $(cat "$TMP/err")" "1 pkgstore-rm: otelcol-contrib 0.98.0 is referenced by policy canary" \
    "pkgstore-rm refuses a version a policy references (exit 1, one line)"
"$BIN/pkgstore-show" --store "$S" otelcol-contrib 0.98.0 >/dev/null 2>&1
ok $? "the version is still there"

"$BIN/pkgstore-add" --store "$S" --no-fsync --replace --name otelcol-contrib --version 0.98.0 \
    --platform linux/amd64 --entrypoint otelcol-contrib "$TMP/rebuilt" >/dev/null 2>"$TMP/err"
is "$? $(tail -n1 "$TMP/err")" \
    "3 pkgstore-add: otelcol-contrib 0.98.0 is referenced by policy canary" \
    "pkgstore-add --replace refuses to change a version a policy references"
req GET /v1/packages/otelcol-contrib/0.98.0
is "$STATUS $(json '.artifacts[0].digest')" "200 sha256:$(sha256 "$TMP/otelcol-0.98.0")" \
    "the server still offers the original artifact"

"$BIN/pkgstore-rm" --store "$S" otelcol-contrib 0.99.0 >/dev/null 2>"$TMP/err"
ok $? "a version no policy references is removed"

req DELETE /v1/policies/canary
is "$STATUS" "200" "the policy is deleted"
"$BIN/pkgstore-rm" --store "$S" otelcol-contrib 0.98.0 >/dev/null 2>"$TMP/err"
ok $? "once no policy references it, pkgstore-rm removes it"
req GET /v1/packages/otelcol-contrib/0.98.0
is "$STATUS" "404" "and the server sees it gone"

stop_server
is "$STOP_STATUS" "0" "pkgstored stops cleanly"
finish
