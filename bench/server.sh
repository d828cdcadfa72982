#!/usr/bin/env bash
# bench/server.sh - pkgstored against nginx, side by side in one run.
#
#  1. Blob download: a 100 MB blob over loopback, pkgstored (sendfile from
#     the store) against nginx serving the same file with sendfile on.
#     Median throughput of $DL_RUNS downloads each. Target: >= 0.9x nginx.
#  2. Heartbeats: wrk -t2 -c64 with a Lua script POSTing realistic heartbeats
#     for 10,000 distinct node ids against 20 policies, against nginx
#     serving a 200-byte static file. Median req/s of $HB_RUNS runs each,
#     and pkgstored's p99 latency. Target: >= 0.5x nginx's req/s.
#  3. Memory: pkgstored's RSS after 100,000 distinct nodes have heartbeated
#     (new ids unthrottled: --new-nodes-rate 0). Target: <= 256 MB.
#  4. HTTPS: pkgstored with --tls-cert/--tls-key (libmicrohttpd over GnuTLS)
#     against nginx serving the same certificate (OpenSSL), ECDSA P-256
#     made here by the openssl command line. Heartbeats as in 2, over
#     keep-alive connections (target >= 0.5x nginx's req/s), and the 100 MB
#     download as in 1 with curl verifying the chain (target >= 0.8x nginx).
#
# nginx and wrk are installed from Debian when missing. Everything runs on
# 127.0.0.1 with free ports; every process started here is stopped by pid.
# Knobs: DL_RUNS (default 9), HB_RUNS (5), HB_SECONDS (6), BENCH_NICE (19),
# SECTIONS (default "download heartbeats memory https": which to run).
set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
DL_RUNS=${DL_RUNS:-9}
HB_RUNS=${HB_RUNS:-5}
HB_SECONDS=${HB_SECONDS:-6}
SECTIONS=" ${SECTIONS:-download heartbeats memory https} "
want() { [[ "$SECTIONS" == *" $1 "* ]]; }
NICE="nice -n ${BENCH_NICE:-19}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkgstore-bench.XXXXXX")
. "$SRC/bench/lib.sh"

cleanup() {
    stop_started
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "bench/server.sh: $*" >&2; exit 1; }

install_missing() { # install_missing COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    echo "bench/server.sh: installing $2 from Debian" >&2
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$2" \
        || { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             $sudo apt-get install -y -q --no-install-recommends "$2"; } \
        || die "cannot install $2"
}
install_missing nginx nginx-light
install_missing wrk wrk
install_missing jq jq
install_missing openssl openssl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$BIN/pkgstored" ] || die "$BIN/pkgstored not built (run make)"

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ---------------------------------------------------------------- servers
start_server() { # start_server STORE [pkgstored options]
    local store=$1
    shift
    start_pkgstored "$store" --log-level warn --new-nodes-rate 0 "$@"
    PK_URL=$URL
    TOKEN=$(cat "$store.admin-token")
    AGENT_TOKEN=$(cat "$store.agent-token")
}

stop_pkgstored() {
    kill "$PKGSTORED_PID" 2>/dev/null
    wait "$PKGSTORED_PID" 2>/dev/null
}

mkdir -p "$WORK/www" "$WORK/nginx" "$WORK/tls"
NGINX_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
# One certificate for both servers (section 4): a CA and a server
# certificate for 127.0.0.1, ECDSA P-256.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$WORK/tls/ca.key" -out "$WORK/tls/ca.pem" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
        -keyout "$WORK/tls/server.key" -out "$WORK/tls/server.csr" 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/tls/server.ext" &&
    openssl x509 -req -in "$WORK/tls/server.csr" -CA "$WORK/tls/ca.pem" -CAkey "$WORK/tls/ca.key" \
        -CAcreateserial -days 1 -extfile "$WORK/tls/server.ext" -out "$WORK/tls/server.pem" \
        2>/dev/null || die "openssl could not make the certificates"
cat >"$WORK/nginx/nginx.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes $(nproc);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    types { application/octet-stream bin; application/json json; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $WORK/tls/server.pem;
        ssl_certificate_key $WORK/tls/server.key;
        root $WORK/www;
    }
}
CONF
$NICE "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
NG_URL="http://127.0.0.1:$NGINX_PORT"
NG_TLS_URL="https://127.0.0.1:$NGINX_TLS_PORT"

