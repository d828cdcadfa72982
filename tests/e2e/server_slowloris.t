#!/usr/bin/env bash
# Slow and greedy clients cannot starve the others (issue 9, Slowloris):
#   - 8,300 half-sent requests from one address (127.0.0.2) leave /healthz
#     and heartbeats from 127.0.0.1 answered: the per-address cap refuses
#     most of them, with the default options;
#   - a header block trickled one line at a time is cut at --header-timeout
#     although every line resets libmicrohttpd's idle timeout;
#   - a kept-alive connection that trickles its next request line is cut at
#     --idle-timeout;
#   - a body slower than --min-body-rate is cut after --body-timeout.
# Each cut is seen by the client (the server closes the connection) and in
# the server's log (reason and peer); nothing here waits for a time window.
. "$(dirname "$0")/server_common.sh"

CLIENT="$SRC/tests/fixtures/slow-client.pl"
FLOOD=${PKGSTORE_FLOOD:-8300}

# The flood needs a descriptor per connection on the client side too.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt $((FLOOD + 200)) ]; then
    FLOOD=$((HARD - 200))
    diag "RLIMIT_NOFILE hard limit $HARD: the flood is $FLOOD connections"
fi

# wait_log PATTERN: wait for a line matching PATTERN in the server log
# (bounded only so that a broken server fails the test instead of hanging it).
wait_log() {
    local i
    for i in $(seq 1 600); do
        grep -q -- "$1" "$TMP/server.log" && return 0
        sleep 0.1
    done
    return 1
}

start_server
grep -q 'max_connections_per_ip=' "$TMP/server.log"
ok $? "the listening line reports the connection caps"
diag "$(grep -o 'max_connections=[0-9]* max_connections_per_ip=[0-9]* nofile=[0-9]*' "$TMP/server.log")"

# --- a flood from one address
mkfifo "$TMP/hold"
(ulimit -n "$HARD" 2>/dev/null; exec perl "$CLIENT" flood "$PORT" 127.0.0.2 "$FLOOD" "$TMP/flood.ready" "$TMP/hold") &
FLOOD_PID=$!
EXTRA_PIDS+=("$FLOOD_PID")
exec 4>"$TMP/hold" # the flood holds its connections until this closes
for i in $(seq 1 1200); do
    [ -s "$TMP/flood.ready" ] && break
    kill -0 "$FLOOD_PID" 2>/dev/null || break
    sleep 0.1
done
diag "flood from 127.0.0.2: $(cat "$TMP/flood.ready" 2>/dev/null)"
is "$(cat "$TMP/flood.ready" 2>/dev/null)" "opened $FLOOD" "the flood opened its $FLOOD connections"
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 30 "$URL/healthz")
is "$STATUS" "200" "during the flood, /healthz from 127.0.0.1 is answered"
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer $AGENT" \
    -d '{"node_id":"flood-witness","platform":"linux/amd64"}' "$URL/v1/agents/heartbeat")
is "$STATUS" "200" "during the flood, a heartbeat from 127.0.0.1 is answered"
exec 4>&-
wait "$FLOOD_PID"
server_alive
ok $? "the server survived the flood"
LINES=$(wc -l <"$TMP/server.log")
ok "$([ "$LINES" -lt 2000 ]; echo $?)" "the refused connections did not flood the log ($LINES lines)"
stop_server
grep -q 'suppressed=[1-9]' "$TMP/server.log"
ok $? "libmicrohttpd's repeated messages were counted as suppressed (by the shutdown at the latest)"

# --- the caps are checked at start, after raising the soft descriptor limit
if [ "$HARD" != unlimited ] && [ "$HARD" -le 2097152 ]; then
    (ulimit -Sn 512; exec timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 \
        --max-connections $((HARD / 2))) 2>"$TMP/err"
    is "$?" "2" "--max-connections beyond RLIMIT_NOFILE: exit 2"
    grep -q "RLIMIT_NOFILE is $HARD " "$TMP/err"
    ok $? "started with a soft limit of 512, pkgstored counts the raised limit ($HARD)"
    diag "$(cat "$TMP/err")"
fi
timeout 60 "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --max-connections 100 \
    --max-connections-per-ip 100 2>"$TMP/err"
is "$?|$(head -c 60 "$TMP/err")" "2|pkgstored: --max-connections-per-ip: 100 must be below --max" \
    "a per-address cap that is not below the total: exit 2"

# --- deadlines
start_server --header-timeout 2 --idle-timeout 3 --body-timeout 1 --min-body-rate 1K

OUT=$(perl "$CLIENT" trickle "$PORT" 127.0.0.3 0.5 240)
is "${OUT%% after*}" "closed" "a header block trickled a line every 0.5 s is cut ($OUT)"
wait_log 'reason=header_timeout peer=127.0.0.3'
ok $? "the server logged the cut: reason=header_timeout peer=127.0.0.3"

OUT=$(perl "$CLIENT" keepalive "$PORT" 127.0.0.4 0.5 240)
is "${OUT%% after*}" "closed" "a kept-alive connection trickling its next request line is cut ($OUT)"
wait_log 'reason=idle_timeout peer=127.0.0.4'
ok $? "the server logged the cut: reason=idle_timeout peer=127.0.0.4"

OUT=$(perl "$CLIENT" slowbody "$PORT" 127.0.0.5 0.5 240 "$ADMIN" 100000)
is "${OUT%% after*}" "closed" "an upload sending 32 bytes/s is cut ($OUT)"
wait_log 'reason=slow_body peer=127.0.0.5'
ok $? "the server logged the cut: reason=slow_body peer=127.0.0.5"
wait_log 'msg="upload aborted"'
ok $? "the cut upload was aborted (its temporary file discarded)"

req GET /v1/packages
is "$STATUS" "200" "a prompt client is still served"
req_as "" GET /healthz
is "$STATUS" "200" "/healthz is still served"
server_alive
ok $? "the server process is alive"
finish
