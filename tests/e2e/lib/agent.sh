# Shared helpers for tests/e2e/agent_*.t (sourced, not run by prove).
# Every process started here is recorded and stopped by pid on exit.

set -u
: "${PKGSTORE_BIN:?PKGSTORE_BIN must point at build/bin}"
B=$PKGSTORE_BIN
# The agent's test build (fault switches compiled in; see docs/pkgstore-agent.md).
TB=${PKGSTORE_BUILD:-$B/..}/test-bin
T=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-agent-e2e.XXXXXX")
PIDS=()
TESTNUM=0
FAILED=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # collectors started by agents we SIGKILLed live in their own groups
    if [ -d "$T" ]; then
        local f
        while read -r f; do
            pid=$(cat "$f" 2>/dev/null) && [ -n "$pid" ] && kill -KILL "-$pid" 2>/dev/null
        done < <(find "$T" -path '*/state/run/*.pid' 2>/dev/null)
        # children of SIGKILLed agents carry PKGSTORE_AGENT_CHILD=<state_dir>/...
        for f in /proc/[0-9]*; do
            grep -qa "PKGSTORE_AGENT_CHILD=$T/" "$f/environ" 2>/dev/null && kill -KILL "${f#/proc/}" 2>/dev/null
        done
    fi
    if [ "$FAILED" = 0 ] && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$T"; else echo "# kept $T"; fi
}
trap cleanup EXIT

