#!/bin/bash
# Mutual TLS (pkgstored --tls-client-ca, the agent's server.client_cert and
# server.client_key): a client certificate whose CN is a node id, chained
# to the client CA, speaks for that node with the newest credential issued
# for it, so the credential's pinned labels and its revocation apply as for
# its token. A certificate of another CA, an expired one, one for a node
# without a credential, or one used for another node is refused with the
# reason; a real agent with a certificate and no token upgrades end to end.
# Certificates are made here by the openssl command line.
. "$(dirname "$0")/lib/agent.sh"
. "$(dirname "$0")/lib/tls.sh"
echo "1..18"

C=$T/certs
mkdir -p "$C"
tls_ca "$C" ca1 && tls_ca "$C" ca2 &&
    tls_cert "$C" ca1 server IP:127.0.0.1 &&
    tls_client_cert "$C" ca1 edge-1 &&
    tls_client_cert "$C" ca1 edge-2 &&
    tls_client_cert "$C" ca2 edge-3 &&
    tls_client_cert "$C" ca1 edge-4 expired ||
    { echo "Bail out! openssl could not make the test certificates"; exit 1; }
chmod 600 "$C"/*.key

# --- start-up checks
out=$("$B/pkgstored" --store "$T/x" --listen 127.0.0.1:0 --tls-client-ca "$C/ca1.pem" 2>&1); rc=$?
check "--tls-client-ca without --tls-cert: a usage error that says why" \
    bash -c '[ "$0" = 2 ] && [[ "$1" == *"--tls-client-ca: needs --tls-cert"* ]]' "$rc" "$out"
echo "not a certificate" > "$T/bad-ca.pem"
out=$("$B/pkgstored" --store "$T/x" --listen 127.0.0.1:0 --tls-cert "$C/server.pem" \
    --tls-key "$C/server.key" --tls-client-ca "$T/bad-ca.pem" 2>&1); rc=$?
check "a client CA file without a certificate: refused at start, naming the file" \
    bash -c '[ "$0" = 1 ] && [[ "$1" == *"--tls-client-ca: "*"bad-ca.pem: no PEM CA certificate"* ]]' "$rc" "$out"

S=$T/server
cp "$C/ca1.pem" "$T/client-ca.pem"
start_real_server "$S" --heartbeat-interval 1 --tls-cert "$C/server.pem" --tls-key "$C/server.key" \
    --tls-client-ca "$T/client-ca.pem" || { echo "Bail out! pkgstored did not start"; exit 1; }
H=${URL/http:/https:}
# as NODE-CERT BODY-NODE [curl args]: a heartbeat over mutual TLS, no
# token; prints the HTTP status, the body in $T/body
as() {
    local cert=$1 node=$2; shift 2
    curl -sS -o "$T/body" -w '%{http_code}' --cacert "$C/ca1.pem" --cert "$C/$cert.pem" \
        --key "$C/$cert.key" "$@" "$H/v1/agents/heartbeat" \
        -d "{\"node_id\":\"$node\",\"platform\":\"linux/amd64\",\"labels\":{\"ring\":\"prod\"},\"packages\":[]}"
}
message() { jq -r '.error.message // empty' "$T/body"; }
token() { "$B/pkgstore-token" --server "$H" --cacert "$C/ca1.pem" --token-file "$ADMIN_TOKEN_FILE" "$@"; }
adm() { curl -fsS --cacert "$C/ca1.pem" -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$H$1"; }
refused() { adm /metrics | awk '$1 == "pkgstored_client_certificates_refused_total" { print $2 }'; }
export C H
export -f adm refused

code=$(as edge-1 edge-1)
check "a valid certificate for a node without a credential: 401, saying to issue one" \
    bash -c '[ "$0" = 401 ] && [[ "$1" == *"node edge-1: no credential is issued"*"pkgstore-token issue --node edge-1"* ]]' "$code" "$(message)"
token issue --node edge-1 --label ring=canary > /dev/null 2>&1
code=$(as edge-1 edge-1)
check "after pkgstore-token issue: the certificate alone is accepted (200)" [ "$code" = 200 ]
check "the credential's pinned label wins over the one reported" \
    bash -c '[ "$(adm /v1/agents/edge-1 | jq -r .labels.ring)" = canary ]'
# several credentials for one node issued within a second or two: the
# certificate speaks with the last one issued (created has whole seconds;
# the issue order breaks the tie)
for r in 1 2 3 4 5; do token issue --node edge-2 --label ring=r$r > /dev/null 2>&1; done
code=$(as edge-2 edge-2)
check "of five credentials issued for edge-2 in a row, its certificate speaks with the last (ring=r5)" \
    bash -c '[ "$0" = 200 ] && [ "$(adm /v1/agents/edge-2 | jq -r .labels.ring)" = r5 ]' "$code"
code=$(as edge-3 edge-3)
check "a certificate of another CA: 401, issuer unknown" \
    bash -c '[ "$0" = 401 ] && [[ "$1" == *"client certificate refused: "*"issuer is unknown"* ]]' "$code" "$(message)"
token issue --node edge-4 > /dev/null 2>&1
code=$(as edge-4 edge-4)
check "an expired certificate: 401, expired" \
    bash -c '[ "$0" = 401 ] && [[ "$1" == *"client certificate refused: "*"expired"* ]]' "$code" "$(message)"
code=$(as edge-1 edge-2)
check "edge-1's certificate speaking for edge-2: 403, and edge-2's record is untouched" \
    bash -c '[ "$0" = 403 ] && [[ "$1" == *"speaks for node edge-1 only"* ]] && [ "$(adm /v1/agents/edge-2 | jq -r .labels.ring)" = r5 ]' "$code" "$(message)"
code=$(curl -sS -o "$T/body" -w '%{http_code}' --cacert "$C/ca1.pem" --cert "$C/edge-1.pem" \
    --key "$C/edge-1.key" "$H/v1/policies")
check "a node certificate has a node's rights only (403 on an admin route)" [ "$code" = 403 ]
code=$(curl -sS -o "$T/body" -w '%{http_code}' --cacert "$C/ca1.pem" "$H/v1/agents/heartbeat" -d '{}')
check "no certificate and no token: 401 asking for a token" \
    bash -c '[ "$0" = 401 ] && [[ "$1" == *"missing '"'"'Authorization: Bearer"* ]]' "$code" "$(message)"
check "refused certificates are counted in /metrics" bash -c '[ "$(refused)" -ge 3 ]'

# --- a real agent with a certificate and no token
make_variant v2 "$T/v2" mtls-v2
"$B/pkgstore-push" --server "$H" --cacert "$C/ca1.pem" --token-file "$ADMIN_TOKEN_FILE" --quiet \
    --name otelcol --version 2.0.0 "$T/v2" > /dev/null
"$B/pkgstore-policy" --server "$H" --cacert "$C/ca1.pem" --token-file "$ADMIN_TOKEN_FILE" \
    set canary --selector ring=canary --package otelcol --version 2.0.0 > /dev/null
d=$T/edge-1
new_node "$d" "$H" 2
sed -i "s|^  timeout_s: 5|  timeout_s: 5\n  ca_file: $C/ca1.pem\n  client_cert: $C/edge-1.pem\n  client_key: $C/edge-1.key|" "$d/agent.yaml"
chmod 644 "$C/edge-1.key"
out=$("$B/pkgstore-agent" --check-config --config "$d/agent.yaml" 2>&1); rc=$?
check "the agent refuses a client key others can read, and says how to fix it" \
    bash -c '[ "$0" = 2 ] && [[ "$1" == *"server.client_key: "*"mode 0644"*"chmod 600"* ]]' "$rc" "$out"
chmod 600 "$C/edge-1.key"
! grep -q token_file "$d/agent.yaml" || diag "the node has a token file"
start_agent "$d"
check "over mutual TLS with no token: the node Upgraded to 2.0.0 (its pinned ring selects it)" \
    bash -c 'wait_until 30 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$d"
# the agent's state says Upgraded before its next report tells pkgstored
check "pkgstored recorded the node's statuses under its certificate's name" \
    wait_until 15 bash -c 'adm /v1/agents/edge-1 | jq -r "[.history[].status] | join(\" \")" | grep -q "Downloading Verifying Validating Swapping Monitoring Upgraded"'

# --- revocation shuts the certificate out at once
id=$(token --json ls | jq -r '.credentials[] | select(.node == "edge-1") | .id')
token revoke "$id" > /dev/null
code=$(as edge-1 edge-1)
check "after the credential is revoked, its node's certificate gets 401 at once" \
    bash -c '[ "$0" = 401 ] && [[ "$1" == *"no credential is issued"*"or it was revoked"* ]]' "$code" "$(message)"
check "the agent's heartbeats fail with the reason; the collector keeps running" \
    bash -c 'wait_until 15 grep -q "401.*or it was revoked" "$0/agent.log" && [ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$d"

# --- SIGHUP reloads the client CA: ca2's edge-3 is accepted afterwards
token issue --node edge-3 > /dev/null 2>&1
token issue --node edge-2 > /dev/null 2>&1
c0=$(as edge-2 edge-2)
cp "$C/ca2.pem" "$T/client-ca.pem"
for pid in "${PIDS[@]}"; do
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$B/pkgstored")" ] && kill -HUP "$pid"
done
wait_until 10 grep -q 'msg="reloaded the client CA"' "$S/server.log" || diag "no reload logged"
code=$(as edge-3 edge-3)
c1=$(as edge-2 edge-2)
check "after SIGHUP, the new client CA is the one that counts (edge-3: 200; ca1's edge-2: 200, then 401)" \
    bash -c '[ "$0" = 200 ] && [ "$1" = 200 ] && [ "$2" = 401 ] && [[ "$3" == *"issuer is unknown"* ]]' "$code" "$c0" "$c1" "$(message)"

[ "$FAILED" = 0 ] || dump "$S/server.log" "$d/agent.log"
exit "$FAILED"
