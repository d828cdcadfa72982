#!/usr/bin/env bash
# pkgstore-fleetsim against a real pkgstored (issue 13, section 3): 2,000
# simulated nodes with short intervals, a policy that targets a selector,
# a configured failure mix. Assertions are on correctness only, never on
# timing: the run ends when the fleet is quiet (--until-quiet, an event;
# --duration is only a bound), then every node that matches got the offer
# and ended Upgraded, UpgradeFailed or RolledBack as it was set to, no other
# node was ever offered anything, there was no error response, and the
# server's rollout counts agree with what the nodes did. Then per-node
# credentials (pinned labels, X-Pkgstore-Node), HTTPS with --cacert, and
# the usage errors (another host than 127.0.0.1 is refused).
. "$(dirname "$0")/server_common.sh"
. "$(dirname "$0")/lib/tls.sh"

FLEETSIM=$BIN/pkgstore-fleetsim
NODES=2000
# limits sized for the run, not lifted: 2,000 new ids over a 2 s ramp fit
# in a burst of 4,000 (each per-node credential has its own budget)
start_server --new-nodes-rate 2000/4000 --max-nodes 10000 --log-level warn

head -c 300000 /dev/urandom >"$TMP/v2.bin"
"$BIN/pkgstore-push" --server "$URL" --token-file "$ADMIN_FILE" --name otelcol-contrib \
    --version 2.0.0 --platform any --quiet "$TMP/v2.bin" >/dev/null
ok $? "pushed otelcol-contrib 2.0.0"
DIGEST=sha256:$(sha256 "$TMP/v2.bin")
"$BIN/pkgstore-policy" --server "$URL" --token-file "$ADMIN_FILE" set prod-eu \
    --package otelcol-contrib --version 2.0.0 --selector 'env=prod,region in (eu-west)' >/dev/null
ok $? "policy prod-eu targets env=prod,region in (eu-west)"

"$FLEETSIM" --server "$URL" --token-file "$AGENT_FILE" --nodes $NODES --interval 2 \
    --step-time 0.2 --duration 300 --until-quiet 2 --fail 2.0.0=0.1 --rollback 2.0.0=0.05 \
    --server-pid "$SERVER_PID" --report "$TMP/report.json" --progress 5 \
    --admin-token-file "$ADMIN_FILE" \
    >"$TMP/fleetsim.out" 2>"$TMP/fleetsim.err"
RC=$?
is "$RC" 0 "pkgstore-fleetsim exits 0 (no error response, no transport error)"
[ "$RC" = 0 ] || { sed 's/^/# /' "$TMP/fleetsim.out" "$TMP/fleetsim.err"; }
R=$TMP/report.json
is "$(jq -r .summary.stopped_by "$R")" quiet "the run ended because the fleet was quiet, not at --duration"
is "$(jq -r '.summary.errors, (.summary.error_responses | length)' "$R" | tr '\n' ' ')" "0 0 " \
    "the report counts no error at all"
is "$(jq '[.nodes[] | select(.registered)] | length' "$R")" $NODES "all $NODES nodes registered"
grep -q 'POST /v1/agents/heartbeat' "$TMP/fleetsim.out" && grep -q 'GET /v1/blobs/{digest}' "$TMP/fleetsim.out"
ok $? "the summary has a latency line for the heartbeat and the blob route"
grep -q '^server: rss ' "$TMP/fleetsim.out"
ok $? "the summary reports the server's RSS and CPU: $(grep '^server:' "$TMP/fleetsim.out")"
grep -q 'timeline' "$TMP/fleetsim.out" && [ "$(jq '.timeline | length' "$R")" -gt 0 ]
ok $? "... and the rollout's timeline ($(jq '.timeline | length' "$R") rows)"
grep -q '^t=.*req/s=' "$TMP/fleetsim.err"
ok $? "stderr is not a terminal: the progress is plain lines"

