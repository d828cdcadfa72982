#!/bin/bash
# pkgstore-agent with server.protocol: opamp (docs/opamp.md) against a
# scripted OpAMP server (tests/fixtures/opamp-stand-in.py, protoc inside):
# what the agent sends (golden text, masked), its instance_uid across
# restarts and new_instance_uid, sequence_num, an offer installed through
# the six steps reported as PackageStatuses, a validation failure and a
# rollback, throttling (503 + Retry-After, ServerErrorResponse), a garbage
# answer, and the server's heartbeat interval.
#
# The stand-in answers what DIR/default.txt says; OPAMP_URL can later point
# the same steps at pkgstored's POST /v1/opamp.
. "$(dirname "$0")/lib/agent.sh"
: "${PKGSTORE_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
echo "1..20"

SRV=$T/srv
mkdir -p "$SRV"
python3 "$PKGSTORE_SRC/tests/fixtures/opamp-stand-in.py" --dir "$SRV" \
    --proto-dir "$PKGSTORE_SRC/proto" --port-file "$T/port" 2> "$T/stand-in.log" &
PIDS+=($!)
wait_until 10 test -s "$T/port" || { echo "Bail out! the stand-in did not start"; exit 1; }
URL="http://127.0.0.1:$(cat "$T/port")"
export SRV

# answer DIR-relative-file TEXT: replace an answer file whole
answer() { printf '%s\n' "$2" > "$SRV/$1.tmp" && mv "$SRV/$1.tmp" "$SRV/$1"; }
# queue TEXT: a one-shot answer, before the default ones
QN=0
queue() { QN=$((QN + 1)); printf '%s\n' "$1" > "$SRV/queue/$QN.tmp" && mv "$SRV/queue/$QN.tmp" "$SRV/queue/$(printf %04d $QN)"; }
answer default.txt 'instance_uid: @UID@
capabilities: 25'

# the node's requests, in order
node_records() { grep -l "string_value: \"$1\"" "$SRV"/records/*.txt 2>/dev/null | sort; }
count_of() { node_records "$1" | wc -l; }
last_of() { node_records "$1" | tail -1; }
field() { sed -n "s/^$1: //p" "$2"; }
# "Enum error_message" of the one package status of a record
pkg_status() {
    # proto3 leaves out the value 0: no status line is Installed
    awk 'BEGIN {s = "Installed"} /^package_statuses/ {p = 1}
         p && /status: PackageStatusEnum_/ {s = $2; sub(/^PackageStatusEnum_/, "", s)}
         p && /error_message:/ {sub(/^ *error_message: /, ""); m = $0}
         END {print s, m}' "$1"
}
statuses_of() { local f; for f in $(node_records "$1"); do pkg_status "$f"; done | uniq; }
count_ge() { [ "$(count_of "$1")" -ge "$2" ]; }   # NODE N: N requests or more
# NODE FILE: one of the node's requests was answered from FILE
answered() { local f; for f in $(node_records "$1"); do grep -qx "$2" "${f%.txt}.answer" && return 0; done; return 1; }
export -f node_records count_of last_of field pkg_status statuses_of count_ge answered

opamp_node() { # DIR [window]
    new_node "$1" "$URL" "${2:-2}"
    sed -i 's/^server:$/server:\n  protocol: opamp/' "$1/agent.yaml"
}

# An artifact the stand-in serves; prints its hex digest.
blob() { local h; h=$(sha "$1"); cp "$1" "$SRV/blobs/sha256:$h"; echo "$h"; }
# signed_entry FILE VERSION: a PackagesAvailable as pkgstored makes it, for
# the primary under the empty name: file.signature names the manifest,
# which the stand-in serves as a blob.
signed_entry() {
    local h size m
    h=$(blob "$1"); size=$(stat -c %s "$1")
    printf '{"schemaVersion":1,"name":"otelcol","version":"%s","type":"primary","artifacts":[{"platform":"linux/amd64","digest":"sha256:%s","size":%s,"format":"binary","entrypoint":"otelcol"}],"dependencies":[],"created":"2026-01-01T00:00:00Z","annotations":{}}' \
        "$2" "$h" "$size" > "$T/manifest-$2.json"
    m=$(blob "$T/manifest-$2.json")
    printf '{"manifest":"sha256:%s","signatures":[]}' "$m" > "$T/signature-$2.json"
    printf 'instance_uid: @UID@\ncapabilities: 25\npackages_available {\n  packages { key: "" value { type: PackageType_TopLevel version: "%s" file { download_url: "@BASE@/v1/blobs/sha256:%s" content_hash: @HEX:%s@ signature: @FILE:%s@ } hash: @HEX:%s@ } }\n  all_packages_hash: @HEX:%s@\n}' \
        "$2" "$h" "$h" "$T/signature-$2.json" "${h:0:8}" "${h:8:8}"
}
# plain_entry FILE VERSION: as another OpAMP server would offer it (no
# pkgstore signature JSON), under the package's own name
plain_entry() {
    local h; h=$(blob "$1")
    printf 'instance_uid: @UID@\ncapabilities: 25\npackages_available {\n  packages { key: "otelcol" value { type: PackageType_TopLevel version: "%s" file { download_url: "@BASE@/v1/blobs/sha256:%s" content_hash: @HEX:%s@ } } }\n  all_packages_hash: @HEX:01@\n}' \
        "$2" "$h" "$h"
}

N1=$T/n1
opamp_node "$N1"
check "server.protocol: a bad value is refused with a clear error" bash -c \
    'sed "s/protocol: opamp/protocol: grpc/" "$0/agent.yaml" > "$0/bad.yaml"; ! "$1/pkgstore-agent" --config "$0/bad.yaml" --check-config > "$0/bad.out" 2>&1 && grep -q "server.protocol: must be pkgstore or opamp" "$0/bad.out"' "$N1" "$B"
start_agent "$N1"
check "the agent sends AgentToServer messages as application/x-protobuf" bash -c \
    'wait_until 10 count_ge n1 3 && [ "$(cat "${0%.txt}.type")" = application/x-protobuf ]' "$SRV/records/0001.txt"

# capabilities and attributes: the first message, its variable fields masked
mask() {
    awk '/^instance_uid:/ {print "instance_uid: <uid>"; next}
         /^sequence_num:/ {print "sequence_num: <seq>"; next}
         /agent_has_hash:/ {sub(/agent_has_hash: .*/, "agent_has_hash: <digest>")}
         masknext && /string_value:/ {sub(/string_value: .*/, "string_value: <masked>"); masknext = 0}
         /key: "(service.version|host.arch|os.type)"/ {masknext = 1}
         {print}' "$1"
}
mask "$(node_records n1 | head -1)" > "$T/first.txt"
check "capabilities, attributes, health and status match the golden text" \
    diff -u "$PKGSTORE_SRC/tests/fixtures/opamp/agent_to_server_first.txt" "$T/first.txt"