# ---------------------------------------------------------------- 1. blob download
head -c 100000000 /dev/urandom >"$WORK/www/blob.bin"
start_server "$WORK/store"
BLOB=$(curl -s -H "Authorization: Bearer $TOKEN" --data-binary @"$WORK/www/blob.bin" "$PK_URL/v1/blobs" | jq -r .digest)
[ "$(sha256sum "$WORK/www/blob.bin" | cut -c1-64)" = "${BLOB#sha256:}" ] || die "upload failed"
for _ in $(seq 1 50); do curl -s -o /dev/null "$NG_URL/blob.bin" && break; sleep 0.1; done
# download_runs PKGSTORED_URL NGINX_URL TARGET [curl options]: median MB/s of
# each, interleaved so that both see the same machine load
download_runs() {
    local pk=$1 ng=$2 target=$3
    shift 3
    : >"$WORK/dl.pk"
    : >"$WORK/dl.ng"
    for _ in $(seq 1 "$DL_RUNS"); do
        curl -s -o /dev/null -w '%{speed_download}\n' "$@" -H "Authorization: Bearer $AGENT_TOKEN" \
            "$pk/v1/blobs/$BLOB" >>"$WORK/dl.pk"
        curl -s -o /dev/null -w '%{speed_download}\n' "$@" "$ng/blob.bin" >>"$WORK/dl.ng"
    done
    PK_DL=$(median <"$WORK/dl.pk")
    NG_DL=$(median <"$WORK/dl.ng")
    awk -v p="$PK_DL" -v n="$NG_DL" -v t="$target" 'BEGIN {
        printf "  pkgstored  %8.0f MB/s\n  nginx      %8.0f MB/s\n  ratio      %8.2fx nginx (target >= %s)\n",
            p / 1e6, n / 1e6, p / n, t }'
}
if want download; then
    echo "== blob download: 100 MB over loopback, $DL_RUNS runs each (median)"
    download_runs "$PK_URL" "$NG_URL" 0.90
fi

# ---------------------------------------------------------------- 2. heartbeats
head -c 2000000 /dev/urandom >"$WORK/otelcol"
for v in $(seq 90 109); do
    curl -s -o /dev/null -f -H "Authorization: Bearer $TOKEN" -T "$WORK/otelcol" \
        "$PK_URL/v1/packages/otelcol-contrib/0.$v.0?platform=linux/amd64" || die "package upload failed"
done
for r in $(seq 0 19); do
    curl -s -o /dev/null -f -X PUT -H "Authorization: Bearer $TOKEN" "$PK_URL/v1/policies/ring-$r" \
        -d "{\"selector\":\"env=prod,ring=$r\",\"package\":\"otelcol-contrib\",\"version\":\"0.$((90 + r)).0\",\"priority\":$r}" \
        || die "policy upload failed"
done
cat >"$WORK/hb.lua" <<'LUA'
-- Realistic heartbeats: node ids edge-00000.., labels spread over 20 rings,
-- one running collector with a status now and then.
local nodes = tonumber(os.getenv("HB_NODES") or "10000")
local token = os.getenv("HB_TOKEN")
local thread_count = 0
local counter = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
end
function init(args)
    tid = tonumber(tid) or 0  -- set per thread by setup()
    counter = 0
end
local statuses = {"Downloading", "Verifying", "Validating", "Swapping", "Monitoring", "Upgraded"}
request = function()
    local id = (counter * 2 + tid) % nodes
    counter = counter + 1
    local status = ""
    if counter % 7 == 0 then
        status = string.format(',"offer":{"version":"0.%d.0","digest":"sha256:%064d"},"status":"%s"',
            90 + id % 20, id, statuses[(counter / 7) % 6 + 1])
    end
    local body = string.format(
        '{"node_id":"edge-%05d","labels":{"env":"prod","ring":"%d","region":"eu-west-%d","team":"observability"},' ..
        '"platform":"linux/amd64","agent_version":"0.1.0","packages":[{"name":"otelcol-contrib",' ..
        '"type":"primary","version":"0.97.0","digest":"sha256:%064d","state":"Running"%s}]}',
        id, id % 20, id % 3, 97, status)
    return wrk.format("POST", "/v1/agents/heartbeat",
        {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
LUA
head -c 200 /dev/urandom | base64 -w0 | head -c 200 >"$WORK/www/static.json"
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_p99() { # in ms
    awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                       else if (v ~ /ms$/) sub(/ms$/, "", v);
                       else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; print v }' "$1"
}
# heartbeat_runs PKGSTORED_URL NGINX_URL: wrk keeps its connections alive
# (HTTP/1.1) and does not check certificates; every node heartbeats once
# first, so that the runs measure known nodes.
heartbeat_runs() {
    local pk=$1 ng=$2
    HB_NODES=10000 HB_TOKEN=$AGENT_TOKEN wrk -t2 -c64 -d3s -s "$WORK/hb.lua" "$pk" >/dev/null
    : >"$WORK/hb.pk"
    : >"$WORK/hb.ng"
    : >"$WORK/p99.pk"
    : >"$WORK/p99.ng"
    for _ in $(seq 1 "$HB_RUNS"); do
        HB_NODES=10000 HB_TOKEN=$AGENT_TOKEN $NICE wrk -t2 -c64 -d"${HB_SECONDS}s" --latency \
            -s "$WORK/hb.lua" "$pk" >"$WORK/wrk.pk"
        grep -q 'Non-2xx' "$WORK/wrk.pk" && { cat "$WORK/wrk.pk"; die "heartbeats failed"; }
        wrk_rps "$WORK/wrk.pk" >>"$WORK/hb.pk"
        wrk_p99 "$WORK/wrk.pk" >>"$WORK/p99.pk"
        $NICE wrk -t2 -c64 -d"${HB_SECONDS}s" --latency "$ng/static.json" >"$WORK/wrk.ng"
        wrk_rps "$WORK/wrk.ng" >>"$WORK/hb.ng"
        wrk_p99 "$WORK/wrk.ng" >>"$WORK/p99.ng"
    done
    PK_RPS=$(median <"$WORK/hb.pk")
    NG_RPS=$(median <"$WORK/hb.ng")
    PK_P99=$(median <"$WORK/p99.pk")
    NG_P99=$(median <"$WORK/p99.ng")
    awk -v p="$PK_RPS" -v n="$NG_RPS" -v pp="$PK_P99" -v np="$NG_P99" 'BEGIN {
        printf "  pkgstored heartbeats  %9.0f req/s  p99 %7.2f ms\n", p, pp
        printf "  nginx 200-byte file   %9.0f req/s  p99 %7.2f ms\n", n, np
        printf "  ratio                 %9.2fx nginx (target >= 0.50)\n", p / n }'
}
if want heartbeats; then
    echo "== heartbeats: wrk -t2 -c64 ${HB_SECONDS}s, 10,000 nodes, 20 policies, $HB_RUNS runs each (median)"
    heartbeat_runs "$PK_URL" "$NG_URL"
    METRICS=$(curl -s -H "Authorization: Bearer $TOKEN" "$PK_URL/metrics")
    echo "  nodes known: $(echo "$METRICS" | awk '/^pkgstored_nodes_known/ {print $2}')," \
         "RSS $(awk '/^VmRSS:/ {printf "%.1f MB", $2/1024}' "/proc/$PKGSTORED_PID/status")"
