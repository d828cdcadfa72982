#!/bin/bash
# Issue 11 finding 4, against the real pkgstored: a policy flapping between
# two crashing versions once per heartbeat costs one attempt per version,
# not a retry storm: bad digests are remembered (a bounded set, with their
# reasons) whatever the offers do, and tried again only when the policy's
# retry generation is raised (pkgstore-policy retry). upgrade_limit caps
# the attempts a node makes in a window.
. "$(dirname "$0")/lib/agent.sh"
echo "1..11"
real_server
export RETRY_INITIAL=1
for v in 3 4 5; do
    make_variant crashes-at-start "$T/crash-$v" "flap-$v"
    push --name otelcol --version "$v.0.0" "$T/crash-$v" > /dev/null
done
d=$T/flappy; mkdir -p "$d"
LABELS='role: flappy' new_node "$d" "$URL" 1
policy set flap --selector role=flappy --package otelcol --version 3.0.0 > /dev/null
start_agent "$d"
wait_until 30 bash -c '[ "$(starts "$0")" -ge 1 ] && [ "$(journal_of "$0" otelcol status)" = RolledBack ]' "$d"
# flip the policy on every heartbeat the server answers, 12 times
for i in $(seq 12); do
    wait_heartbeats 1 20
    policy set flap --selector role=flappy --package otelcol --version "$(( i % 2 ? 4 : 3 )).0.0" > /dev/null
done
wait_heartbeats 6 30
collector_starts=$(log_count "$d" 'msg="child started" name=collector:otelcol')
diag "upgrades started: $(starts "$d"); collector starts: $collector_starts"
check "one attempt per bad version, not a storm ($(starts "$d") upgrades started)" test "$(starts "$d")" = 2
check "the collector started 5 times at most (v1, then each attempt's new and old)" test "$collector_starts" -le 5
check "both digests remembered as bad, each with its reason and retry generation 0" \
    bash -c 'for v in 3 4; do jq -e --arg d "sha256:$(sha "$0/crash-$v")" ".bad[] | select(.digest == \$d and .retry == 0 and (.reason | test(\"monitor: process exit 1\")))" "$1/state/state.json" > /dev/null || exit 1; done' "$T" "$d"
check "v1 runs, healthy" bash -c 'node_healthy "$0" && [ "$(collector_version "$0")" = 1.0.0 ]' "$d"

# The operator asks for a retry: the version of the policy now is tried
# once more, and remembered as bad under the new generation.
current=$(policy --json show flap | jq -r .version)
policy retry flap > /dev/null
check "after pkgstore-policy retry, the policy's version is tried once more" \
    wait_until 30 bash -c '[ "$(starts "$0")" = 3 ] && [ "$(journal_of "$0" otelcol status)" = RolledBack ]' "$d"
wait_heartbeats 6 30
check "and only once ($(starts "$d") upgrades started)" test "$(starts "$d")" = 3
check "it is bad again under retry generation 1" \
    bash -c 'jq -e --arg d "sha256:$(sha "$0/crash-${1%%.*}")" ".bad[] | select(.digest == \$d and .retry == 1)" "$2/state/state.json" > /dev/null' "$T" "$current" "$d"
check "the server shows the retry generation" test "$(policy --json show flap | jq .retry)" = 1

# upgrade_limit: at most 2 attempts in an hour, whatever is offered
l=$T/limited; mkdir -p "$l"
LABELS='role: limited' LIMIT_ATTEMPTS=2 LIMIT_WINDOW=3600 new_node "$l" "$URL" 1
policy set lim --selector role=limited --package otelcol --version 3.0.0 > /dev/null
start_agent "$l"
for v in 4 5; do
    wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)" = RolledBack ] || grep -q rate-limited "$0/agent.log"' "$l"
    policy set lim --selector role=limited --package otelcol --version "$v.0.0" > /dev/null
    wait_heartbeats 3 30
done
check "the third version is not tried: rate-limited, logged" \
    wait_until 20 grep -q 'msg="upgrade attempts rate-limited" package=otelcol.*limit=2 window_s=3600' "$l/agent.log"
check "two attempts in all ($(starts "$l"))" test "$(starts "$l")" = 2
check "the server's history says why" \
    wait_until 10 bash -c 'admin /v1/agents/limited | jq -e "[.history[] | select(.status == \"UpgradeFailed\" and (.message | test(\"rate-limited: 2 upgrade attempts within 3600 s\")))] | length == 1" > /dev/null'
[ "$FAILED" = 0 ] || { dump "$d/agent.log"; dump "$l/agent.log"; }
