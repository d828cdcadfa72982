#!/usr/bin/env bash
# The fleet demo, run by `make demo` (which builds everything first).
#
# A registry (pkgstored, temporary store) and three edge nodes, each a
# pkgstore-agent supervising a fake OpenTelemetry Collector v1:
#   edge-canary  canary=true, env=dev
#   edge-dev     env=dev
#   edge-prod    env=prod
# Story: upload v2 (good) and v3 (crashes a second after it starts); roll v2
# out to the canary ring, then to everyone; then roll v3 out to the canary
# ring and watch the agent roll it back; then roll v3 out to the others in
# batches and watch the rollout pause itself after the first node fails.
# Everything runs on 127.0.0.1 and is
# stopped (by pid) at the end. All of it goes over HTTPS: the demo makes a
# CA and a server certificate with the openssl command line, pkgstored
# serves that certificate, and the tools and the agents trust only that CA. The monitor window is 3 s instead of the
# default 60 s so that the demo ends in well under two minutes.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-demo-XXXXXX")
WINDOW=3
PIDS=()
START=$SECONDS

if [ -t 1 ]; then BOLD=$'\033[1m' DIM=$'\033[2m' OFF=$'\033[0m'; else BOLD= DIM= OFF=; fi
say()  { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
note() { printf '%s   %s%s\n' "$DIM" "$*" "$OFF"; }
show() { printf '$ %s\n' "$*"; "$@"; }
die()  { printf 'demo: %s\n' "$*" >&2; printf 'demo: logs kept in %s\n' "$WORK" >&2; KEEP=1; exit 1; }

KEEP=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -z "$KEEP" ]; then chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in pkgstored pkgstore-agent pkgstore-push pkgstore-policy fake-otelcol-v1 fake-otelcol-v2 fake-otelcol-v3; do
    [ -x "$BIN/$tool" ] || die "$BIN/$tool is missing: run make first"
done
command -v jq > /dev/null || die "jq is needed (make deps installs it)"
command -v openssl > /dev/null || die "openssl is needed (make deps installs it)"

free_port() {
    perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0", ReuseAddr => 1) or die; print $s->sockport, "\n"'
}
wait_until() { # SECONDS COMMAND...
    local end=$((SECONDS + $1)); shift
    until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}

# ------------------------------------------------------------------ certificates
say "Make a CA and a certificate for the registry (127.0.0.1) with the openssl command line."
TLS=$WORK/tls
mkdir -p "$TLS"
show openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=pkgstore-demo-ca -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null ||
    die "openssl could not make the CA"
show openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null ||
    die "openssl could not make the server key"
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$TLS/server.ext"
show openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
    -CAcreateserial -days 1 -extfile "$TLS/server.ext" -out "$TLS/server.pem" 2>/dev/null ||
    die "openssl could not sign the server certificate"
note "the tools get the CA with --cacert (or PKGSTORE_CACERT), the agents with server.ca_file;"
note "libcurl checks the chain and the host name, and nothing turns that off"

# ------------------------------------------------------------------ the registry
say "Start the registry: pkgstored on 127.0.0.1 over HTTPS, with a temporary store."
"$BIN/pkgstored" --store "$WORK/store" --listen 127.0.0.1:0 --port-file "$WORK/port" \
    --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
    --heartbeat-interval 1 --no-fsync 2> "$WORK/pkgstored.log" &
PIDS+=($!)
wait_until 10 test -s "$WORK/port" || die "pkgstored did not start (see $WORK/pkgstored.log)"
URL=https://127.0.0.1:$(cat "$WORK/port")
wait_until 5 test -s "$WORK/store.admin-token" || die "pkgstored wrote no admin token"
ADMIN=$WORK/store.admin-token
note "listening on $URL; the admin token is in $WORK/store.admin-token"
push()   { "$BIN/pkgstore-push" --server "$URL" --cacert "$TLS/ca.pem" --token-file "$ADMIN" --quiet "$@"; }
policy() { "$BIN/pkgstore-policy" --server "$URL" --cacert "$TLS/ca.pem" --token-file "$ADMIN" "$@"; }
api()    { curl -fsS --cacert "$TLS/ca.pem" -H "Authorization: Bearer $(cat "$ADMIN")" "$URL$1"; }

