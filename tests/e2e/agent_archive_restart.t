#!/bin/bash
# An archive package (tar+gzip with bin/otelcol inside) survives an agent
# restart: the running digest of a package is the offer's (the archive's)
# digest, not the digest of the extracted executable, so a restarted agent
# neither re-upgrades nor reports another digest to the fleet view.
. "$(dirname "$0")/lib/agent.sh"
echo "1..10"
W=2   # monitor window (s)
export HB_INTERVAL=0.5 RETRY_INITIAL=1
real_server
# the node in the fleet view: "version digest state"
fleet_pkg() { admin "/v1/agents/$1" | jq -r '.packages[] | select(.type == "primary") | "\(.version) \(.digest) \(.state)"'; }
upgrades_started() { grep -c 'msg="upgrade starting"' "$1/agent.log"; }
export -f fleet_pkg

d=$T/arnode; mkdir -p "$d/pkg/bin"
new_node "$d" "$URL" $W
make_variant v2 "$d/pkg/bin/otelcol" archive-restart-v2
printf 'docs\n' > "$d/pkg/README"
tar -C "$d/pkg" -czf "$d/otelcol-2.0.0.tar.gz" bin/otelcol README
archive="sha256:$(sha "$d/otelcol-2.0.0.tar.gz")"
entry=$(sha "$d/pkg/bin/otelcol")
push --name otelcol --version 2.0.0 --format tar+gzip --entrypoint bin/otelcol "$d/otelcol-2.0.0.tar.gz" > "$d/push.json"
# expects: the archive is a package whose artifact digest is the tarball's
check "v2 pushed as a tar+gzip package" bash -c 'grep -q "$1" "$0"' "$d/push.json" "${archive#sha256:}"
policy set everyone --package otelcol --version 2.0.0 --priority 1 > /dev/null
start_agent "$d"
# expects: the archive offer is upgraded to, its entrypoint installed
check "Upgraded to the archive's 2.0.0" bash -c 'wait_until 20 bash -c "[ \"\$(jq -r \".packages[0].status + .packages[0].version\" \"$0/state/state.json\")\" = Upgraded2.0.0 ]" && [ "$(sha "$0/bin/otelcol")" = "$1" ] && wait_until 5 node_healthy "$0"' "$d" "$entry"
# expects: before any restart, the agent reports the archive's digest
check "fleet view before the restart: 2.0.0 with the archive's digest" \
    wait_until 5 bash -c '[ "$(fleet_pkg arnode)" = "2.0.0 $0 Running" ]' "$archive"
before=$(upgrades_started "$d")
diag "upgrades started before the restart: $before"

stop_agent "$d"
hb0=$(heartbeats)
start_agent "$d"
# Watch the fleet view and the journal for at least 4 s and 8 heartbeats
# (0.5 s apart) of the restarted agent.
: > "$d/seen"
t0=$SECONDS; end=$((SECONDS + 15))
while [ $SECONDS -le $end ]; do
    fleet_pkg arnode >> "$d/seen" 2>/dev/null
    jq -r '.packages[] | select(.type == "primary") | "\(.status) \(.version) \(.digest)"' "$d/state/state.json" >> "$d/seen-state" 2>/dev/null
    [ "$(( $(heartbeats) - hb0 ))" -ge 8 ] && [ $((SECONDS - t0)) -ge 4 ] && break
    sleep 0.2
done
hbs=$(( $(heartbeats) - hb0 ))
diag "heartbeats after the restart: $hbs"
# expects: the restarted agent heartbeats normally
check "restarted agent heartbeated at least 8 times" test "$hbs" -ge 8
# expects: the running digest is the archive's: no new upgrade after the restart
check "no new \"upgrade starting\" after the restart" test "$(upgrades_started "$d")" = "$before"
# expects: the journal keeps Upgraded 2.0.0 with the archive's digest,
# in every state observed after the restart
check "journal stays Upgraded 2.0.0 with the archive's digest" \
    bash -c '[ -s "$0" ] && [ "$(sort -u "$0")" = "Upgraded 2.0.0 $1" ]' "$d/seen-state" "$archive"
# expects: the fleet view shows only 2.0.0 + the archive's digest,
# never the extracted executable's digest nor a missing version
check "fleet view after the restart: always 2.0.0 with the archive's digest" \
    bash -c '[ -s "$0" ] && [ "$(sort -u "$0")" = "2.0.0 $1 Running" ]' "$d/seen" "$archive"
check "the extracted executable's digest is never reported" \
    bash -c '! grep -q "sha256:$1" "$0"' "$d/seen" "$entry"
# expects: the server saw no second download/upgrade of the package
check "server history: one Downloading, one Upgraded" \
    bash -c '[ "$(admin /v1/agents/arnode | jq -r "[.history[].status | select(. == \"Downloading\" or . == \"Upgraded\")] | join(\" \")")" = "Downloading Upgraded" ]'
# expects: the live binary is still the archive's entrypoint, healthy
check "collector still runs the archive's entrypoint, healthy" \
    bash -c '[ "$(sha "$0/bin/otelcol")" = "$1" ] && p=$(cat "$0/state/run/primary-otelcol.pid") && [ "$(sha256sum /proc/$p/exe | cut -d" " -f1)" = "$1" ] && node_healthy "$0"' "$d" "$entry"
[ "$FAILED" = 0 ] || { diag "seen: $(sort "$d/seen" | uniq -c | tr '\n' ';')"; dump "$d/agent.log"; }
