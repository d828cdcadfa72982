#!/bin/bash
# A swap that fails after the new binary was already renamed over the live
# path (the agent's test build, PKGSTORE_AGENT_TEST_FAULT=swap-after-rename:
# the rename happened, then the swap reports a failure as if the final
# directory fsync failed). The agent must not believe the old binary is
# still live: it restores the .bak, restarts v1 and reports RolledBack; v2's
# digest is never recorded as running. The failure is transient: an agent
# restarted without the fault converges to v2. At every step of every swap
# (check-live) the live path is a complete executable.
. "$(dirname "$0")/lib/agent.sh"
echo "1..13"
W=2   # monitor window (s)
export HB_INTERVAL=0.5 RETRY_INITIAL=1 RETRY_MAX=2
d=$T/node; mkdir -p "$d"
start_fake_server "$d"
new_node "$d" "$FAKE_URL" $W
exe=$d/bin/otelcol
v1=$(sha "$exe")
make_variant v2 "$d/v2" swap-fault-v2
v2=$(sha "$d/v2")

# The primary package as recorded in the journal, "status<TAB>message",
# from one read of state.json (the status and its message belong together).
primary_sm() { jq -r '.packages[] | select(.type == "primary") | [.status // "", .message // ""] | @tsv' "$1/state/state.json" 2>/dev/null; }
terminal() { case "$(primary_sm "$1" | cut -f1)" in RolledBack|UpgradeFailed|Upgraded|RollbackFailed) return 0;; esac; return 1; }
# The running collector's own binary is v1 ($2) and it answers 200.
runs_healthy() { local p; p=$(collector_pid "$1"); [ -n "$p" ] && [ "$(exe_sha "$p")" = "$2" ] && node_healthy "$1"; }
export -f primary_sm terminal runs_healthy

# --- phase 1: the agent's test build injects the fault and checks the
# live path before every step of the swap
export PKGSTORE_AGENT_TEST_FAULT=swap-after-rename,check-live
AGENT_BIN=$TB/pkgstore-agent start_agent "$d"
unset PKGSTORE_AGENT_TEST_FAULT
wait_until 10 node_healthy "$d" || diag "v1 never healthy"
# expects: the fault switch really reached the agent (else nothing below means anything)
check "the test build runs with PKGSTORE_AGENT_TEST_FAULT=swap-after-rename,check-live" \
    bash -c 'tr "\0" "\n" < /proc/$0/environ | grep -qx PKGSTORE_AGENT_TEST_FAULT=swap-after-rename,check-live' "$AGENT_PID"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
wait_until 20 terminal "$d"
sm=$(primary_sm "$d")
st=${sm%%$'\t'*}; msg=${sm#*$'\t'}
diag "first outcome: status=$st message=$msg"
# expects: the binary was renamed in, so the swap failure is a rollback
# (RolledBack), not an UpgradeFailed that leaves v2 live, nor Upgraded
# (which means the fault was not injected at all)
check "swap failed after the rename: status RolledBack" test "$st" = RolledBack
# expects: the message names the failing step and the restore
check "message has \"swap:\" and \"restored the previous binary\"" \
    bash -c '[[ "$0" == *"swap:"* && "$0" == *"restored the previous binary"* ]]' "$msg"
# expects: the .bak was put back over the live path
check "live executable is v1 again" wait_until 5 bash -c '[ "$(sha "$0")" = "$1" ]' "$exe" "$v1"
# expects: v1 restarted from the restored path, healthy
check "collector runs v1 (/proc/PID/exe) and answers 200" wait_until $((W + 5)) runs_healthy "$d" "$v1"
check "collector --version is 1.0.0" wait_until 5 bash -c '[ "$(collector_version "$0")" = 1.0.0 ]' "$d"
# a retry (the fault is still on) is the second swap the hook watches
check "the failed swap is retried" wait_until 20 bash -c '[ "$(grep -c "msg=\"upgrade starting\"" "$0")" -ge 2 ] && [ "$(grep -c "test hook\" step=new:dirsync" "$0")" -ge 2 ]' "$d/agent.log"
# expects: rename() only ever replaces a complete file; the live path never
# disappears nor loses its mode at any step of the swaps
steps=$(grep -c 'msg="test hook"' "$d/agent.log")
check "at every step of every swap the live path is a complete executable ($steps checks)" \
    bash -c '[ "$1" -ge 12 ] && ! grep "msg=\"test hook\"" "$0" | grep -v "live=complete" | grep -q .' "$d/agent.log" "$steps"
# expects: no heartbeat ever reports v2's digest as the primary's running digest
check "heartbeats never report v2's digest as running ($(wc -l < "$d/heartbeats.jsonl") heartbeats)" \
    bash -c '! jq -e --arg v2 "sha256:$1" "select(.packages[]? | select(.type == \"primary\") | .digest == \$v2)" "$0" > /dev/null' "$d/heartbeats.jsonl" "$v2"

# --- phase 2: the same agent restarted without the fault converges to v2
pid=$(cat "$d/agent.pid")
kill -TERM "$pid"; wait "$pid"; rc=$?
# expects: SIGTERM stops the agent cleanly (exit 0)
check "agent stops on SIGTERM with exit 0" test "$rc" = 0
start_agent "$d"
# expects: the transient swap failure did not mark v2 bad forever: retried, Upgraded
check "restarted without the fault: Upgraded to 2.0.0" \
    wait_until 20 bash -c '[ "$(jq -r ".packages[] | select(.type == \"primary\") | .status + .version" "$0/state/state.json" 2>/dev/null)" = Upgraded2.0.0 ]' "$d"
# expects: v2 is live and it is what runs
check "live executable is v2 and the collector runs it, healthy" \
    bash -c '[ "$(sha "$0/bin/otelcol")" = "$1" ] && wait_until 5 runs_healthy "$0" "$1"' "$d" "$v2"
# expects: and it is reported as running v2
check "heartbeat reports v2's digest, Running" \
    wait_until 5 bash -c 'tail -1 "$0" | jq -e --arg v2 "sha256:$1" "[.packages[] | select(.type == \"primary\")][0] | .digest == \$v2 and .state == \"Running\"" > /dev/null' "$d/heartbeats.jsonl" "$v2"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
