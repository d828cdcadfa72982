#!/bin/bash
# pkgstore-agent with trust.root against the real pkgstored: a version
# signed by one key of two is refused, one signed by both is installed, a
# revocation and a root rotation PUT by the admin reach the agent and are
# verified there. The attacks against the real server (a compromised
# registry: its store tampered with, or a proxy in front of it) are
# agent_trust_attacks.t; agent_trust.t runs them against fake-pkgstored.
. "$(dirname "$0")/lib/agent.sh"
echo "1..7"

K=$T/keys; mkdir -p "$K"
for k in a b x; do "$B/pkgstore-key" generate -o "$K/$k" > /dev/null; done
"$B/pkgstore-key" root create --version 1 --threshold 2 --key "$K/a.pub" --key "$K/b.pub" \
    --sign "$K/a.key" --sign "$K/b.key" -o "$K/root.json" > /dev/null
real_server
put() { curl -fsS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$2" "$URL$1"; }
check "the admin PUTs root 1" bash -c 'put() { curl -fsS -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary "@$2" "$URL$1"; }; put /v1/trust/root "$0" | jq -e ".version == 1" > /dev/null' "$K/root.json"
real_node 1
printf 'trust:\n  root: %s\n' "$K/root.json" >> "$d/agent.yaml"
make_variant v2 "$T/v2" real-v2; make_variant v2 "$T/v3" real-v3
push --name otelcol --version 2.0.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$T/v2" > /dev/null
push --name otelcol --version 3.0.0 --sign-key "$K/a.key" "$T/v3" > /dev/null
start_agent "$d"; wait_until 10 node_healthy "$d"
policy set p --package otelcol --version 3.0.0 > /dev/null
check "one key of two: refused before download, old collector running" \
    bash -c 'wait_until 20 bash -c "[[ \"\$(state_message \"$0\")\" == *\"3.0.0: 1 valid signature, 2 required\"* ]]" && [ "$(collector_version "$0")" = 1.0.0 ] && node_healthy "$0" && ! grep -q "msg=\"downloaded\"" "$0/agent.log"' "$d"
policy set p --package otelcol --version 2.0.0 > /dev/null
check "signed by both keys: Upgraded" bash -c 'wait_until 20 status_is "$0" Upgraded && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ]' "$d" "$T/v2"
"$B/pkgstore-sign" --revoke --key "$K/a.key" --key "$K/b.key" --reason "bad" --output "$T/rev.json" otelcol 2.0.0 > /dev/null
put /v1/trust/revocations "$T/rev.json" > /dev/null
check "a revocation reaches the agent, verified" wait_until 20 grep -q 'msg="revocations" generation=1 revoked=1' "$d/agent.log"
make_variant v2 "$T/v15" real-v15
push --name otelcol --version 1.5.0 --sign-key "$K/a.key" --sign-key "$K/b.key" "$T/v15" > /dev/null
policy set p --package otelcol --version 1.5.0 > /dev/null
check "2.0.0 revoked: the downgrade to a signed 1.5.0 is installed" \
    bash -c 'wait_until 20 bash -c "[ \"\$(sv \"$0\")\" = Upgraded1.5.0 ]" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$1")" ]' "$d" "$T/v15"
"$B/pkgstore-key" root create --version 2 --threshold 2 --key "$K/b.pub" --key "$K/x.pub" \
    --sign "$K/a.key" --sign "$K/b.key" --sign "$K/x.key" -o "$K/root2.json" > /dev/null
put /v1/trust/root "$K/root2.json" > /dev/null
check "a root rotation PUT by the admin is adopted" \
    bash -c 'wait_until 20 grep -q "msg=\"root rotated\" version=2" "$0/agent.log" && cmp -s "$1" "$0/state/trust/root.json"' "$d" "$K/root2.json"
check "the pinned root is untouched" bash -c 'jq -e ".signed.version == 1" "$0" > /dev/null' "$K/root.json"
