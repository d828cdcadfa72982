#!/bin/bash
# Crash safety: SIGKILL the agent at random moments during 50 upgrades.
# After every kill the live executable must be complete (its digest is one
# of the published binaries) and executable; after the last restart the
# agent must converge to a healthy collector running the last offer.
. "$(dirname "$0")/lib/agent.sh"
UPGRADES=${AGENT_CRASH_UPGRADES:-50}   # keep killing until this many upgrades started
echo "1..6"
export HB_INTERVAL=0.2 RETRY_INITIAL=0.2
d=$T/node; mkdir -p "$d"
start_fake_server "$d"
new_node "$d" "$FAKE_URL" 0.5
sed -i 's/^upgrade_retry:.*/upgrade_retry: {initial_s: 0.2, max_s: 0.5}/' "$d/agent.yaml"
sha "$d/bin/otelcol" > "$d/known"
RANDOM=$$
bad=0; missing=0
i=0
upgrades_started() { cat "$d/agent.log" 2>/dev/null | grep -c 'msg="upgrade starting"'; }
while [ "$(upgrades_started)" -lt "$UPGRADES" ] && [ $i -lt $((UPGRADES * 2)) ]; do
    i=$((i + 1))
    make_variant v2 "$d/round-$i" "round-$i"
    sha "$d/round-$i" >> "$d/known"
    set_offers "$d" "$(offer_json "$d" "$d/round-$i" otelcol "2.0.$i")"
    start_agent "$d"
    # kill somewhere in: start-up, heartbeat, download .. monitoring, idle
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", r % 900 / 1000 }')"
    kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
    step=$(jq -r '.upgrade.step // "idle"' "$d/state/state.json" 2>/dev/null)
    echo "${step:-no-journal-yet}" >> "$d/kill-steps"
    if [ ! -e "$d/bin/otelcol" ]; then
        missing=$((missing + 1)); diag "round $i: executable missing (killed during $step)"
    elif [ ! -x "$d/bin/otelcol" ] || ! grep -qx "$(sha "$d/bin/otelcol")" "$d/known"; then
        bad=$((bad + 1)); diag "round $i: executable partial or unknown (killed during $step)"
    fi
done
diag "kills by step: $(sort "$d/kill-steps" | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
ROUNDS=$i
check "the executable was never missing ($ROUNDS kills)" test "$missing" = 0
check "the executable was always a complete published binary" test "$bad" = 0
upgrades=$(upgrades_started)
check "at least $UPGRADES upgrades were started ($upgrades)" test "$upgrades" -ge "$UPGRADES"
check "kills landed after the swap too (Swapping/Monitoring)" grep -qE 'Swapping|Monitoring' "$d/kill-steps"

start_agent "$d"
check "converges to a healthy collector" wait_until 20 node_healthy "$d"
check "converges to the last offer, Upgraded" bash -c 'wait_until 20 bash -c "[ \"\$(jq -r \".packages[0].status + .packages[0].version\" \"$0/state/state.json\")\" = Upgraded2.0.$1 ]" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$0/round-$1")" ]' "$d" "$ROUNDS"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
