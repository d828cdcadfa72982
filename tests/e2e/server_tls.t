#!/usr/bin/env bash
# pkgstored over HTTPS (--tls-cert/--tls-key) and the tools that talk to it
# (--cacert, PKGSTORE_CACERT): a verified request works; a wrong CA, a wrong
# host name, an expired certificate and a plain-HTTP server behind an
# https:// URL each fail with a clear error; nothing turns verification
# off; a key that is not the certificate's is refused at start; SIGHUP
# serves a new certificate to new connections while an established one
# keeps working. Certificates are made here by the openssl command line.
. "$(dirname "$0")/server_common.sh"
. "$(dirname "$0")/lib/tls.sh"

C=$TMP/certs
mkdir -p "$C"
tls_ca "$C" ca1 && tls_ca "$C" ca2 &&
    tls_cert "$C" ca1 good IP:127.0.0.1 &&
    tls_cert "$C" ca2 other IP:127.0.0.1 &&
    tls_cert "$C" ca1 wronghost DNS:pkgstore.invalid &&
    tls_cert "$C" ca1 expired IP:127.0.0.1 expired ||
    { echo "Bail out! openssl could not make the test certificates"; exit 1; }
# the file pkgstored serves; replaced below before a SIGHUP
cp "$C/good.pem" "$TMP/server.pem"; cp "$C/good.key" "$TMP/server.key"

# tool NAME ARGS...: run pkgstore-NAME against $HTTPS_URL; sets RC and ERR.
tool() {
    local name=$1
    shift
    "$BIN/pkgstore-$name" --server "$HTTPS_URL" --token-file "$ADMIN_FILE" "$@" \
        >"$TMP/out" 2>"$TMP/err"
    RC=$?
    ERR=$(cat "$TMP/err")
}
expect_fail() { # DESCRIPTION PATTERN: the last tool run failed with PATTERN on stderr
    if [ "$RC" != 0 ] && [[ "$ERR" == *$2* ]]; then
        ok 0 "$1"
    else
        ok 1 "$1"
        diag "exit $RC, stderr: $ERR"
    fi
}

# --- start-up errors
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tls-cert "$C/good.pem" \
    >/dev/null 2>"$TMP/err"
rc=$?
ok "$([ $rc = 2 ] && grep -q -- '--tls-cert: needs --tls-key too' "$TMP/err"; echo $?)" \
    "--tls-cert without --tls-key: usage error"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tls-cert "$C/good.pem" \
    --tls-key "$C/other.key" >/dev/null 2>"$TMP/err"
rc=$?
ok "$([ $rc = 1 ] && grep -q 'other.key: not the key of the certificate in' "$TMP/err"; echo $?)" \
    "a key that is not the certificate's is refused at start"
"$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --tls-cert "$C/ca1.key" \
    --tls-key "$C/good.key" >/dev/null 2>"$TMP/err"
rc=$?
ok "$([ $rc = 1 ] && grep -q 'ca1.key: not a PEM certificate chain' "$TMP/err"; echo $?)" \
    "a file that is not a certificate is refused at start"

# --- HTTPS with the right CA
start_server --tls-cert "$TMP/server.pem" --tls-key "$TMP/server.key" --threads 2
HTTPS_URL="https://127.0.0.1:$PORT"
ok "$(grep -q 'msg=listening .*tls=on' "$TMP/server.log"; echo $?)" "the log says tls=on"
ok "$(grep -q 'plain HTTP on an address other than loopback' "$TMP/server.log"; [ $? = 1 ]; echo $?)" \
    "no plain-HTTP warning when serving HTTPS"
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$C/ca1.pem" "$HTTPS_URL/healthz")
is "$status" 200 "curl with the CA: /healthz 200 over HTTPS"
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/healthz")
ok "$([ "$status" != 200 ]; echo $?)" "plain HTTP to the HTTPS port gets no answer ($status)"

printf 'hello over https\n' > "$TMP/artifact"
tool push --cacert "$C/ca1.pem" --name hello --version 1.0.0 --platform any --quiet "$TMP/artifact"
ok "$RC" "pkgstore-push --cacert uploads over HTTPS"
[ "$RC" = 0 ] || diag "$ERR"
PKGSTORE_CACERT="$C/ca1.pem" tool policy set all --package hello --version 1.0.0
ok "$RC" "pkgstore-policy with PKGSTORE_CACERT sets a policy over HTTPS"
tool policy --cacert "$C/ca1.pem" --json ls
ok "$([ "$RC" = 0 ] && jq -e '.policies[0].name == "all"' "$TMP/out" >/dev/null; echo $?)" \
    "pkgstore-policy --cacert lists it"
