#!/bin/bash
# Crash safety: SIGKILL the agent at random moments, AGENT_KILLS times
# (default 60), each time with a new version offered so that the kills land
# in every step of an upgrade. After every kill the live executable must be
# complete (its digest is one of the published binaries) and executable;
# after the last restart the agent must converge to a healthy collector
# running the last offer, with nothing left beside it. The long run
# (AGENT_KILLS=1000) is R2 of issue 11; its figures go to the closing note.
. "$(dirname "$0")/lib/agent.sh"
KILLS=${AGENT_KILLS:-60}
echo "1..7"
export HB_INTERVAL=0.2 RETRY_INITIAL=0.2 RETRY_MAX=0.5 LIMIT_ATTEMPTS=10000 LIMIT_WINDOW=1
d=$T/node; mkdir -p "$d"
start_fake_server "$d"
new_node "$d" "$FAKE_URL" 0.5
sha "$d/bin/otelcol" > "$d/known"
RANDOM=$$
bad=0; missing=0
upgrades_started() { cat "$d/agent.log" 2>/dev/null | grep -c 'msg="upgrade starting"'; }
for i in $(seq "$KILLS"); do
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
    # a long run stays small: the previous round's blob is offered no more
    [ "$i" -gt 1 ] && rm -f "$d/blobs/$(sha "$d/round-$((i - 1))")"
done
diag "kills by step: $(sort "$d/kill-steps" | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
upgrades=$(upgrades_started)
diag "kills: $KILLS; unsafe states: $((missing + bad)) (missing $missing, partial or unknown $bad); upgrades started: $upgrades"
check "the executable was never missing ($KILLS kills)" test "$missing" = 0
check "the executable was always a complete published binary" test "$bad" = 0
check "kills landed in upgrades: at least $((KILLS / 2)) started ($upgrades)" test "$upgrades" -ge $((KILLS / 2))
check "kills landed after the swap too (Swapping/Monitoring)" grep -qE 'Swapping|Monitoring' "$d/kill-steps"

t0=$SECONDS
start_agent "$d"
check "converges to a healthy collector" wait_until 30 node_healthy "$d"
check "converges to the last offer, Upgraded" bash -c 'wait_until 30 bash -c "[ \"\$(jq -r \".packages[0].status + .packages[0].version\" \"$0/state/state.json\")\" = Upgraded2.0.$1 ]" && [ "$(sha "$0/bin/otelcol")" = "$(sha "$0/round-$1")" ]' "$d" "$KILLS"
diag "converged in $((SECONDS - t0)) s after the last kill"
check "nothing left beside the live binary (no .tmp), nothing in state/tmp" \
    bash -c '[ -z "$(ls "$0/bin" | grep "\.tmp$")" ] && [ -z "$(ls -A "$0/state/tmp")" ]' "$d"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
