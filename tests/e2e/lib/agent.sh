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

MOUNTS=()
IMMUTABLE=()
cleanup() {
    local pid m
    for m in "${IMMUTABLE[@]}"; do chattr -i "$m" 2>/dev/null; chmod u+w "$m" 2>/dev/null; done
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
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
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

. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# A binary with a unique digest: the fake variant plus a trailer (ELF
# executables ignore trailing bytes).
make_variant() { # SRC_VARIANT DEST TAG
    cp "$B/fake-otelcol-$1" "$2" && printf '\n#pkgstore-test %s\n' "$3" >> "$2" && chmod 0755 "$2"
}

health_ok() { curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }

# start_fake_server DIR [extra args]: sets FAKE_URL; offers in DIR/offers.json,
# and targets (every offer, as pkgstored's for offers) in DIR/targets.json;
# FAKE_NO_TARGETS=1 answers without targets, as an older pkgstored.
start_fake_server() {
    local dir=$1; shift
    mkdir -p "$dir/blobs"
    [ -e "$dir/offers.json" ] || echo '[]' > "$dir/offers.json"
    [ -e "$dir/targets.json" ] || echo '[]' > "$dir/targets.json"
    local targets=(--targets "$dir/targets.json")
    [ -z "${FAKE_NO_TARGETS:-}" ] || targets=()
    "$B/fake-pkgstored" --port-file "$dir/port" --offers "$dir/offers.json" --blobs "$dir/blobs" \
        --log "$dir/heartbeats.jsonl" "${targets[@]}" "$@" 2> "$dir/server.log" &
    PIDS+=($!)
    wait_until 5 test -s "$dir/port" || return 1
    FAKE_URL="http://127.0.0.1:$(cat "$dir/port")"
}

# offer_json DIR FILE NAME VERSION [type] [format] [entrypoint]: put FILE in
# the fake server's blobs and print the offer JSON; the annotations of
# DIR/manifests/NAME/VERSION.json, when there is one, go with it (as
# pkgstored's offers carry the manifest's)
offer_json() {
    local dir=$1 file=$2 name=$3 version=$4 type=${5:-primary} format=${6:-binary} entry=${7:-$3}
    local h size ann='{}'
    h=$(sha "$file"); size=$(stat -c %s "$file")
    cp "$file" "$dir/blobs/$h"
    [ -e "$dir/manifests/$name/$version.json" ] && ann=$(jq -c '.annotations // {}' "$dir/manifests/$name/$version.json")
    printf '{"name":"%s","type":"%s","version":"%s","digest":"sha256:%s","size":%s,"format":"%s","entrypoint":"%s","url":"/v1/blobs/sha256:%s","policy":"test","annotations":%s}' \
        "$name" "$type" "$version" "$h" "$size" "$format" "$entry" "$h" "$ann"
}

set_offers() { # DIR JSON...
    local dir=$1; shift
    local IFS=,
    echo "[$*]" > "$dir/offers.json.tmp" &&
        jq -c '[.[] | {name, type, version, digest, policy, state: "Pending"}]' "$dir/offers.json.tmp" \
            > "$dir/targets.json.tmp" 2>/dev/null || echo '[]' > "$dir/targets.json.tmp"
    mv "$dir/targets.json.tmp" "$dir/targets.json" && mv "$dir/offers.json.tmp" "$dir/offers.json"
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
upgrade_retry: {initial_s: ${RETRY_INITIAL:-30}, max_s: ${RETRY_MAX:-60}}
${ADDONS_YAML:-}
YAML
    # PKGSTORE_OLD_AGENT=1: a configuration an agent older than these keys
    # reads (to check that a new test fails against the agent before a fix)
    [ -n "${PKGSTORE_OLD_AGENT:-}" ] || cat >> "$dir/agent.yaml" <<YAML
upgrade_limit: {attempts: ${LIMIT_ATTEMPTS:-1000}, window_s: ${LIMIT_WINDOW:-60}}
upgrade_watchdog: {window_s: ${WATCHDOG_WINDOW:-60}, crashes: ${WATCHDOG_CRASHES:-2}}
log_level: debug
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
# the store DIR/store and the fleet-wide agent token allowed (the agent
# tests let every node share it); sets URL, ADMIN_TOKEN_FILE,
# AGENT_TOKEN_FILE.
start_real_server() {
    local dir=$1; shift
    mkdir -p "$dir"
    rm -f "$dir/port"
    "$B/pkgstored" --store "$dir/store" --listen 127.0.0.1:0 --port-file "$dir/port" \
        --no-fsync --allow-shared-agent-token "$@" 2>> "$dir/server.log" &
    PIDS+=($!)
    wait_until 10 test -s "$dir/port" || return 1
    URL="http://127.0.0.1:$(cat "$dir/port")"
    ADMIN_TOKEN_FILE=$dir/store.admin-token
    AGENT_TOKEN_FILE=$dir/store.agent-token
    STORE=$dir/store
    wait_until 5 test -s "$AGENT_TOKEN_FILE"
    export URL ADMIN_TOKEN_FILE AGENT_TOKEN_FILE STORE
}

# real_server: pkgstored for this test in $T/server (S), answering with a
# heartbeat interval of 1 s; the agents' configurations use its agent token.
real_server() {
    S=$T/server
    start_real_server "$S" --heartbeat-interval 1 || { echo "Bail out! pkgstored did not start"; exit 1; }
    export TOKEN_FILE=$AGENT_TOKEN_FILE
}

# real_node WINDOW [extra collector yaml]: the node $T/node (d) of the real
# server, as new_node makes it
real_node() {
    d=$T/node
    new_node "$d" "$URL" "$@"
}

# The real server's admin side (after start_real_server).
admin() { curl -fsS -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$URL$1"; }
push() { "$B/pkgstore-push" --server "$URL" --token-file "$ADMIN_TOKEN_FILE" --quiet --json "$@"; }
policy() { "$B/pkgstore-policy" --server "$URL" --token-file "$ADMIN_TOKEN_FILE" "$@"; }
# pkgstore-add on the server's store (annotations, dependencies)
server_add() { "$B/pkgstore-add" --store "$STORE" --no-fsync "$@"; }
# heartbeats pkgstored answered so far (status reports included)
heartbeats() { admin /metrics | awk '$1 == "pkgstored_heartbeats_total" { print $2 }'; }
# wait_heartbeats N [LIMIT_S]: until pkgstored has answered N more heartbeats
wait_heartbeats() {
    local target=$(( $(heartbeats) + $1 ))
    wait_until "${2:-60}" bash -c '[ "$(heartbeats)" -ge "$0" ]' "$target"
}
# NODE PACKAGE: the statuses of PACKAGE in the node's server history
history_of() { admin "/v1/agents/$1" | jq -r --arg p "$2" '[.history[] | select(.package == $p) | .status] | join(" ")'; }
# NODE PACKAGE: the node's reported "version digest state" of PACKAGE
fleet_of() { admin "/v1/agents/$1" | jq -r --arg p "$2" '.packages[] | select(.name == $p) | "\(.version) \(.digest) \(.state)"'; }
# DIR PACKAGE FIELD: a package's field in the agent's journal
journal_of() { jq -r --arg n "$2" '.packages[] | select(.name == $n) | .'"$3"' // empty' "$1/state/state.json" 2>/dev/null; }
# DIR: the agent's count of a log message
log_count() { grep -c "$2" "$1/agent.log" 2>/dev/null; }
# DIR: the primary package's "status+version" in the journal, e.g. Upgraded2.0.0
sv() { echo "$(journal_of "$1" otelcol status)$(journal_of "$1" otelcol version)"; }
# DIR: how many upgrades the agent started
starts() { log_count "$1" 'msg="upgrade starting"'; }
# The collector's pid, from its pid file.
collector_pid() { cat "$1/state/run/primary-otelcol.pid" 2>/dev/null; }
exe_sha() { sha256sum "/proc/$1/exe" 2>/dev/null | cut -d' ' -f1; }

# Checks run through "bash -c" see the helpers too.
export B T TB PKGSTORE_BIN
export -f wait_until free_port sha make_variant health_ok offer_json set_offers collector_version \
    node_healthy state_status state_message status_is reported_statuses admin push policy \
    server_add heartbeats wait_heartbeats history_of fleet_of journal_of log_count collector_pid \
    exe_sha sv starts