tool show --cacert "$C/ca1.pem" --trust --json
ok "$([ "$RC" = 0 ] && jq -e '.roots == [] and .generation == 0' "$TMP/out" >/dev/null; echo $?)" \
    "pkgstore-show --server --cacert --trust reads the trust over HTTPS"

# blobs over HTTPS come from a reader, not sendfile(): whole, ranges, empty
head -c 300000 /dev/urandom > "$TMP/big"
big=sha256:$(sha256 "$TMP/big")
curl -s -o /dev/null --cacert "$C/ca1.pem" -H "Authorization: Bearer $ADMIN" \
    --data-binary @"$TMP/big" "$HTTPS_URL/v1/blobs"
curl -s -o "$TMP/big.got" --cacert "$C/ca1.pem" -H "Authorization: Bearer $ADMIN" \
    -H 'Accept-Encoding: identity' "$HTTPS_URL/v1/blobs/$big"
ok "$(cmp -s "$TMP/big" "$TMP/big.got"; echo $?)" "a 300 KB blob downloads intact over HTTPS"
curl -s -o "$TMP/big.range" --cacert "$C/ca1.pem" -H "Authorization: Bearer $ADMIN" \
    -r 70000-200009 "$HTTPS_URL/v1/blobs/$big"
ok "$(cmp -s "$TMP/big.range" <(tail -c +70001 "$TMP/big" | head -c 130010); echo $?)" \
    "a range of it too"
: > "$TMP/empty"
empty=sha256:$(sha256 "$TMP/empty")
curl -s -o /dev/null --cacert "$C/ca1.pem" -H "Authorization: Bearer $ADMIN" \
    --data-binary @"$TMP/empty" "$HTTPS_URL/v1/blobs"
status=$(curl -s -o "$TMP/empty.got" -w '%{http_code}' --cacert "$C/ca1.pem" \
    -H "Authorization: Bearer $ADMIN" "$HTTPS_URL/v1/blobs/$empty")
ok "$([ "$status" = 200 ] && [ ! -s "$TMP/empty.got" ]; echo $?)" "and an empty blob"

# --- failures, each with a clear error
tool policy --cacert "$C/ca2.pem" ls
expect_fail "wrong CA: refused, 'server certificate not trusted'" "server certificate not trusted"
tool policy ls
expect_fail "no CA given: the system's CAs do not know ca1" "server certificate not trusted"
tool show --cacert "$C/ca2.pem" --trust
expect_fail "pkgstore-show --trust with the wrong CA: refused" "server certificate not trusted"
tool push --cacert "$C/ca2.pem" --name hello --version 1.0.1 --platform any --quiet "$TMP/artifact"
expect_fail "pkgstore-push with the wrong CA: refused, nothing uploaded" "server certificate not trusted"
tool policy --cacert "$TMP/missing.pem" ls
expect_fail "a CA file that does not exist: named in the error" "missing.pem: cannot read the CA file"
tool policy --insecure --cacert "$C/ca2.pem" ls
ok "$([ "$RC" = 2 ]; echo $?)" "no --insecure: verification cannot be turned off"
tool push -k --cacert "$C/ca2.pem" --name hello --version 1.0.1 --platform any "$TMP/artifact"
ok "$([ "$RC" = 2 ]; echo $?)" "no -k either"

