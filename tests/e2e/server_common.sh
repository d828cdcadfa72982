# tests/e2e/server_common.sh - sourced by tests/e2e/server_*.t.
#
# TAP helpers and a pkgstored on a free 127.0.0.1 port with a temporary
# store. Every process started here is stopped by pid on EXIT.

set -u

BIN=${PKGSTORE_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-e2e.XXXXXX")
SERVER_PID=
EXTRA_PIDS=()
TEST_NUMBER=0
TEST_FAILED=0

cleanup() {
    local pid
    for pid in "${EXTRA_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

plan() { echo "1..$1"; }

ok() { # ok CONDITION-EXIT-STATUS DESCRIPTION
    TEST_NUMBER=$((TEST_NUMBER + 1))
    if [ "$1" = 0 ]; then
        echo "ok $TEST_NUMBER - $2"
    else
        echo "not ok $TEST_NUMBER - $2"
        TEST_FAILED=1
    fi
}

is() { # is GOT EXPECTED DESCRIPTION
    TEST_NUMBER=$((TEST_NUMBER + 1))
    if [ "$1" = "$2" ]; then
        echo "ok $TEST_NUMBER - $3"
    else
        echo "not ok $TEST_NUMBER - $3"
        echo "#   got:      '$1'"
        echo "#   expected: '$2'"
        TEST_FAILED=1
    fi
}

diag() { echo "# $*"; }

# start_server [pkgstored options...]: start on a free port with the store
# $TMP/store (kept across restarts); sets URL, ADMIN, AGENT, ADMIN_FILE.
# The fleet-wide agent token is allowed (--allow-shared-agent-token) unless
# NO_SHARED_AGENT_TOKEN=1: these tests speak as any node with it.
start_server() {
    rm -f "$TMP/port"
    local shared=--allow-shared-agent-token
    [ "${NO_SHARED_AGENT_TOKEN:-0}" = 1 ] && shared=
    "$BIN/pkgstored" --store "$TMP/store" --listen 127.0.0.1:0 --port-file "$TMP/port" \
        --no-fsync $shared "$@" 2>>"$TMP/server.log" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        [ -s "$TMP/port" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "Bail out! pkgstored exited at start:"
            sed 's/^/# /' "$TMP/server.log"
            exit 1
        fi
        sleep 0.05
    done
    if [ ! -s "$TMP/port" ]; then
        echo "Bail out! pkgstored did not start"
        exit 1
    fi
    PORT=$(cat "$TMP/port")
    URL="http://127.0.0.1:$PORT"
    ADMIN_FILE="$TMP/store.admin-token"
    AGENT_FILE="$TMP/store.agent-token"
    ADMIN=$(cat "$ADMIN_FILE" 2>/dev/null)
    AGENT=$(cat "$AGENT_FILE" 2>/dev/null)
}

# stop_server: SIGTERM and wait; sets STOP_STATUS.
stop_server() {
    STOP_STATUS=0
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID"
        STOP_STATUS=$?
        SERVER_PID=
    fi
}

server_alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# req METHOD PATH [curl args...]: admin request; sets STATUS and BODY.
req() {
    local method=$1 path=$2
    shift 2
    req_as "$ADMIN" "$method" "$path" "$@"
}

# req_as TOKEN METHOD PATH [curl args...]: TOKEN "" sends no Authorization.
req_as() {
    local token=$1 method=$2 path=$3
    shift 3
    local auth=()
    [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
    STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" \
        "$URL$path")
    BODY=$(tr -d '\000' <"$TMP/body")  # blob bodies may hold NUL bytes
}

# json FILTER: apply jq to BODY.
json() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }

# error_code: the "code" of a JSON error body (empty if not one).
error_code() { json '.error.code // empty'; }

sha256() { sha256sum "$1" | cut -c1-64; }

# vm_hwm PID: peak RSS in kB.
vm_hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

finish() {
    echo "1..$TEST_NUMBER"
    if [ "$TEST_FAILED" != 0 ]; then
        diag "server log (tail):"
        tail -n 30 "$TMP/server.log" | sed 's/^/#   /'
    fi
    exit "$TEST_FAILED"
}
