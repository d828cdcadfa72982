#!/bin/bash
# pkgstore-agent upgrades against a scripted server: the six steps in
# order, and every failure variant of the fake collector ending in
# UpgradeFailed (before the swap) or RolledBack (after it) with the old
# collector healthy again within the monitor window + 5 s.
. "$(dirname "$0")/lib/agent.sh"
echo "1..34"
W=2   # monitor window (s)

# One scripted server per node so that each node gets its own offer.
node_with_offer() { # NAME VARIANT [extra agent collector: yaml] [extra collector config]
    local dir=$T/$1
    mkdir -p "$dir"
    start_fake_server "$dir" || return 1
    new_node "$dir" "$FAKE_URL" "$W" "${3:-}"
    [ -z "${4:-}" ] || printf '%s\n' "$4" >> "$dir/collector.yaml"
    make_variant "$2" "$dir/new-binary" "$1-$2"
    start_agent "$dir"
    wait_until 10 node_healthy "$dir" || { diag "$1: v1 never healthy"; return 1; }
    set_offers "$dir" "$(offer_json "$dir" "$dir/new-binary" otelcol 2.0.0)"
    date +%s > "$dir/offered_at"
}
rolled_back_and_healthy() { # DIR
    status_is "$1" RolledBack && node_healthy "$1" && [ "$(sha "$1/bin/otelcol")" = "$(sha "$1/v1-digest-ref")" ]
}

for n in happy validate crash_start crash_after never_healthy no_bind ign slow_validate; do
    mkdir -p "$T/$n"
done
node_with_offer happy v2
node_with_offer validate validate-fails
node_with_offer crash_start crashes-at-start
node_with_offer crash_after crashes-after
node_with_offer never_healthy never-healthy
node_with_offer no_bind no-bind
node_with_offer ign ignores-sigterm
node_with_offer slow_validate v2 "  validate_timeout_s: 1" "validate_sleep_s: 5"
for n in happy validate crash_start crash_after never_healthy no_bind ign slow_validate; do
    cp "$B/fake-otelcol-v1" "$T/$n/v1-digest-ref"; printf '\n#pkgstore-test %s\n' "$T/$n-v1" >> "$T/$n/v1-digest-ref"
done

# --- happy path
check "happy: Upgraded" wait_until $((W + 10)) status_is "$T/happy" Upgraded
check "happy: the six steps reported in order" \
    wait_until 5 bash -c '[[ "$(reported_statuses "$0/heartbeats.jsonl")" == *"Downloading Verifying Validating Swapping Monitoring Upgraded "* ]]' "$T/happy"
check "happy: new version live and healthy" bash -c '[ "$("$0/bin/otelcol" --version | awk "{print \$3}")" = 2.0.0 ] && curl -fs -o /dev/null "http://127.0.0.1:$(cat "$0/health_port")/"' "$T/happy"
check "happy: previous binary kept as .bak" test "$(sha "$T/happy/bin/otelcol.bak")" = "$(sha "$T/happy/v1-digest-ref")"
check "happy: heartbeat reports version and digest" wait_until 5 bash -c 'tail -1 "$0/heartbeats.jsonl" | jq -e ".packages[0].version == \"2.0.0\" and .packages[0].state == \"Running\" and (.packages[0].digest | startswith(\"sha256:\"))" > /dev/null' "$T/happy"
check "happy: journal has no upgrade in progress" bash -c '! jq -e .upgrade "$0/state/state.json" > /dev/null' "$T/happy"

# --- validate fails: before the swap
check "validate-fails: UpgradeFailed" wait_until 10 status_is "$T/validate" UpgradeFailed
check "validate-fails: message quotes the validator's output" bash -c '[[ "$(state_message "$0")" == *"validate: exit 1"*"unknown type"* ]]' "$T/validate"
check "validate-fails: never swapped, old binary live" bash -c '[ "$(sha "$0/bin/otelcol")" = "$(sha "$0/v1-digest-ref")" ] && ! grep -q Swapping "$0/heartbeats.jsonl"' "$T/validate"
check "validate-fails: old collector still healthy" node_healthy "$T/validate"