# --- SIGHUP: an established connection keeps working, new ones get the new certificate
coproc TLSCONN { exec openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$C/ca1.pem" \
    -verify_return_error -quiet -no_ign_eof 2>"$TMP/s_client.err"; }
EXTRA_PIDS+=("$TLSCONN_PID")
request_on_conn() { # one keep-alive request on the open connection; prints the body
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&"${TLSCONN[1]}"
    local reply=
    IFS= read -r -t 10 -d '}' -u "${TLSCONN[0]}" reply && printf '%s}' "${reply##*$'\r\n\r\n'}"
}
is "$(request_on_conn)" '{"status":"ok"}' "an HTTPS connection answers a first request"
cp "$C/other.pem" "$TMP/server.pem"; cp "$C/other.key" "$TMP/server.key"
kill -HUP "$SERVER_PID"
reloaded() { grep -q 'msg="reloaded the TLS certificate" .*subject="CN=other"' "$TMP/server.log"; }
for _ in $(seq 1 200); do reloaded && break; sleep 0.05; done
ok "$(reloaded; echo $?)" "SIGHUP: the log says the certificate was reloaded"
is "$(request_on_conn)" '{"status":"ok"}' "the connection opened before the SIGHUP still answers"
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$C/ca2.pem" "$HTTPS_URL/healthz")
is "$status" 200 "a new connection gets the new certificate (ca2 verifies it)"
tool policy --cacert "$C/ca1.pem" ls
expect_fail "and the old CA no longer verifies new connections" "server certificate not trusted"
tlsconn_pid=$TLSCONN_PID
exec {TLSCONN[1]}>&-
wait "$tlsconn_pid" 2>/dev/null
ok "$(server_alive; echo $?)" "pkgstored still running"

# a file that does not load on SIGHUP: the certificate in use stays
printf 'not a certificate\n' > "$TMP/server.pem"
kill -HUP "$SERVER_PID"
kept() { grep -q 'SIGHUP: certificate not reloaded; the previous one stays in use' "$TMP/server.log"; }
for _ in $(seq 1 200); do kept && break; sleep 0.05; done
ok "$(kept; echo $?)" "SIGHUP with a broken file: logged, the previous certificate stays"
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$C/ca2.pem" "$HTTPS_URL/healthz")
is "$status" 200 "and is still served"

# wrong host name: the certificate names pkgstore.invalid, the URL 127.0.0.1
cp "$C/wronghost.pem" "$TMP/server.pem"; cp "$C/wronghost.key" "$TMP/server.key"
kill -HUP "$SERVER_PID"
for _ in $(seq 1 200); do grep -q 'subject="CN=wronghost"' "$TMP/server.log" && break; sleep 0.05; done
tool policy --cacert "$C/ca1.pem" ls
expect_fail "wrong host name: refused, the error names the mismatch" "server certificate not trusted: *127.0.0.1*"

# expired
cp "$C/expired.pem" "$TMP/server.pem"; cp "$C/expired.key" "$TMP/server.key"
kill -HUP "$SERVER_PID"
for _ in $(seq 1 200); do grep -q 'subject="CN=expired"' "$TMP/server.log" && break; sleep 0.05; done
ok "$(grep -q 'the certificate has expired' "$TMP/server.log"; echo $?)" \
    "pkgstored warns that the certificate it loaded has expired"
tool policy --cacert "$C/ca1.pem" ls
expect_fail "expired certificate: refused, 'certificate has expired'" "certificate has expired"
stop_server
is "$STOP_STATUS" 0 "pkgstored stops cleanly"

# --- a plain-HTTP server behind an https:// URL
start_server --threads 1
HTTPS_URL="https://127.0.0.1:$PORT"
ok "$(grep -q 'msg=listening .*tls=off' "$TMP/server.log"; echo $?)" "plain HTTP: the log says tls=off"
tool policy --cacert "$C/ca1.pem" ls
expect_fail "plain HTTP behind https://: 'TLS handshake failed', with a hint" \
    "TLS handshake failed:*does the server serve HTTPS on that port?"
HTTPS_URL="ftp://127.0.0.1:$PORT"
tool policy ls
expect_fail "a server URL that is neither https:// nor http://: refused" "must start with https:// or http://"
stop_server

# --- a client that connects and never starts the handshake is cut by the
# header deadline, as over plain HTTP (the guard sees the connection first)
cp "$C/good.pem" "$TMP/server.pem"; cp "$C/good.key" "$TMP/server.key"
start_server --tls-cert "$TMP/server.pem" --tls-key "$TMP/server.key" --threads 1 --header-timeout 1
exec {silent}<>"/dev/tcp/127.0.0.1/$PORT"
timeout 30 cat <&"$silent" >/dev/null
rc=$?
exec {silent}<&-
ok "$([ $rc = 0 ] && grep -q 'msg="connection cut" reason=header_timeout' "$TMP/server.log"; echo $?)" \
    "a connection silent before the TLS handshake is cut (header_timeout)"
stop_server

finish