# ------------------------------------------------------------------ the fleet
start_node() { # NAME LABELS PINNED-LABEL-OPTIONS...
    local name=$1 labels=$2 dir=$WORK/$1 port health
    shift 2
    mkdir -p "$dir/bin"
    # its own credential, bound to its node id, with its targeting labels
    # pinned: the node cannot speak for another or relabel itself
    "$BIN/pkgstore-token" --server "$URL" --cacert "$TLS/ca.pem" --token-file "$ADMIN" issue --node "$name" "$@" \
        --out "$dir/node-token" > /dev/null || die "pkgstore-token issue failed for $name"
    port=$(free_port); health=$(free_port)
    echo "$health" > "$dir/health_port"
    cp "$BIN/fake-otelcol-v1" "$dir/bin/otelcol"
    printf 'ports: [%s]\nhealth_port: %s\ncrash_after_s: 1\n' "$port" "$health" > "$dir/collector.yaml"
    cat > "$dir/agent.yaml" <<YAML
server:
  url: $URL
  token_file: $dir/node-token
  ca_file: $TLS/ca.pem
heartbeat:
  interval_s: 1
node:
  id: $name
  labels: {$labels}
state_dir: $dir/state
collector:
  package: otelcol
  version: 1.0.0
  executable: $dir/bin/otelcol
  config: $dir/collector.yaml
  health_url: http://127.0.0.1:$health/
  ports: [$port]
  monitor_window_s: $WINDOW
  stop_timeout_s: 2
restart_backoff: {initial_s: 0.5, max_s: 5}
YAML
    "$BIN/pkgstore-agent" --config "$dir/agent.yaml" > "$dir/agent.log" 2>&1 &
    PIDS+=($!)
}

NODES=(edge-canary edge-dev edge-prod)
say "Start three edge nodes. Each runs pkgstore-agent, which starts fake collector v1 as its child."
note "each node gets its own credential (pkgstore-token issue --node NAME --label ...):"
note "the server keeps only its SHA-256, and the labels pinned there are the ones that count"
start_node edge-canary 'canary: "true", env: dev' --label canary=true --label env=dev
start_node edge-dev 'env: dev' --label env=dev
start_node edge-prod 'env: prod' --label env=prod
note "edge-canary: canary=true env=dev    edge-dev: env=dev    edge-prod: env=prod"
note "monitor window: $WINDOW s for this demo (the default is 60 s)"
in_fleet() { [ "$(api /v1/agents | jq '.nodes | length')" = 3 ]; }
wait_until 15 in_fleet || die "the agents did not check in"