check "slow validate: UpgradeFailed on the timeout" bash -c 'wait_until 15 status_is "$0" UpgradeFailed && [[ "$(state_message "$0")" == *"validate: timed out after 1.0 s"* ]]' "$T/slow_validate"

# --- after the swap: rolled back, old collector healthy within window + 5 s
for n in crash_start crash_after never_healthy no_bind; do
    t0=$(cat "$T/$n/offered_at")
    if wait_until $((W + 15)) rolled_back_and_healthy "$T/$n"; then
        ok "$n: RolledBack, v1 live and healthy (after $(( $(date +%s) - t0 )) s)"
    else
        nok "$n: RolledBack, v1 live and healthy"; dump "$T/$n/agent.log"
    fi
done
check "crash_start: message says the process exited" bash -c '[[ "$(state_message "$0")" == *"monitor: process exit 1"*"restored the previous binary"* ]]' "$T/crash_start"
check "never_healthy: message names the health check" bash -c '[[ "$(state_message "$0")" == *"health http://127.0.0.1:"*"status 503"* ]]' "$T/never_healthy"
check "no_bind: message names the port" bash -c '[[ "$(state_message "$0")" == *"port $(cat "$0/port") not bound"* ]]' "$T/no_bind"
# The order of events in the agent's log: swapped, the new collector
# started, the old one started again, rolled back (how fast is
# bench/agent.sh's business).
for n in crash_start crash_after never_healthy no_bind; do
    check "$n: after Swapping, the new and then the old collector started, and RolledBack" bash -c '
        s=$(grep -n -m1 "status=Swapping" "$0/agent.log" | cut -d: -f1)
        r=$(grep -n -m1 "status=RolledBack" "$0/agent.log" | cut -d: -f1)
        [ -n "$s" ] && [ -n "$r" ] && [ "$s" -lt "$r" ] &&
            [ "$(sed -n "${s},${r}p" "$0/agent.log" | grep -c "msg=\"child started\" name=collector:otelcol")" -ge 2 ]' "$T/$n"
done
check "rolled-back statuses reported in order" wait_until 5 bash -c '[[ "$(reported_statuses "$0/heartbeats.jsonl")" == *"Swapping Monitoring RolledBack "* ]]' "$T/crash_start"

# --- bad digests are remembered: no second attempt while the offer stands
# (6 more heartbeats, each carrying the same offer, are the events to wait for)
hb=$(wc -l < "$T/crash_start/heartbeats.jsonl")
wait_until 30 bash -c '[ "$(wc -l < "$0")" -ge $(( $1 + 6 )) ]' "$T/crash_start/heartbeats.jsonl" "$hb"
check "bad digest not retried over 6 more heartbeats" \
    bash -c '[ "$(wc -l < "$0")" -ge $(( $1 + 6 )) ] && [ "$(grep -o "\"status\":\"Downloading\"" "$0" | wc -l)" = 1 ]' "$T/crash_start/heartbeats.jsonl" "$hb"
check "bad digest kept in the journal, with its reason" bash -c 'jq -e --arg d "sha256:$(sha "$0/new-binary")" ".bad[] | select(.digest == \$d and (.reason | test(\"monitor: process exit 1\")))" "$0/state/state.json" > /dev/null' "$T/crash_start"
# a new offer is tried
make_variant v2 "$T/crash_start/v2" crash_start-v2
set_offers "$T/crash_start" "$(offer_json "$T/crash_start" "$T/crash_start/v2" otelcol 2.0.1)"
check "a changed offer is tried again and succeeds" wait_until $((W + 10)) status_is "$T/crash_start" Upgraded