ok()   { TESTNUM=$((TESTNUM + 1)); echo "ok $TESTNUM - $*"; }
nok()  { TESTNUM=$((TESTNUM + 1)); FAILED=1; echo "not ok $TESTNUM - $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else nok "$name"; fi; }
diag() { echo "# $*"; }
dump() { local f; for f in "$@"; do [ -e "$f" ] && sed 's/^/#   /' "$f" | tail -40; done; }

# wait_until SECONDS COMMAND...: poll every 0.1 s
wait_until() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    while [ $SECONDS -le "$end" ]; do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

free_port() {
    perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0", ReuseAddr => 1) or die; print $s->sockport, "\n"'
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# A binary with a unique digest: the fake variant plus a trailer (ELF
# executables ignore trailing bytes).
make_variant() { # SRC_VARIANT DEST TAG
    cp "$B/fake-otelcol-$1" "$2" && printf '\n#pkgstore-test %s\n' "$3" >> "$2" && chmod 0755 "$2"
}

health_ok() { curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }

# start_fake_server DIR [extra args]: sets FAKE_URL; offers in DIR/offers.json
start_fake_server() {
    local dir=$1; shift
    mkdir -p "$dir/blobs"
    [ -e "$dir/offers.json" ] || echo '[]' > "$dir/offers.json"
    "$B/fake-pkgstored" --port-file "$dir/port" --offers "$dir/offers.json" --blobs "$dir/blobs" \
        --log "$dir/heartbeats.jsonl" "$@" 2> "$dir/server.log" &
    PIDS+=($!)
    wait_until 5 test -s "$dir/port" || return 1
    FAKE_URL="http://127.0.0.1:$(cat "$dir/port")"
}

# publish DIR FILE NAME VERSION [type] [format] [entrypoint]: put FILE in the
# fake server's blobs and print the offer JSON
offer_json() {
    local dir=$1 file=$2 name=$3 version=$4 type=${5:-primary} format=${6:-binary} entry=${7:-$3}
    local h size
    h=$(sha "$file"); size=$(stat -c %s "$file")
    cp "$file" "$dir/blobs/$h"
    printf '{"name":"%s","type":"%s","version":"%s","digest":"sha256:%s","size":%s,"format":"%s","entrypoint":"%s","url":"/v1/blobs/sha256:%s","policy":"test"}' \
        "$name" "$type" "$version" "$h" "$size" "$format" "$entry" "$h"
}

set_offers() { # DIR JSON...
    local dir=$1; shift
    local IFS=,
    echo "[$*]" > "$dir/offers.json.tmp" && mv "$dir/offers.json.tmp" "$dir/offers.json"
}

# new_node DIR URL [window] [extra collector yaml lines]: a node with its
# collector config, v1 installed, agent config in DIR/agent.yaml
new_node() {
    local dir=$1 url=$2 window=${3:-2} extra=${4:-}
    mkdir -p "$dir/bin" "$dir/state"
    local port health
    port=$(free_port); health=$(free_port)
    echo "$port" > "$dir/port"; echo "$health" > "$dir/health_port"
    printf 'ports: [%s]\nhealth_port: %s\ncrash_after_s: 1\n' "$port" "$health" > "$dir/collector.yaml"
    [ -e "$dir/bin/otelcol" ] || make_variant v1 "$dir/bin/otelcol" "$dir-v1"
    cat > "$dir/agent.yaml" <<YAML
server:
  url: $url
  timeout_s: 5
${TOKEN_FILE:+  token_file: $TOKEN_FILE}
heartbeat:
  interval_s: ${HB_INTERVAL:-0.5}
  jitter: 0.1
  retry_max_s: 2
  obey_server_interval: false
node:
  id: $(basename "$dir")
  labels: {${LABELS:-env: test}}
state_dir: $dir/state
collector:
  package: otelcol
  version: 1.0.0
  executable: $dir/bin/otelcol
  config: $dir/collector.yaml
  health_url: http://127.0.0.1:$health/
  ports: [$port]
  monitor_window_s: $window
  stop_timeout_s: 2
  validate_timeout_s: 5
$extra
restart_backoff: {initial_s: 0.2, max_s: 2, reset_after_s: 5}
upgrade_retry: {initial_s: ${RETRY_INITIAL:-30}, max_s: 60}
${ADDONS_YAML:-}
YAML
}

# start_agent DIR: runs the agent in the background, pid in AGENT_PID
# ($AGENT_BIN, default the release build, chooses the binary)
start_agent() {
    local dir=$1
    "${AGENT_BIN:-$B/pkgstore-agent}" --config "$dir/agent.yaml" >> "$dir/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=($AGENT_PID)
    echo "$AGENT_PID" > "$dir/agent.pid"
}

stop_agent() { # DIR
    local pid; pid=$(cat "$1/agent.pid")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

collector_version() { "$1/bin/otelcol" --version 2>/dev/null | awk '{print $3}'; }
node_healthy() { health_ok "$(cat "$1/health_port")"; }
# The status the agent last recorded for the primary package.
state_status() { jq -r '.packages[] | select(.type=="primary") | .status' "$1/state/state.json" 2>/dev/null; }
state_message() { jq -r '.packages[] | select(.type=="primary") | .message' "$1/state/state.json" 2>/dev/null; }
status_is() { [ "$(state_status "$1")" = "$2" ]; }
# Statuses reported to the fake server, in order, deduplicated.
reported_statuses() {
    jq -r '.packages[] | select(.type=="primary") | .status // empty' "$1" 2>/dev/null | uniq | tr '\n' ' '
}

# start_real_server DIR [pkgstored options]: pkgstored on a free port with
# the store DIR/store; sets URL, ADMIN_TOKEN_FILE, AGENT_TOKEN_FILE.
start_real_server() {
    local dir=$1; shift
    mkdir -p "$dir"
    rm -f "$dir/port"
    "$B/pkgstored" --store "$dir/store" --listen 127.0.0.1:0 --port-file "$dir/port" \
        --no-fsync "$@" 2>> "$dir/server.log" &
    PIDS+=($!)
    wait_until 10 test -s "$dir/port" || return 1
    URL="http://127.0.0.1:$(cat "$dir/port")"
    ADMIN_TOKEN_FILE=$dir/store.admin-token
    AGENT_TOKEN_FILE=$dir/store.agent-token
    wait_until 5 test -s "$AGENT_TOKEN_FILE"
}

# Checks run through "bash -c" see the helpers too.
export B T PKGSTORE_BIN
export -f wait_until free_port sha make_variant health_ok offer_json set_offers collector_version \
    node_healthy state_status state_message status_is reported_statuses