fleet() {
    printf '\n   %-12s %-22s %-8s %-9s %-14s %s\n' NODE LABELS RUNNING STATE "LAST STATUS" MESSAGE
    api /v1/agents | jq -r '.nodes[] |
        [.id, (.labels | to_entries | map("\(.key)=\(.value)") | join(",")),
         (.packages[0].version // "-"), (.packages[0].state // "-"),
         (.last_status.status // "-"), (.last_status.message // "")] | @tsv' |
    while IFS=$'\t' read -r id labels version state status message; do
        printf '   %-12s %-22s %-8s %-9s %-14s %s\n' "$id" "$labels" "$version" "$state" "$status" "${message:0:100}"
    done
}
node_status() { jq -r '.packages[0].status + " " + (.packages[0].version // "")' "$WORK/$1/state/state.json" 2>/dev/null; }
status_is() { [[ "$(node_status "$1")" == $2 ]]; } # NODE PATTERN
healthy() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$(cat "$WORK/$1/health_port")/"; }
all_healthy() { local n; for n in "${NODES[@]}"; do healthy "$n" || return 1; done; }
wait_until 10 all_healthy || die "a v1 collector is not healthy"
say "The fleet view (GET /v1/agents): every node runs v1 and is healthy."
fleet

# ------------------------------------------------------------------ uploads
say "Upload two new collector versions: v2 (good) and v3 (crashes one second after it starts)."
show push --name otelcol --version 2.0.0 "$BIN/fake-otelcol-v2"
show push --name otelcol --version 3.0.0 "$BIN/fake-otelcol-v3"

# ------------------------------------------------------------------ v2 to the canary ring
say "Roll v2 out to the canary ring only: a policy with the selector canary=true."
show policy set canary --package otelcol --version 2.0.0 --selector canary=true --priority 10
note "the canary's agent downloads v2, checks its SHA-256, runs 'otelcol --config ... validate',"
note "swaps it in (keeping otelcol.bak), and watches it for $WINDOW s before declaring it Upgraded."
wait_until 30 status_is edge-canary "Upgraded 2.0.0" || die "the canary did not upgrade"
say "edge-canary reported every step to the server (its history):"
api /v1/agents/edge-canary | jq -r '.history[] | "   \(.time)  \(.status)  \(.version // "")  \(.message // "")"' | tail -6
say "Only the canary moved; dev and prod still run v1:"
fleet

# ------------------------------------------------------------------ v2 to everyone
say "The canary is healthy, so roll v2 out to everyone (a lower-priority policy with no selector)."
show policy set everyone --package otelcol --version 2.0.0 --priority 1
all_v2() { local n; for n in "${NODES[@]}"; do status_is "$n" "Upgraded 2.0.0" || return 1; done; }
wait_until 30 all_v2 || die "the fleet did not reach v2"
wait_until 10 all_healthy || die "a v2 collector is not healthy"
say "Every node now runs v2:"
fleet

# ------------------------------------------------------------------ v3 to the canary ring
say "Now roll v3 out to the canary ring. v3 passes validation, starts, then crashes after a second."
show policy set canary --package otelcol --version 3.0.0 --selector canary=true --priority 10
note "the agent sees v3 die inside the monitor window, stops it, restores otelcol.bak (v2),"
note "restarts v2 and reports RolledBack. It remembers v3's digest and will not retry it."
wait_until 40 status_is edge-canary "RolledBack *" || die "the canary did not roll back"
wait_until 10 healthy edge-canary || die "the canary is not healthy after the rollback"
say "edge-canary's history for v3:"
api /v1/agents/edge-canary | jq -r '.history[] | select(.version == "3.0.0") | "   \(.time)  \(.status)  \(.message // "")"'
say "The fleet: the canary is back on v2 and healthy; its last status says why v3 was rolled back."
fleet
printf '\n   '; show "$WORK/edge-canary/bin/otelcol" --version
say "Policies and their rollout state:"
policy ls | sed 's/^/   /'

# ------------------------------------------------------------------ a staged rollout that brakes
say "Roll v3 out to everyone else in batches: one node first, then the rest; any failure pauses it."
show policy set everyone --package otelcol --version 3.0.0 --priority 1 \
    --batches 1,100% --soak 5 --max-failures 0
note "pkgstored admits the node that ranks first (a hash of node id and policy), waits for it,"
note "and pauses the rollout by itself when it fails: the other node is never offered v3."
rollout_state() { api /v1/policies/everyone | jq -r '.status.rollout.state'; }
paused() { [ "$(rollout_state)" = paused ]; }
wait_until 60 paused || die "the rollout did not pause itself"
say "The rollout paused itself and says why (pkgstore-policy status everyone):"
policy status everyone | sed 's/^/   /'
say "The fleet: one node rolled back from v3, the other was never offered it."
fleet
say "The audit log of the policy (pkgstore-policy audit everyone):"
policy audit everyone | sed 's/^/   /'

say "Done in $((SECONDS - START)) s. Stopping the three agents (each stops its collector) and pkgstored."