# --- a collector ignoring SIGTERM: the swap kills it after stop_timeout
check "ignores-sigterm: Upgraded (it is healthy)" wait_until $((W + 10)) status_is "$T/ign" Upgraded
make_variant v2 "$T/ign/v2" ign-v2
set_offers "$T/ign" "$(offer_json "$T/ign" "$T/ign/v2" otelcol 2.0.1)"
check "ignores-sigterm: next upgrade SIGKILLs it and succeeds" bash -c 'wait_until $(($1 + 12)) bash -c "[ \"\$(jq -r \".packages[0].status + .packages[0].version\" \"$0/state/state.json\")\" = Upgraded2.0.1 ]" && grep -q "ignored the stop signal, killing" "$0/agent.log"' "$T/ign" "$W"

# --- malformed offers are ignored, never acted on
set_offers "$T/happy" '{"name":"otelcol","type":"primary","version":"9.0.0","digest":"sha256:nothex","size":1,"url":"/x"}'
check "malformed offer ignored with a warning" wait_until 5 grep -q 'ignoring part of the heartbeat reply.*offers\[0\]: otelcol: digest: not a sha256 digest' "$T/happy/agent.log"
check "still Upgraded and healthy after it" bash -c 'status_is "$0" Upgraded && node_healthy "$0"' "$T/happy"
# a version goes into the journal, logs and reports: it must be a SemVer
set_offers "$T/happy" "$(offer_json "$T/happy" "$T/happy/new-binary" otelcol '../../etc/x')" \
    '{"name":"otelcol","type":"primary","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"url":"/x"}'
check "an offer whose version is not a SemVer, or missing, is refused by name" \
    wait_until 5 bash -c 'grep -q "offers\[0\]: otelcol: version: not a SemVer" "$0" && grep -q "offers\[1\]: otelcol: version: missing" "$0"' "$T/happy/agent.log"
# --- the journal cannot be written: never swap what a restart could not roll back
d=$T/nojournal; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
mkdir -p "$d/state/state.json.tmp/blocked"   # every atomic write of state.json fails
make_variant v2 "$d/v2" nojournal-v2
v1=$(sha "$d/bin/otelcol")
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
check "nojournal: UpgradeFailed before the swap" wait_until 10 grep -q '"status":"UpgradeFailed","message":"swap: [^"]*state.json cannot be written' "$d/heartbeats.jsonl"
check "nojournal: the old binary stays live and healthy" bash -c '[ "$(sha "$0/bin/otelcol")" = "$1" ] && ! grep -q Monitoring "$0/heartbeats.jsonl" && node_healthy "$0"' "$d" "$v1"

# --- a port held by an IPv6 socket counts: /proc/net/tcp6 is read too.
# The socket is bound to ::ffff:127.0.0.1, so it is in tcp6 only and on
# loopback only.
d=$T/tcp6; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" $W
p6=$(free_port)
perl -MIO::Socket::IP -e '
    my $s = IO::Socket::IP->new(Listen => 1, LocalHost => "::ffff:127.0.0.1", LocalPort => $ARGV[0],
                                ReuseAddr => 1) or die "listen: $@";
    sleep 600' "$p6" &
PIDS+=($!)
sed -i "s/^  ports: \[\(.*\)\]$/  ports: [\1, $p6]/" "$d/agent.yaml"
make_variant v2 "$d/v2" tcp6-v2
start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
check "tcp6: a port listening only in /proc/net/tcp6 is bound (Upgraded)" \
    bash -c 'grep -qi ":$(printf %04X "$1") .* 0A " /proc/net/tcp6 && ! grep -qi ":$(printf %04X "$1") .* 0A " /proc/net/tcp && grep -q "ports: \[.*$1\]" "$0/agent.yaml" && wait_until $(($2 + 10)) status_is "$0" Upgraded' "$d" "$p6" "$W"

[ "$FAILED" = 0 ] || for n in happy validate slow_validate ign nojournal tcp6; do diag "== $n"; dump "$T/$n/agent.log"; done
