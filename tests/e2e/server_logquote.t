#!/usr/bin/env bash
# log_quote() (server/log.c) never writes past its buffer: every request
# path, error detail and libmicrohttpd message goes through it, and a
# control character's 4-byte \xNN escape near the end of the buffer must
# still leave room for "...", the closing quote and the NUL. Built with
# AddressSanitizer when the compiler has it.
. "$(dirname "$0")/server_common.sh"

cat >"$TMP/lq.c" <<'C'
#include <stdlib.h>
#include <string.h>
#include "server.h"
int main(void)
{
    int bad = 0;
    for (size_t size = 8; size < 64; size++) {
        for (size_t pos = 0; pos < 70; pos++) {
            char in[80], *buf = malloc(size);
            memset(in, 'a', sizeof in - 1);
            in[sizeof in - 1] = '\0';
            in[pos] = '\001'; /* escaped as \x01 */
            if (!buf)
                return 2;
            log_quote(buf, size, in);
            if (strnlen(buf, size) >= size)
                bad = 1;
            free(buf);
        }
    }
    return bad;
}
C
CFLAGS_LQ=(-std=c11 -D_GNU_SOURCE -g -I"$SRC/include" -I"$SRC/server" -I"$SRC/libpkgstore"
           -DPKGSTORE_VERSION_STRING='"test"')
if ! ${CC:-cc} "${CFLAGS_LQ[@]}" -fsanitize=address -o "$TMP/lq" "$TMP/lq.c" "$SRC/server/log.c" \
        2>"$TMP/cc.log"; then
    ${CC:-cc} "${CFLAGS_LQ[@]}" -o "$TMP/lq" "$TMP/lq.c" "$SRC/server/log.c" 2>>"$TMP/cc.log" || {
        echo "1..0 # SKIP cannot build the log_quote driver"
        exit 0
    }
fi
"$TMP/lq" >"$TMP/lq.out" 2>&1
ok $? "log_quote stays inside its buffer for a \\xNN escape at every position and size"
[ -s "$TMP/lq.out" ] && sed 's/^/# /' "$TMP/lq.out" | head -n 5
finish
