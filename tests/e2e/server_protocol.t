#!/usr/bin/env bash
# Protocol edges (issue 9): a body framed two ways is refused (request
# smuggling behind a proxy), a raw NUL in the request line is refused
# rather than cut off, and query values keep a literal '+'
# (format=tar+gzip as docs/api.md writes it).
. "$(dirname "$0")/server_common.sh"

start_server

# raw REQUEST: send REQUEST (printf escapes) on one connection, read until
# the server closes it; sets RAW (the whole answer, CR removed).
raw() {
    RAW=$(printf "$1" | perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:'"$PORT"'") or die "connect: $!";
        local $/; my $req = <STDIN>; print $s $req;
        my $answer = ""; while (sysread($s, my $buf, 65536)) { $answer .= $buf } print $answer;' \
        | tr -d '\r')
}
status_of() { printf '%s\n' "$RAW" | head -1 | cut -d' ' -f2; }
code_of() { printf '%s\n' "$RAW" | sed -n '/^{/p' | jq -r '.error.code // empty' 2>/dev/null; }
header_of() { printf '%s\n' "$RAW" | sed -n '/^$/q;p' | grep -i "^$1:" | head -1 | cut -d' ' -f2-; }
AUTH="Authorization: Bearer $ADMIN"

# --- framing
raw "POST /v1/blobs HTTP/1.1\r\nHost: t\r\n$AUTH\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
is "$(status_of) $(code_of)" "400 INVALID" "two differing Content-Length headers: 400"
is "$(header_of Connection)" "close" "and the connection is closed (the body's end is unknown)"
raw "POST /v1/blobs HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
is "$(status_of) $(code_of)" "400 INVALID" "differing Content-Length is refused before the token is checked"
raw "POST /v1/blobs HTTP/1.1\r\nHost: t\r\n$AUTH\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
is "$(status_of) $(code_of)" "400 INVALID" "Transfer-Encoding and Content-Length together: 400"
raw "POST /v1/blobs HTTP/1.1\r\nHost: t\r\n$AUTH\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
is "$(status_of)" "201" "two equal Content-Length headers are one length (RFC 9112 6.3): 201"
req GET /v1/blobs/sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
is "$STATUS $BODY" "200 abc" "only the 3-byte body that was framed twice was stored"
req GET /v1/blobs/sha256:$(printf abcde | sha256sum | cut -c1-64)
is "$STATUS" "404" "the refused 5-byte reading stored nothing"

# --- a raw NUL in the request line
raw 'GET /healthz\0junk HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
is "$(status_of) $(code_of)" "400 INVALID" "a NUL after the path is refused, not served as /healthz"
raw 'GET /hea\0lthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
is "$(status_of) $(code_of)" "400 INVALID" "a NUL inside the path is refused"
raw 'GET\0X /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
is "$(status_of) $(code_of)" "400 INVALID" "a NUL inside the method is refused"
raw 'GET /healthz?a=b\0c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
is "$(status_of) $(code_of)" "400 INVALID" "a NUL inside the query is refused"
raw 'GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
is "$(status_of)" "200" "the same request without the NUL is served"

# --- query values: '+' is a plus
mkdir -p "$TMP/pkg/bin"
printf '#!/bin/sh\necho hi\n' >"$TMP/pkg/bin/otelcol"
chmod +x "$TMP/pkg/bin/otelcol"
tar -C "$TMP/pkg" -czf "$TMP/pkg.tar.gz" bin
req PUT "/v1/packages/plus/1.0.0?platform=linux/amd64&format=tar+gzip&entrypoint=bin/otelcol" \
    --data-binary @"$TMP/pkg.tar.gz"
is "$STATUS $(json '.artifacts[0].format')" "201 tar+gzip" "format=tar+gzip unencoded is tar+gzip"
req PUT "/v1/packages/plus/1.0.1?platform=linux/amd64&format=tar%2Bgzip&entrypoint=bin/otelcol" \
    --data-binary @"$TMP/pkg.tar.gz"
is "$STATUS $(json '.artifacts[0].format')" "201 tar+gzip" "format=tar%2Bgzip is tar+gzip too"
req PUT "/v1/packages/plus/1.0.2?platform=linux/amd64&format=tar%20gzip" --data-binary @"$TMP/pkg.tar.gz"
is "$STATUS $(error_code)" "400 INVALID" "format=tar%20gzip (a space) is refused"
req PUT "/v1/packages/plus/1.0.3?platform=linux/amd64&format=tar+gzip&format=zip&entrypoint=bin/otelcol" \
    --data-binary @"$TMP/pkg.tar.gz"
is "$STATUS $(json '.artifacts[0].format')" "201 tar+gzip" "a repeated argument: the first one counts"

# --- platforms that name directories
for platform in ../.. ./. linux/amd64/.. linux/..; do
    req PUT "/v1/packages/plat/1.0.0?platform=$platform" --data-binary x
    is "$STATUS $(error_code)" "400 INVALID" "platform=$platform is refused"
done
req GET /v1/packages/plat
is "$STATUS" "404" "nothing was stored for them"

server_alive
ok $? "the server process is alive"
finish
