# bench/lib.sh - sourced by the bench scripts: the processes a script
# started (PIDS, stopped by pid), a free port, and pkgstored on a free
# 127.0.0.1 port. The script sets BIN and WORK (and NICE, optional) and
# defines die before it calls start_pkgstored.

PIDS=()

# Stop every process in PIDS, by pid: TERM to all, then wait for each.
stop_started() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
}

# free_port: a free port on 127.0.0.1 below the ephemeral range, as the
# tests pick them
. "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/lib/ports.sh"

# start_pkgstored STORE [pkgstored options]: pkgstored (without fsync, with
# the fleet-wide agent token) on a free 127.0.0.1 port, its log appended
# to $WORK/pkgstored.log. Sets PKGSTORED_PID and URL; dies when it does
# not start.
start_pkgstored() {
    local store=$1
    shift
    rm -f "$WORK/port"
    ${NICE:-} "$BIN/pkgstored" --store "$store" --listen 127.0.0.1:0 --port-file "$WORK/port" \
        --no-fsync --allow-shared-agent-token "$@" 2>>"$WORK/pkgstored.log" &
    PKGSTORED_PID=$!
    PIDS+=("$PKGSTORED_PID")
    for _ in $(seq 1 200); do [ -s "$WORK/port" ] && break; sleep 0.05; done
    [ -s "$WORK/port" ] || die "pkgstored did not start: $(cat "$WORK/pkgstored.log")"
    URL=http://127.0.0.1:$(cat "$WORK/port")
}
