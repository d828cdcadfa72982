#!/bin/bash
# Issue 11 finding 2, against the real pkgstored: a validation running when
# the agent is SIGKILLed dies with it (PR_SET_PDEATHSIG) and carries the
# agent's child marker, and it runs a verified copy of the download that no
# later download writes to: the restarted agent downloads again and
# upgrades, with no "Text file busy".
. "$(dirname "$0")/lib/agent.sh"
echo "1..7"
real_server
export RETRY_INITIAL=1
real_node 1 "  validate_timeout_s: 120"
echo "validate_sleep_s: 60" >> "$d/collector.yaml"   # validation hangs for a minute
make_variant v2 "$d/v2" leftovers-v2
push --name otelcol --version 2.0.0 "$d/v2" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null

# the validation's pids: "... --config <collector.yaml> validate" (read by
# builtins, so that no pipeline of ours matches itself)
validate_pids() {
    local p args
    for p in /proc/[0-9]*; do
        args=()
        mapfile -d '' args 2>/dev/null < "$p/cmdline"
        [[ "${args[*]}" == *"--config $1/collector.yaml validate"* ]] && echo "${p#/proc/}"
    done
}
export -f validate_pids
start_agent "$d"
wait_until 30 bash -c '[ "$(jq -r ".upgrade.step // empty" "$0/state/state.json" 2>/dev/null)" = Validating ] && [ -n "$(validate_pids "$0")" ]' "$d"
vpid=$(validate_pids "$d" | head -1)
exe=$(tr '\0' '\n' < "/proc/$vpid/cmdline" 2>/dev/null | head -1)
marker=$(tr '\0' '\n' < "/proc/$vpid/environ" 2>/dev/null | grep '^PKGSTORE_AGENT_CHILD=')
diag "validation pid $vpid runs $exe"
check "the validation runs a verified copy (tmp/<hex>.ready), not the download's .part" \
    bash -c '[[ "$0" == "$1/state/tmp/"*.ready ]]' "$exe" "$d"
check "the validation carries the agent's child marker" test "$marker" = "PKGSTORE_AGENT_CHILD=$d/state/validate"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "the validation dies with the SIGKILLed agent" \
    wait_until 10 bash -c '! kill -0 "$0" 2>/dev/null && [ -z "$(validate_pids "$1")" ]' "$vpid" "$d"
[ -n "$vpid" ] && kill -0 "$vpid" 2>/dev/null && PIDS+=("$vpid")   # stopped at exit, if it lives

# The restart downloads again while nothing executes the old download.
sed -i 's/^validate_sleep_s: .*/validate_sleep_s: 0/' "$d/collector.yaml"
start_agent "$d"
check "the restarted agent upgrades: Upgraded 2.0.0" \
    wait_until 30 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded2.0.0 ]' "$d"
check "no \"Text file busy\" anywhere" bash -c '! grep -qi "text file busy" "$0/agent.log"' "$d"
check "the collector runs v2, healthy" \
    bash -c '[ "$(exe_sha "$(collector_pid "$0")")" = "$(sha "$1")" ] && node_healthy "$0"' "$d" "$d/v2"
check "nothing of the interrupted attempt is left in state/tmp" \
    bash -c '[ -z "$(ls -A "$0/state/tmp")" ]' "$d"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