check "sequence_num grows by one per message, from 0" bash -c \
    'i=0; for f in $(node_records n1); do [ "$(field sequence_num "$f")" = "$i" ] || [ "$i" = 0 -a -z "$(field sequence_num "$f")" ] || exit 1; i=$((i + 1)); done'
UID1=$(field instance_uid "$(last_of n1)")
check "instance_uid is 16 bytes kept in state_dir/opamp/instance_uid (0600, a UUIDv7)" bash -c \
    '[ "$(stat -c %a "$0/state/opamp/instance_uid")" = 600 ] && grep -Eq "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$" "$0/state/opamp/instance_uid"' "$N1"

stop_agent "$N1"
before=$(count_of n1); last_seq=$(field sequence_num "$(last_of n1)")
start_agent "$N1"
wait_until 10 count_ge n1 $((before + 1))
first_after=$(node_records n1 | sed -n "$((before + 1))p")
check "a restarted agent keeps its instance_uid" test "$(field instance_uid "$first_after")" = "$UID1"
check "... and goes on with the next sequence_num" test "$(field sequence_num "$first_after")" = "$((last_seq + 1))"

queue 'instance_uid: @UID@
agent_identification { new_instance_uid: @HEX:0190a1b2c3d47e5f8a0b1c2d3e4f5061@ }'
check "new_instance_uid is taken, persisted, and sent from then on" bash -c \
    'wait_until 10 grep -qx 0190a1b2-c3d4-7e5f-8a0b-1c2d3e4f5061 "$0/state/opamp/instance_uid" && n=$(count_of n1) && wait_until 10 count_ge n1 $((n + 1)) && [ "$(field instance_uid "$(last_of n1)")" = "$2" ]' \
    "$N1" "$UID1" '"\001\220\241\262\303\324~_\212\013\034->OPa"'

# --- an offer as pkgstored makes it: installed through the six steps
make_variant v2 "$T/v2" opamp-v2
answer default.txt "$(signed_entry "$T/v2" 2.0.0)"
check "the offer is installed: 2.0.0 runs, healthy" bash -c \
    'wait_until 30 status_is "$0" Upgraded && [ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$N1"
check "the offer was completed from the manifest the signature names" \
    grep -q "GET /v1/blobs/sha256:$(sha "$T/manifest-2.0.0.json")" "$T/stand-in.log"
check "statuses: Downloading, Installing (Verifying, Validating, Swapping, Monitoring), Installed" bash -c \
    'wait_until 10 bash -c "grep -q \"agent_has_version: \\\"2.0.0\\\"\" \"\$(last_of n1)\"" && statuses_of n1 | tr "\n" "|" | grep -q "Downloading |Installing \"Verifying\"|Installing \"Validating\"|Installing \"Swapping\"|Installing \"Monitoring\"|Installed |"' || statuses_of n1 | sed 's/^/# /'
