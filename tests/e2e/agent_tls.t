#!/bin/bash
# pkgstore-agent against pkgstored over HTTPS (server.ca_file): an upgrade
# works end to end (heartbeat, offer, download, status reports) over a
# verified connection; a wrong CA, a wrong host name, an expired
# certificate and a plain-HTTP server behind an https:// url each stop the
# agent at the first heartbeat with a clear error while a policy offers a
# new version, and the old collector keeps running. Certificates are made
# here by the openssl command line.
. "$(dirname "$0")/lib/agent.sh"
. "$(dirname "$0")/lib/tls.sh"
echo "1..16"

C=$T/certs
mkdir -p "$C"
tls_ca "$C" ca1 && tls_ca "$C" ca2 &&
    tls_cert "$C" ca1 good IP:127.0.0.1 &&
    tls_cert "$C" ca1 wronghost DNS:pkgstore.invalid &&
    tls_cert "$C" ca1 expired IP:127.0.0.1 expired ||
    { echo "Bail out! openssl could not make the test certificates"; exit 1; }

# tls_server NAME [pkgstored options]: pkgstored in $T/NAME serving
# $T/NAME/server.pem (the good certificate), v2 pushed over HTTPS and a
# policy offering it to every node. Sets HTTPS_URL and the token files.
tls_server() {
    local name=$1
    shift
    local dir=$T/$name
    mkdir -p "$dir"
    cp "$C/good.pem" "$dir/server.pem"
    cp "$C/good.key" "$dir/server.key"
    start_real_server "$dir" --heartbeat-interval 1 --threads 1 \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" || return 1
    HTTPS_URL=${URL/http:/https:}
    "$B/pkgstore-push" --server "$HTTPS_URL" --cacert "$C/ca1.pem" --token-file "$ADMIN_TOKEN_FILE" \
        --quiet --name otelcol --version 2.0.0 "$T/v2" > /dev/null &&
        "$B/pkgstore-policy" --server "$HTTPS_URL" --cacert "$C/ca1.pem" \
            --token-file "$ADMIN_TOKEN_FILE" set all --package otelcol --version 2.0.0 > /dev/null
}

# reload_cert NAME CERT: serve CERT from now on (SIGHUP), once the log says so
reload_cert() {
    local dir=$T/$1
    cp "$C/$2.pem" "$dir/server.pem"
    cp "$C/$2.key" "$dir/server.key"
    kill -HUP "$(pgrep_server "$dir")"
    wait_until 10 grep -q "msg=\"reloaded the TLS certificate\" .*subject=\"CN=$2\"" "$dir/server.log"
}
# the pkgstored serving DIR's store: the pid start_real_server recorded
pgrep_server() { for pid in "${PIDS[@]}"; do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$B/pkgstored")" ] &&
        tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--store $1/store " && echo "$pid"
done; }

# tls_node NAME URL CA: a node whose agent talks to URL, trusting CA
tls_node() {
    local dir=$T/$1
    TOKEN_FILE=$3 new_node "$dir" "$2" 2
    # new_node names a token file with TOKEN_FILE; the CA goes beside it
    sed -i "s|^  token_file: .*|  token_file: $AGENT_TOKEN_FILE\n  ca_file: $C/$3.pem|" "$dir/agent.yaml"
}

make_variant v2 "$T/v2" tls-v2

# --- the working case: an HTTPS upgrade end to end
tls_server main || { echo "Bail out! pkgstored over HTTPS did not start"; exit 1; }
MAIN_URL=$HTTPS_URL
tls_node good "$MAIN_URL" ca1
"$B/pkgstore-agent" --config "$T/good/agent.yaml" --check-config > "$T/good/check" 2>&1
check "--check-config accepts server.ca_file with an https:// url" grep -q ': OK' "$T/good/check"
start_agent "$T/good"
check "over HTTPS: the node Upgraded to 2.0.0, healthy" \
    bash -c 'wait_until 30 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$T/good"
check "the download went over HTTPS" \
    grep -q "msg=\"download finished\" url=https://127.0.0.1:.*status=200" "$T/good/agent.log"
history_ok() {
    curl -fsS --cacert "$C/ca1.pem" -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" \
        "$MAIN_URL/v1/agents/good" | jq -r '[.history[].status] | join(" ")' |
        grep -q "Downloading Verifying Validating Swapping Monitoring Upgraded"
}
check "pkgstored saw the six steps over HTTPS" wait_until 10 history_ok

