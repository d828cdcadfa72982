#!/bin/bash
# pkgstore-agent: command line, configuration errors, supervision of the
# collector (restart with backoff, SIGTERM then SIGKILL, stop on SIGTERM),
# and an unreachable server never stopping the collector.
. "$(dirname "$0")/lib/agent.sh"
echo "1..25"

check "--version" bash -c '[ "$("$0/pkgstore-agent" --version)" = "pkgstore-agent (pkgstore) $("$0/pkgstore-add" --version | cut -d" " -f3)" ]' "$B"
check "--help" bash -c '"$0/pkgstore-agent" --help | grep -q -- "--check-config"' "$B"
"$B/pkgstore-agent" --bogus > /dev/null 2>&1; check "unknown option exits 2" test $? = 2
err=$("$B/pkgstore-agent" --config 2>&1); rc=$?
check "--config without a value: exit 2, one line and a pointer to --help" bash -c '[ "$0" = 2 ] && [ "$1" = "pkgstore-agent: --config: needs a value
Try '"'"'pkgstore-agent --help'"'"' for more information." ]' "$rc" "$err"
err=$("$B/pkgstore-agent" -xc 2>&1)
check "grouped unknown short options: -x named" bash -c '[[ "$0" == "pkgstore-agent: -x: unknown option"* ]]' "$err"

printf 'server:\n  url: http://127.0.0.1:1\nbogus: 1\n' > "$T/bad.yaml"
err=$("$B/pkgstore-agent" --config "$T/bad.yaml" --check-config 2>&1); rc=$?
check "unknown key rejected with its line (exit 2)" bash -c '[ "$0" = 2 ] && [[ "$1" == *"bad.yaml:3: top level: unknown key '"'"'bogus'"'"'"* ]]' "$rc" "$err"
printf 'server:\n  url: http://127.0.0.1:1\n' > "$T/incomplete.yaml"
err=$("$B/pkgstore-agent" --config "$T/incomplete.yaml" --check-config 2>&1)
check "missing collector.package named" bash -c '[[ "$0" == *"collector.package: required"* ]]' "$err"

printf 'server:\n  url: http://127.0.0.1:1\naddons:\n  - name: a\n  - name: b\naddons:\n  - name: c\n' > "$T/twice.yaml"
err=$("$B/pkgstore-agent" --config "$T/twice.yaml" --check-config 2>&1); rc=$?
check "a repeated addons key is a usage error, not a crash" bash -c '[ "$0" = 2 ] && [[ "$1" == *"twice.yaml:7: addons: listed twice"* ]]' "$rc" "$err"

printf 'server: {url: http://127.0.0.1:1}\nnode: {platform: "linux/"}\ncollector: {package: otelcol, executable: /x, config: /y}\n' > "$T/plat.yaml"
err=$("$B/pkgstore-agent" --config "$T/plat.yaml" --check-config 2>&1); rc=$?
check "a malformed node.platform is a configuration error (exit 2)" bash -c '[ "$0" = 2 ] && [[ "$1" == *"node.platform:"* ]]' "$rc" "$err"
sed -i 's|linux/|Linux/x86_64|' "$T/plat.yaml"
check "node.platform is normalized (Linux/x86_64 -> linux/amd64)" \
    bash -c '"$0/pkgstore-agent" --config "$1" --check-config --json | jq -e ".node.platform == \"linux/amd64\"" >/dev/null' "$B" "$T/plat.yaml"

new_node "$T/n1" "http://127.0.0.1:$(free_port)" 2
json=$("$B/pkgstore-agent" --config "$T/n1/agent.yaml" --check-config --json)
check "--check-config --json resolves defaults" bash -c 'echo "$0" | jq -e ".collector.validate_command == \"{executable} --config {config} validate\" and .node.id == \"n1\" and .collector.args == [\"--config\",\"{config}\"]" >/dev/null' "$json"

# Server down from the start: the collector runs anyway.
start_agent "$T/n1"
check "collector healthy while the server is unreachable" wait_until 10 node_healthy "$T/n1"
check "heartbeat failures are retried with backoff" wait_until 10 grep -q 'msg="heartbeat failed".*retry_in_s' "$T/n1/agent.log"
pid1=$(cat "$T/n1/state/run/primary-otelcol.pid")
check "collector runs in its own process group" test "$(ps -o pgid= -p "$pid1" | tr -d ' ')" = "$pid1"

# Crash the collector: it comes back, with backoff.
kill -KILL "$pid1"
check "collector restarted after a crash" wait_until 10 bash -c 'p=$(cat "$0/state/run/primary-otelcol.pid" 2>/dev/null); [ -n "$p" ] && [ "$p" != "$1" ] && curl -fs -o /dev/null "http://127.0.0.1:$(cat "$0/health_port")/"' "$T/n1" "$pid1"
check "restart logged with its backoff" grep -q 'msg="child exited, restarting with backoff".*restart_in_s' "$T/n1/agent.log"

# SIGTERM to the agent: the collector is stopped and the agent exits 0.
pid2=$(cat "$T/n1/state/run/primary-otelcol.pid")
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; rc=$?
check "agent exits 0 on SIGTERM" test "$rc" = 0
check "collector stopped with the agent" bash -c '! kill -0 "$0" 2>/dev/null' "$pid2"

