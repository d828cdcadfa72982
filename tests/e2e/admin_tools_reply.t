#!/usr/bin/env bash
# pkgstore-policy and pkgstore-token against something that answers 200 with
# a body that is not JSON (a login page of a proxy in front of pkgstored):
# a clear error and exit 1, not an empty table and exit 0; --json passes the
# body through as it came. The stand-in is a few lines of perl on a free
# 127.0.0.1 port: the point is the tools' handling of the answer, which the
# real pkgstored never gives. Prints TAP; run by prove.
set -u
BIN=${PKGSTORE_BIN:-$(cd "$(dirname "$0")/../../build/bin" && pwd)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-admin-reply-XXXXXX")
PROXY=
trap '[ -n "$PROXY" ] && kill "$PROXY" 2>/dev/null; rm -rf "$WORK"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }

perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(Listen => 8, LocalAddr => "127.0.0.1:0", ReuseAddr => 1) or die "$!";
    open my $f, ">", $ARGV[0] or die; print $f $s->sockport, "\n"; close $f;
    while (my $c = $s->accept) {
        while (my $line = <$c>) { last if $line =~ /^\r?\n$/ }
        my $body = "<html>proxy sign-in</html>\n";
        print $c "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " . length($body) .
                 "\r\nConnection: close\r\n\r\n$body";
        close $c;
    }' "$WORK/port" &
PROXY=$!
for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
echo token > "$WORK/token"
CONN=(--server "http://127.0.0.1:$(cat "$WORK/port")" --token-file "$WORK/token")

expect_not_json() { # DESC PROGRAM ARGS...
    local desc=$1; shift
    "$@" > "$WORK/out" 2> "$WORK/err"
    local rc=$?
    if [ "$rc" = 1 ] && grep -q "not JSON" "$WORK/err" && [ ! -s "$WORK/out" ]; then
        ok "$desc: exit 1, the answer is not JSON"
    else
        not_ok "$desc: exit $rc, stderr: $(head -c 300 "$WORK/err"), stdout: $(head -c 300 "$WORK/out")"
    fi
}
expect_not_json "pkgstore-policy ls" "$BIN/pkgstore-policy" "${CONN[@]}" ls
expect_not_json "pkgstore-policy audit" "$BIN/pkgstore-policy" "${CONN[@]}" audit
expect_not_json "pkgstore-policy status" "$BIN/pkgstore-policy" "${CONN[@]}" status fleet
expect_not_json "pkgstore-policy show" "$BIN/pkgstore-policy" "${CONN[@]}" show fleet
expect_not_json "pkgstore-token ls" "$BIN/pkgstore-token" "${CONN[@]}" ls
expect_not_json "pkgstore-token revoke" "$BIN/pkgstore-token" "${CONN[@]}" revoke abcd

if out=$("$BIN/pkgstore-policy" "${CONN[@]}" --json ls) && [ "$out" = "<html>proxy sign-in</html>" ]; then
    ok "pkgstore-policy --json ls prints the body as it came"
else
    not_ok "pkgstore-policy --json ls: $out"
fi

echo "1..$n"
exit $((fails > 0))