# --- failures: each agent logs why at every heartbeat; its collector stays v1
# failed_twice DIR PATTERN: the agent logged the heartbeat failure twice
failed_twice() { [ "$(grep -c "msg=\"heartbeat failed\" error=\".*$2" "$1/agent.log")" -ge 2 ]; }
export -f failed_twice
still_v1() { # DIR: never offered anything, v1 running and healthy
    [ "$(collector_version "$1")" = 1.0.0 ] && node_healthy "$1" && [ -z "$(state_status "$1")" ] &&
        ! grep -q 'msg="upgrade starting"' "$1/agent.log"
}

# wrong CA: the agent trusts ca2, the server's certificate is ca1's
tls_node wrongca "$MAIN_URL" ca2
start_agent "$T/wrongca"
check "wrong CA: 'server certificate not trusted', at every heartbeat" \
    wait_until 30 failed_twice "$T/wrongca" "server certificate not trusted: .*(check server.ca_file"
check "wrong CA: the old collector keeps running" still_v1 "$T/wrongca"

# wrong host name: the server's certificate names pkgstore.invalid
tls_server hostsrv || { echo "Bail out! second pkgstored did not start"; exit 1; }
reload_cert hostsrv wronghost
tls_node wronghost "$HTTPS_URL" ca1
start_agent "$T/wronghost"
check "wrong host name: refused, the error names 127.0.0.1" \
    wait_until 30 failed_twice "$T/wronghost" "server certificate not trusted: .*127.0.0.1"
check "wrong host name: the old collector keeps running" still_v1 "$T/wronghost"

# expired certificate
tls_server oldsrv || { echo "Bail out! third pkgstored did not start"; exit 1; }
reload_cert oldsrv expired
tls_node expired "$HTTPS_URL" ca1
start_agent "$T/expired"
check "expired certificate: refused, 'certificate has expired'" \
    wait_until 30 failed_twice "$T/expired" "certificate has expired"
check "expired certificate: the old collector keeps running" still_v1 "$T/expired"

# a plain-HTTP pkgstored behind an https:// url (v2 and a policy on it too)
start_real_server "$T/plainsrv" --heartbeat-interval 1 --threads 1 ||
    { echo "Bail out! plain pkgstored did not start"; exit 1; }
push --name otelcol --version 2.0.0 "$T/v2" > /dev/null
policy set all --package otelcol --version 2.0.0 > /dev/null
tls_node plain "${URL/http:/https:}" ca1
start_agent "$T/plain"
check "plain HTTP behind https://: 'TLS handshake failed', with a hint" \
    wait_until 30 failed_twice "$T/plain" "TLS handshake failed: .*does the server serve HTTPS"
check "plain HTTP behind https://: the old collector keeps running" still_v1 "$T/plain"
check "and the plain server never heard from that node" \
    bash -c '[ "$(admin /v1/agents | jq "[.nodes[] | select(.id == \"plain\")] | length")" = 0 ]'

# --- configuration errors
mkdir -p "$T/cfg"
sed -e "s|^  url: .*|  url: $URL|" "$T/plain/agent.yaml" > "$T/cfg/http.yaml"
"$B/pkgstore-agent" --config "$T/cfg/http.yaml" --check-config > "$T/cfg/out" 2>&1
check "server.ca_file with an http:// url: refused, and said why" \
    grep -q 'server.ca_file is set but server.url is not https://' "$T/cfg/out"
sed -e "s|^  ca_file: .*|  ca_file: $T/cfg/missing.pem|" "$T/good/agent.yaml" > "$T/cfg/missing.yaml"
"$B/pkgstore-agent" --config "$T/cfg/missing.yaml" --check-config > "$T/cfg/out" 2>&1
check "a server.ca_file that cannot be read: refused, named" \
    grep -q "server.ca_file: $T/cfg/missing.pem: cannot read" "$T/cfg/out"
printf 'server:\n  url: https://127.0.0.1:1\n  tls_verify: false\n' > "$T/cfg/off.yaml"
"$B/pkgstore-agent" --config "$T/cfg/off.yaml" --check-config > "$T/cfg/out" 2>&1
check "no key turns verification off (an unknown key is an error)" grep -q 'tls_verify' "$T/cfg/out"

[ "$FAILED" = 0 ] || for n in good wrongca wronghost expired plain; do diag "== $n"; dump "$T/$n/agent.log"; done