# SIGINT is forwarded as SIGINT (the collector logs the signal it got),
# even when the agent was started with SIGINT and SIGCHLD ignored.
bash -c 'trap "" INT CHLD; exec "$0/pkgstore-agent" --config "$1/agent.yaml" >> "$1/agent.log" 2>&1' "$B" "$T/n1" &
AGENT_PID=$!; PIDS+=($AGENT_PID)
wait_until 10 node_healthy "$T/n1"
pid_int=$(cat "$T/n1/state/run/primary-otelcol.pid")
kill -INT "$AGENT_PID"
(sleep 15; kill -KILL "$AGENT_PID" 2>/dev/null) & watchdog=$!   # a lost SIGINT must not hang the test
wait "$AGENT_PID"; rc=$?
kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
check "SIGINT (inherited as ignored): forwarded to the collector as SIGINT, agent exits 0" \
    bash -c '[ "$0" = 0 ] && ! kill -0 "$1" 2>/dev/null && grep -q "received signal, shutting down\" signal=2" "$2"' "$rc" "$pid_int" "$T/n1/agent.log"

# A collector that ignores SIGTERM is killed after stop_timeout.
make_variant ignores-sigterm "$T/n1/bin/otelcol" ign
start_agent "$T/n1"
wait_until 10 node_healthy "$T/n1"
pid3=$(cat "$T/n1/state/run/primary-otelcol.pid")
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"
check "SIGKILL after stop_timeout for a collector ignoring SIGTERM" bash -c '! kill -0 "$0" 2>/dev/null && grep -q "ignored the stop signal, killing" "$1"' "$pid3" "$T/n1/agent.log"
check "the kill came after the configured stop_timeout (2 s)" grep -q 'ignored the stop signal, killing.*stop_timeout_s=2.0' "$T/n1/agent.log"

# A killed agent leaves its collector; the next agent stops it first.
make_variant v1 "$T/n1/bin/otelcol" v1again
start_agent "$T/n1"
wait_until 10 node_healthy "$T/n1"
orphan=$(cat "$T/n1/state/run/primary-otelcol.pid")
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
start_agent "$T/n1"
check "restarted agent replaces the orphaned collector" wait_until 10 bash -c '! kill -0 "$0" 2>/dev/null && grep -q "left by a previous agent" "$1" && curl -fs -o /dev/null "http://127.0.0.1:$(cat "$2/health_port")/"' "$orphan" "$T/n1/agent.log" "$T/n1"
# A server's heartbeat_interval_s outside what pkgstored sends (1 s .. 1 day)
# must not make the agent hammer it.
d=$T/hammer; mkdir -p "$d"
start_fake_server "$d" --interval 0.000001; new_node "$d" "$FAKE_URL" 2
sed -i 's/obey_server_interval: false/obey_server_interval: true/' "$d/agent.yaml"
start_agent "$d"
# every heartbeat logs (at debug) the wait it chose: wait for 4 of them
waits() { grep -o 'msg="heartbeat" next_in_s=[0-9.]*' "$1/agent.log" | sed 's/.*=//'; }
export -f waits
wait_until 20 bash -c '[ "$(waits "$0" | wc -l)" -ge 4 ]' "$d"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "a bogus server interval is ignored: warned, every wait the configured 0.5 s +-10 % ($(waits "$d" | sort -u | tr '\n' ' '))" \
    bash -c 'grep -q "ignoring the server.s heartbeat interval" "$0/agent.log" && [ "$(waits "$0" | wc -l)" -ge 4 ] && waits "$0" | awk "\$1 < 0.45 || \$1 > 0.55 {bad = 1} END {exit bad}"' "$d"

# Jitter: with the server unreachable, every retry waits interval_s (capped
# at retry_max_s) times a random factor in [1 - jitter, 1 + jitter].
for j in jit nojit; do
    d=$T/$j; mkdir -p "$d"
    new_node "$d" "http://127.0.0.1:$(free_port)" 2
    sed -i -e 's/^  interval_s: .*/  interval_s: 0.4/' -e 's/^  retry_max_s: .*/  retry_max_s: 0.4/' "$d/agent.yaml"
    [ $j = nojit ] && sed -i 's/^  jitter: .*/  jitter: 0/' "$d/agent.yaml"
    [ $j = jit ] && sed -i 's/^  jitter: .*/  jitter: 0.5/' "$d/agent.yaml"
    start_agent "$d"; echo "$AGENT_PID" > "$d/pid"
done
delays() { grep -o 'msg="heartbeat failed".*retry_in_s=[0-9.]*' "$1/agent.log" | sed 's/.*retry_in_s=//'; }
export -f delays
wait_until 15 bash -c '[ "$(delays "$0" | wc -l)" -ge 8 ] && [ "$(delays "$1" | wc -l)" -ge 8 ]' "$T/jit" "$T/nojit"
for j in jit nojit; do kill -TERM "$(cat "$T/$j/pid")"; wait "$(cat "$T/$j/pid")" 2>/dev/null; done
check "jitter 0.5: retry delays vary within [0.2, 0.6] s ($(delays "$T/jit" | sort -u | tr '\n' ' '))" \
    bash -c '[ "$(delays "$0" | wc -l)" -ge 8 ] && [ "$(delays "$0" | sort -u | wc -l)" -ge 3 ] && delays "$0" | awk "\$1 < 0.2 || \$1 > 0.6 {bad = 1} END {exit bad}"' "$T/jit"
check "jitter 0: every retry delay is the interval ($(delays "$T/nojit" | sort -u | tr '\n' ' '))" \
    bash -c '[ "$(delays "$0" | wc -l)" -ge 8 ] && [ "$(delays "$0" | sort -u)" = 0.40 ]' "$T/nojit"

[ "$FAILED" = 0 ] || dump "$T/n1/agent.log"