check "Installed reports the new version and the offer's hash" bash -c \
    'f=$(last_of n1); [ "$(pkg_status "$f")" = "Installed " ] && grep -q "server_offered_version: \"2.0.0\"" "$f" && grep -q "server_provided_all_packages_hash:" "$f"'

# --- a validation failure: InstallFailed "validation failed: ...", 2.0.0 kept
make_variant validate-fails "$T/v3" opamp-v3
answer default.txt "$(signed_entry "$T/v3" 3.0.0)"
check "validate fails: InstallFailed \"validation failed: ...\"" bash -c \
    'wait_until 20 status_is "$0" UpgradeFailed && wait_until 5 bash -c "pkg_status \"\$(last_of n1)\" | grep -q \"^InstallFailed \\\"validation failed: validate: exit 1\""' "$N1"
check "validate fails: 2.0.0 still runs, healthy" bash -c \
    '[ "$(collector_version "$0")" = 2.0.0 ] && node_healthy "$0"' "$N1"

# --- a crash in the monitor window, offered as another OpAMP server would
make_variant crashes-after "$T/v4" opamp-v4
answer default.txt "$(plain_entry "$T/v4" 4.0.0)"
check "crash: InstallFailed \"rolled back: ...\" (a best-effort offer, no signature)" bash -c \
    'wait_until 30 status_is "$0" RolledBack && wait_until 5 bash -c "pkg_status \"\$(last_of n1)\" | grep -q \"^InstallFailed \\\"rolled back: \""' "$N1"
check "crash: the old collector (2.0.0) runs again, healthy" bash -c \
    'wait_until 10 node_healthy "$0" && [ "$(collector_version "$0")" = 2.0.0 ]' "$N1"

# --- throttling and bad answers: the agent waits as asked, the collector runs on
answer default.txt 'instance_uid: @UID@
capabilities: 25'
mark=$(log_count "$N1" 'msg="server reachable again"')
queue '#http 503 3'
check "503 + Retry-After: 3 waits 3 s (over retry_max_s) and recovers" bash -c \
    'wait_until 15 bash -c "[ \$(log_count \"\$0\" \"msg=\\\"server reachable again\\\"\") -gt $1 ]" "$0" && grep -q "heartbeat failed.*HTTP 503.*retry_in_s=3.00" "$0/agent.log"' "$N1" "$mark"
mark=$(log_count "$N1" 'msg="server reachable again"')
queue 'instance_uid: @UID@
error_response { type: ServerErrorResponseType_Unavailable error_message: "draining" retry_info { retry_after_nanoseconds: 3000000000 } }'
check "ServerErrorResponse Unavailable with RetryInfo: waits 3 s and recovers" bash -c \
    'wait_until 15 bash -c "[ \$(log_count \"\$0\" \"msg=\\\"server reachable again\\\"\") -gt $1 ]" "$0" && grep -q "heartbeat failed.*ServerErrorResponse Unavailable: draining.*retry_in_s=3.00" "$0/agent.log"' "$N1" "$mark"
mark=$(log_count "$N1" 'msg="server reachable again"')
queue '#garbage'
check "a garbage answer: a clear log line, recovered, collector still healthy" bash -c \
    'wait_until 15 bash -c "[ \$(log_count \"\$0\" \"msg=\\\"server reachable again\\\"\") -gt $1 ]" "$0" && grep -q "heartbeat failed.*the response is not a ServerToAgent message" "$0/agent.log" && node_healthy "$0" && [ "$(collector_version "$0")" = 2.0.0 ]' "$N1" "$mark"

# --- heartbeat_interval_seconds: n2 obeys the server; n1 is the clock
N2=$T/n2
opamp_node "$N2"
sed -i 's/obey_server_interval: false/obey_server_interval: true/; s/interval_s: 0.5/interval_s: 0.2/' "$N2/agent.yaml"
start_agent "$N2"
wait_until 10 count_ge n2 5
answer default-n2.txt 'instance_uid: @UID@
connection_settings { opamp { heartbeat_interval_seconds: 3600 } }'
wait_until 10 answered n2 default-n2.txt
n2_then=$(count_of n2); n1_then=$(count_of n1)
wait_until 30 count_ge n1 $((n1_then + 12))
check "heartbeat_interval_seconds 3600 obeyed: n2 silent while n1 sent 12 requests" \
    test "$(count_of n2)" -le $((n2_then + 1))

[ "$FAILED" = 0 ] || { diag "== n1"; dump "$N1/agent.log"; diag "== n2"; dump "$N2/agent.log"; dump "$T/stand-in.log"; }