fi

# ---------------------------------------------------------------- 3. memory
if want memory; then
echo "== memory: RSS after 100,000 distinct nodes"
RSS_BEFORE=$(awk '/^VmRSS:/ {print $2}' "/proc/$PKGSTORED_PID/status")
for _ in $(seq 1 12); do
    HB_NODES=100000 HB_TOKEN=$AGENT_TOKEN wrk -t2 -c64 -d10s -s "$WORK/hb.lua" "$PK_URL" >/dev/null
    KNOWN=$(curl -s -H "Authorization: Bearer $TOKEN" "$PK_URL/metrics" | awk '/^pkgstored_nodes_known/ {print $2}')
    [ "${KNOWN:-0}" -ge 100000 ] && break
done
RSS_AFTER=$(awk '/^VmRSS:/ {print $2}' "/proc/$PKGSTORED_PID/status")
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$PKGSTORED_PID/status")
echo "  nodes known: $KNOWN"
awk -v b="$RSS_BEFORE" -v a="$RSS_AFTER" -v h="$HWM" -v k="$KNOWN" 'BEGIN {
    printf "  RSS %.1f MB (peak %.1f MB); %.1f MB at 10,000 nodes -> %.0f bytes per extra node\n",
        a / 1024, h / 1024, b / 1024, (a - b) * 1024 / (k - 10000) }'
fi
stop_pkgstored

# ---------------------------------------------------------------- 4. HTTPS
if want https; then
    # the same store (blob, packages, policies, nodes) served over HTTPS
    start_server "$WORK/store" --tls-cert "$WORK/tls/server.pem" --tls-key "$WORK/tls/server.key"
    PK_TLS_URL=${PK_URL/http:/https:}
    curl -s -o /dev/null --cacert "$WORK/tls/ca.pem" "$PK_TLS_URL/healthz" ||
        die "pkgstored does not answer over HTTPS: $(tail -3 "$WORK/pkgstored.log")"
    curl -s -o /dev/null --cacert "$WORK/tls/ca.pem" "$NG_TLS_URL/static.json" ||
        die "nginx does not answer over HTTPS: $(tail -3 "$WORK/nginx/error.log")"
    echo "== HTTPS heartbeats (same certificate, keep-alive): wrk -t2 -c64 ${HB_SECONDS}s, $HB_RUNS runs each (median)"
    heartbeat_runs "$PK_TLS_URL" "$NG_TLS_URL"
    echo "== HTTPS blob download: 100 MB, curl verifying the chain, $DL_RUNS runs each (median)"
    download_runs "$PK_TLS_URL" "$NG_TLS_URL" 0.80 --cacert "$WORK/tls/ca.pem"
    echo "  TLS: $(curl -s -o /dev/null -w '%{ssl_verify_result}' --cacert "$WORK/tls/ca.pem" "$PK_TLS_URL/healthz" |
        sed 's/^0$/certificate verified/') ($(openssl s_client -connect "${PK_TLS_URL#https://}" \
        -CAfile "$WORK/tls/ca.pem" </dev/null 2>/dev/null | awk '/^New, / {print $2, $NF}'))"
    stop_pkgstored
fi