MATCH='(.labels.env == "prod" and .labels.region == "eu-west")'
MATCHED=$(jq "[.nodes[] | select($MATCH)] | length" "$R")
ok $([ "$MATCHED" -gt 300 ] && echo 0 || echo 1) "$MATCHED of $NODES nodes match the selector"
is "$(jq "[.nodes[] | select($MATCH) | select(.first_offer.version == \"2.0.0\" and .first_offer.policy == \"prod-eu\")] | length" "$R")" \
    "$MATCHED" "every matching node got the offer of 2.0.0 from prod-eu"
is "$(jq "[.nodes[] | select($MATCH) | .offers[] | select(.digest != \"$DIGEST\")] | length" "$R")" 0 \
    "... and no other offer"
is "$(jq "[.nodes[] | select($MATCH | not) | select(.offers | length > 0)] | length" "$R")" 0 \
    "no node outside the selector was ever offered anything"
is "$(jq "[.nodes[] | select($MATCH) | select(.final.upgrading or (.final.status | IN(\"Upgraded\",\"UpgradeFailed\",\"RolledBack\") | not))] | length" "$R")" 0 \
    "every matching node ended Upgraded, UpgradeFailed or RolledBack"
is "$(jq "[.nodes[] | select($MATCH) | select(.final.status == \"Upgraded\" and .final.digest != \"$DIGEST\")] | length" "$R")" 0 \
    "... an Upgraded node runs the offered digest"
is "$(jq "[.nodes[] | select($MATCH) | select(.final.status != \"Upgraded\" and .final.version != \"0.0.0\")] | length" "$R")" 0 \
    "... a failed one still runs what it ran before"
UP=$(jq "[.nodes[] | select($MATCH) | select(.final.status == \"Upgraded\")] | length" "$R")
FAILED=$(jq "[.nodes[] | select($MATCH) | select(.final.status == \"UpgradeFailed\")] | length" "$R")
ROLLED=$(jq "[.nodes[] | select($MATCH) | select(.final.status == \"RolledBack\")] | length" "$R")
# --fail 0.1 and --rollback 0.05 of several hundred nodes: the seed makes it
# the same every run; the bounds only say the mix was applied at all
ok $([ "$FAILED" -gt 0 ] && [ "$ROLLED" -gt 0 ] && [ "$FAILED" -lt $((MATCHED / 4)) ] &&
     [ "$ROLLED" -lt $((MATCHED / 6)) ] && echo 0 || echo 1) \
    "the failure mix: $UP Upgraded, $FAILED UpgradeFailed, $ROLLED RolledBack"
req GET "/v1/policies/prod-eu?nodes=0"
is "$(json '.status | "\(.nodes_total) \(.counts.Upgraded) \(.counts.UpgradeFailed) \(.counts.RolledBack) \(.counts.Pending)"')" \
    "$MATCHED $UP $FAILED $ROLLED 0" "the server's rollout counts agree with what the nodes did"
is "$(jq -r '[.timeline[] | select(.policies)] | last | .policies["prod-eu"].status |
            "\(.nodes_total) \(.counts.Upgraded) \(.counts.UpgradeFailed) \(.counts.RolledBack)"' "$R")" \
    "$MATCHED $UP $FAILED $ROLLED" "the timeline's last view of the server (--admin-token-file) holds the same counts"
req GET "/v1/agents?state=UpgradeFailed&policy=prod-eu&limit=1"
is "$(json '.nodes[0].last_status.message')" "validate: simulated failure (fleetsim)" \
    "a failed node's message reached the server"
req GET /metrics
is "$(echo "$BODY" | grep -E '^pkgstored_requests_total\{route="(/v1/agents/heartbeat|/v1/blobs/\{digest\})",code="[45]' | wc -l)" 0 \
    "the server's /metrics counts no 4xx or 5xx on the simulated routes"

# ---- per-node credentials: pinned labels decide, X-Pkgstore-Node is sent
for n in 000000 000001; do
    "$BIN/pkgstore-token" --server "$URL" --token-file "$ADMIN_FILE" issue --node "cred-$n" \
        --label env=prod --label region=eu-west --out "$TMP/cred-$n.token" >/dev/null 2>&1
    printf 'cred-%s %s\n' "$n" "$(cat "$TMP/cred-$n.token")" >>"$TMP/credentials"
done
# labels the nodes report say dev/us-east: the pinned ones must win
"$FLEETSIM" --server "$URL" --credentials "$TMP/credentials" --id-prefix cred- --nodes 2 \
    --label env=dev --label region=us-east --interval 0.5 --step-time 0.1 --duration 120 \
    --until-quiet 2 --quiet --report "$TMP/cred.json" >/dev/null 2>"$TMP/cred.err"
is "$? $(jq -r '[.nodes[].final.status] | join(",")' "$TMP/cred.json")" "0 Upgraded,Upgraded" \
    "two nodes with their own credentials (pinned env=prod, region=eu-west) upgraded"
req GET /v1/agents/cred-000001
is "$(json '"\(.labels.env) \(.labels.region)"')" "prod eu-west" "the server holds their pinned labels"
"$FLEETSIM" --server "$URL" --credentials "$TMP/credentials" --id-prefix cred- --nodes 3 \
    --duration 5 --quiet >/dev/null 2>"$TMP/cred3.err"
is "$?" 3 "a node without a credential and no --token-file: exit 3"
grep -q 'no token for node cred-000002' "$TMP/cred3.err"
ok $? "... naming the node: $(cat "$TMP/cred3.err")"

# a token that speaks for another node: every request refused, counted
printf 'cred-000000 %s\n' "$(cat "$TMP/cred-000001.token")" >"$TMP/swapped"
"$FLEETSIM" --server "$URL" --credentials "$TMP/swapped" --id-prefix cred- --nodes 1 --ramp 0 \
    --interval 0.5 --duration 2 --quiet --json >"$TMP/swapped.json" 2>/dev/null
is "$? $(jq -r '.summary.error_responses | to_entries | map("\(.key)=\(.value > 0)") | join(",")' "$TMP/swapped.json")" \
    "1 403=true" "another node's credential: 403 for each request, counted, exit 1"

# ---- HTTPS with --cacert
C=$TMP/tls
mkdir -p "$C"
tls_ca "$C" ca && tls_cert "$C" ca server IP:127.0.0.1
ok $? "made a CA and a certificate for 127.0.0.1"
stop_server
start_server --new-nodes-rate 2000/4000 --tls-cert "$C/server.pem" --tls-key "$C/server.key" --log-level warn
URL=https://127.0.0.1:$PORT
"$FLEETSIM" --server "$URL" --token-file "$AGENT_FILE" --cacert "$C/ca.pem" --id-prefix tls- \
    --nodes 50 --label env=prod --label region=eu-west --interval 0.5 --step-time 0.1 \
    --duration 120 --until-quiet 2 --quiet --report "$TMP/tls.json" >/dev/null 2>"$TMP/tls.err"
is "$? $(jq -r '[.nodes[].final.status] | unique | join(",")' "$TMP/tls.json")" "0 Upgraded" \
    "over https with --cacert: 50 nodes upgraded"
"$FLEETSIM" --server "$URL" --token-file "$AGENT_FILE" --nodes 1 --ramp 0 --duration 5 --quiet \
    >"$TMP/notrust.out" 2>&1
is "$?" 1 "without --cacert the server's certificate is not trusted (exit 1)"
grep -q 'first transport error: .*certificate' "$TMP/notrust.out"
ok $? "... and the summary says why"

# ---- usage
"$FLEETSIM" --help >"$TMP/help.out" 2>&1
is "$? $(head -1 "$TMP/help.out")" "0 usage: pkgstore-fleetsim --server URL [options]" "--help prints the usage"
"$FLEETSIM" --version >"$TMP/version.out" 2>&1
grep -q '^pkgstore-fleetsim (pkgstore) ' "$TMP/version.out"
ok $? "--version names the program"
for server in http://localhost:$PORT http://10.0.0.1:$PORT "http://127.0.0.1.nip.io:$PORT" \
    "http://[::1]:$PORT"; do
    "$FLEETSIM" --server "$server" --token-file "$AGENT_FILE" --duration 1 >/dev/null 2>"$TMP/usage.err"
    is "$?" 2 "--server $server is refused (127.0.0.1 only)"
done
grep -q 'talks to 127.0.0.1 only' "$TMP/usage.err"
ok $? "... with a message that says so"
"$FLEETSIM" --server "$URL" --nodes 1000001 >/dev/null 2>&1
is "$?" 2 "--nodes past the hard maximum is a usage error"
"$FLEETSIM" --server "$URL" --fail 2.0.0=0.8 --rollback 2.0.0=0.3 >/dev/null 2>&1
is "$?" 2 "failure chances that add up to more than 1 are a usage error"
finish
