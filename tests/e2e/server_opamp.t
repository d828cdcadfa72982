#!/usr/bin/env bash
# OpAMP over HTTP against the real pkgstored (docs/opamp.md): messages
# written as text, encoded and decoded with protoc, posted with curl.
# Capabilities and instance_uid echo; ReportFullState for an unknown agent,
# a sequence gap and after a restart; RequestInstanceUid; the description
# as a node with labels and platform; a policy's offer as PackagesAvailable
# (absolute URL with Range, content hash, stable all_packages_hash); none
# without AcceptsPackages; PackageStatuses in the history and the rollout
# counts; gzip, content type, garbage, the 16-byte uid rule, 413 for a large
# body and a gzip bomb; a per-node credential for another node; JSON and
# OpAMP nodes side by side; --opamp-primary-empty-name with a tar.gz
# artifact shaped like the upstream supervisor's offer.
. "$(dirname "$0")/server_common.sh"

command -v protoc >/dev/null || { echo "Bail out! protoc is not installed (make deps)"; exit 1; }
FIX="$SRC/tests/fixtures/opamp"
PROTO=(-I"$SRC/proto" "$SRC/proto/opamp.proto")
UID1='\001\002\003\004\005\006\007\010\t\n\013\014\r\016\017\020'
UID2='\041\042\043\044\045\046\047\050\051\052\053\054\055\056\057\060'
CAPS=25 # ReportsStatus | AcceptsPackages | ReportsPackageStatuses

# msg UID SEQ CAPS [TEXT]: an AgentToServer as text
msg() { printf 'instance_uid: "%s"\nsequence_num: %s\ncapabilities: %s\n%s\n' "$1" "$2" "$3" "${4:-}"; }

# desc ID: an agent description (two attributes that are no labels)
desc() {
    cat <<EOF
agent_description {
  identifying_attributes { key: "service.instance.id" value { string_value: "$1" } }
  identifying_attributes { key: "service.name" value { string_value: "otelcol" } }
  non_identifying_attributes { key: "service.version" value { string_value: "0.9.0" } }
  non_identifying_attributes { key: "os.type" value { string_value: "linux" } }
  non_identifying_attributes { key: "host.arch" value { string_value: "x86_64" } }
  non_identifying_attributes { key: "host.name" value { string_value: "box-1" } }
  non_identifying_attributes { key: "pkgstore.label.env" value { string_value: "dev" } }
  non_identifying_attributes { key: "bad key!" value { string_value: "x" } }
  non_identifying_attributes { key: "zone" value { string_value: "not a label value" } }
  non_identifying_attributes { key: "cores" value { int_value: 4 } }
}
EOF
}

# post TOKEN FILE [curl args]: POST FILE; sets STATUS, CTYPE, REPLY (decoded)
post() {
    local token=$1 file=$2
    shift 2
    STATUS=$(curl -s -D "$TMP/headers" -o "$TMP/reply.bin" -w '%{http_code}' \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/x-protobuf' \
        --data-binary @"$file" "$@" "$URL/v1/opamp")
    CTYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: \(.*\)\r$/\1/p' "$TMP/headers")
    REPLY=$(protoc --decode=opamp.proto.v1.ServerToAgent "${PROTO[@]}" <"$TMP/reply.bin" 2>&1)
}

# send TOKEN TEXT [curl args]: encode TEXT, then post it
send() {
    local token=$1
    printf '%s\n' "$2" >"$TMP/msg.txt"
    shift 2
    if ! protoc --encode=opamp.proto.v1.AgentToServer "${PROTO[@]}" <"$TMP/msg.txt" \
        >"$TMP/msg.bin"; then
        STATUS=encode-failed
        return
    fi
    post "$token" "$TMP/msg.bin" "$@"
}

# field NAME: the first "NAME: ..." of REPLY, quotes removed
field() {
    printf '%s\n' "$REPLY" | sed -n -e "s/^ *$1: \"\(.*\)\"\$/\1/p" -e "t" -e "s/^ *$1: \(.*\)\$/\1/p" | head -n 1
}
# hex of a protoc text string (its escapes undone)
text_hex() {
    perl -e '$_ = shift; s/\\([0-7]{3})|\\(.)/defined $1 ? chr(oct($1)) : ($2 eq "n" ? "\n" : $2 eq "t" ? "\t" : $2 eq "r" ? "\r" : $2)/ge; print unpack("H*", $_)' "$1"
}
# hex -> a protoc text string of octal escapes
hex_text() { perl -e 'print join "", map { sprintf "\\%03o", $_ } unpack "C*", pack "H*", shift' "$1"; }
# REPLY with what varies masked (port, digests, hashes) and the header fields cut
masked() {
    printf '%s\n' "$REPLY" | sed -e 's|127\.0\.0\.1:[0-9]*|HOST|' -e 's|sha256:[0-9a-f]\{64\}|sha256:HEX|g' \
        -e 's,^\( *\)\(content_hash\|hash\|all_packages_hash\): ".*"$,\1\2: MASKED,' \
        -e '/^instance_uid:/d' -e '/^capabilities:/d' -e '/^flags:/d'
}
api() { curl -s -H "Authorization: Bearer $ADMIN" "$URL$1"; }
# wait_until SECONDS COMMAND...: poll every 0.1 s, bounded
wait_until() {
    local end=$((SECONDS + $1))
    shift
    while [ $SECONDS -le $end ]; do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

start_server
export PKGSTORE_SERVER=$URL PKGSTORE_TOKEN_FILE=$ADMIN_FILE

# ---- the first exchange: capabilities, instance_uid echo, full state asked
send "$AGENT" "$(msg "$UID1" 1 $CAPS)"
is "$STATUS|$CTYPE" "200|application/x-protobuf" "200 with exactly Content-Type: application/x-protobuf"
is "$REPLY" "$(cat "$FIX/first_reply.txt")" \
    "an unknown agent: its instance_uid echoed, ReportFullState, the server's capabilities"
req GET /v1/agents
is "$(json .total)" "0" "a message without a description records no node"

# ---- the full state: a node with labels, platform and agent version
send "$AGENT" "$(msg "$UID1" 2 $CAPS "$(desc edge-1)")"
is "$STATUS|$(field flags)|$(field capabilities)" "200||25" \
    "the next sequence_num: no ReportFullState; capabilities again"
req GET /v1/agents/edge-1
is "$STATUS|$(json .platform)|$(json .agent_version)" "200|linux/amd64|0.9.0" \
    "service.instance.id is the node id; os.type/host.arch (x86_64 normalized) the platform; service.version the agent version"
is "$(printf '%s' "$BODY" | jq -c .labels)" '{"env":"dev","host.name":"box-1","service.name":"otelcol"}' \
    "labels: pkgstore.label.env as env, service.name and host.name; invalid keys and values dropped"
req GET "/v1/agents?selector=env%3Ddev,service.name%3Dotelcol"
is "$(json '[.nodes[].id] | join(",")')" "edge-1" "a selector on the mapped labels matches the node"

send "$AGENT" "$(msg "$UID1" 7 $CAPS)"
is "$STATUS|$(field flags)" "200|1" "a sequence gap (2 -> 7): ReportFullState"
send "$AGENT" "$(msg "$UID1" 8 $CAPS)"
is "$(field flags)" "" "the next one after the gap is in order again"

# ---- RequestInstanceUid
send "$AGENT" "$(msg "$UID2" 1 0 'flags: 1')"
NEW_UID=$(text_hex "$(field new_instance_uid)")
is "${#NEW_UID}|${NEW_UID:12:1}|$(text_hex "$(field instance_uid)")" \
    "32|7|2122232425262728292a2b2c2d2e2f30" \
    "RequestInstanceUid: a new 16-byte UUIDv7 in agent_identification; the request's uid echoed"

# ---- offers as PackagesAvailable
printf 'collector one\n' >"$TMP/c1"
printf 'collector two, a longer binary\n' >"$TMP/c2"
"$BIN/pkgstore-push" --quiet --name otelcol --version 1.0.0 --platform linux/amd64 "$TMP/c1" >/dev/null
"$BIN/pkgstore-push" --quiet --name otelcol --version 2.0.0 --platform linux/amd64 "$TMP/c2" >/dev/null
"$BIN/pkgstore-policy" set base --selector env=dev --package otelcol --version 1.0.0 >/dev/null
ok $? "pkgstore-policy set base: otelcol 1.0.0 for env=dev"
send "$AGENT" "$(msg "$UID1" 9 $CAPS)"
is "$(masked)" "$(cat "$FIX/offer_primary.txt")" \
    "the policy's target is a PackagesAvailable entry (TopLevel, version, file, hashes)"
SHA1=$(sha256 "$TMP/c1")
is "$(text_hex "$(field content_hash)")" "$SHA1" "content_hash: the artifact's SHA-256, 32 raw bytes"
DL=$(field download_url)
is "$DL" "$URL/v1/blobs/sha256:$SHA1" "download_url: absolute, from the request's Host"
curl -s -H "Authorization: Bearer $AGENT" -o "$TMP/dl" "$DL"
cmp -s "$TMP/dl" "$TMP/c1"
ok $? "download_url serves the exact bytes"
is "$(curl -s -H "Authorization: Bearer $AGENT" -r 2-8 "$DL")" "llector" "... and honours Range"
SIG=$(field signature)
case "$SIG" in '{\"manifest\":\"sha256:'*'\",\"signatures\":[]}') r=0 ;; *) r=1 ;; esac
ok $r "signature: pkgstore's JSON with the manifest digest and its signatures"
HASH1=$(field all_packages_hash)
send "$AGENT" "$(msg "$UID1" 10 $CAPS)"
is "$(field all_packages_hash)" "$HASH1" "all_packages_hash is stable across polls"
send "$AGENT" "$(msg "$UID1" 11 8)"
is "$(field all_packages_hash)" "$HASH1" "... and does not depend on anything but the entries"
send "$AGENT" "$(msg "$UID1" 12 1)"
is "$STATUS|$(printf '%s\n' "$REPLY" | grep -c packages_available)" "200|0" \
    "no PackagesAvailable for an agent without AcceptsPackages"

# ---- PackageStatuses -> the history
HEX1=$(hex_text "$SHA1")
send "$AGENT" "$(msg "$UID1" 13 $CAPS 'package_statuses { packages { key: "otelcol" value { name: "otelcol" server_offered_version: "1.0.0" status: PackageStatusEnum_Downloading download_details { download_percent: 50 download_bytes_per_second: 1000 } } } }')"
req GET /v1/agents/edge-1
is "$STATUS|$(json '[.history[] | select(.status=="Downloading")][0].message')" \
    "200|50.0% at 1000 bytes/s" "Downloading: the history step, the download details in its message"
send "$AGENT" "$(msg "$UID1" 14 $CAPS 'package_statuses { packages { key: "otelcol" value { name: "otelcol" server_offered_version: "1.0.0" status: PackageStatusEnum_Installing error_message: "Verifying" } } }')"
req GET /v1/policies/base
is "$(json '.status.nodes[0].state')" "Verifying" "Installing with error_message Verifying: the Verifying step"
send "$AGENT" "$(msg "$UID1" 15 $CAPS "package_statuses { packages { key: \"otelcol\" value { name: \"otelcol\" agent_has_version: \"1.0.0\" agent_has_hash: \"$HEX1\" server_offered_version: \"1.0.0\" status: PackageStatusEnum_Installed } } }")"
req GET /v1/policies/base
is "$(json '.status.nodes[0].state')|$(json .status.counts.Upgraded)" "Upgraded|1" \
    "Installed at the offered version with its hash: Upgraded, counted in the rollout"
send "$AGENT" "$(msg "$UID1" 16 $CAPS)"
is "$(field all_packages_hash)" "$HASH1" "the statuses left out are kept; the offer did not change"

"$BIN/pkgstore-policy" set base --selector env=dev --package otelcol --version 2.0.0 >/dev/null
send "$AGENT" "$(msg "$UID1" 17 $CAPS)"
HASH2=$(field all_packages_hash)
ok "$([ -n "$HASH2" ] && [ "$HASH2" != "$HASH1" ]; echo $?)" "all_packages_hash changes when the policy moves"
is "$(field version)" "2.0.0" "... to the new version"
send "$AGENT" "$(msg "$UID1" 18 $CAPS "package_statuses { packages { key: \"otelcol\" value { name: \"otelcol\" agent_has_version: \"1.0.0\" agent_has_hash: \"$HEX1\" server_offered_version: \"2.0.0\" status: PackageStatusEnum_InstallFailed error_message: \"rolled back: crashed after the swap\" } } }")"
req GET /v1/policies/base
is "$(json '.status.nodes[0].state')|$(json .status.counts.RolledBack)" \
    "RolledBack|1" "InstallFailed 'rolled back: ...': RolledBack"
batch_failed() { [ "$(api /v1/policies/base | jq -r '.status.rollout.batches[0].failed')" = 1 ]; }
wait_until 10 batch_failed
ok $? "... counted as a failure of the rollout once the driver counts it"
req GET /v1/agents/edge-1
is "$(json '.history[-1].status + "|" + .history[-1].version + "|" + .history[-1].message')" \
    "RolledBack|2.0.0|rolled back: crashed after the swap" "the history entry names the offered version and the message"

# ---- an addon is an Addon entry
printf 'shipper\n' >"$TMP/s1"
"$BIN/pkgstore-push" --quiet --type addon --name shipper --version 1.0.0 --platform linux/amd64 "$TMP/s1" >/dev/null
"$BIN/pkgstore-policy" set ship --type addon --selector env=dev --package shipper --version 1.0.0 >/dev/null
send "$AGENT" "$(msg "$UID1" 19 $CAPS)"
is "$(printf '%s\n' "$REPLY" | grep -c 'key: ')|$(printf '%s\n' "$REPLY" | grep -A2 'key: "shipper"' | grep -c 'type: PackageType_Addon')" \
    "2|1" "an addon policy's target: a second entry, of type Addon"

# ---- encodings, content types, bad bodies
gzip -c "$TMP/msg.bin" >"$TMP/msg.gz"
post "$AGENT" "$TMP/msg.gz" -H 'Content-Encoding: gzip'
is "$STATUS|$(text_hex "$(field instance_uid)")" "200|0102030405060708090a0b0c0d0e0f10" "a gzip body is inflated"
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -H "Authorization: Bearer $AGENT" \
    -H 'Content-Type: application/json' --data-binary @"$TMP/msg.bin" "$URL/v1/opamp")
BODY=$(cat "$TMP/body")
is "$STATUS|$(error_code)" "415|UNSUPPORTED" "another Content-Type: 415"
printf 'this is not protobuf \377\377\377' >"$TMP/garbage"
post "$AGENT" "$TMP/garbage"
BODY=$(cat "$TMP/reply.bin")
is "$STATUS|$(error_code)|$(json .error.message)" "400|INVALID|opamp: body: not an AgentToServer message" \
    "a body that is no AgentToServer: 400"
post "$AGENT" "$TMP/garbage" -H 'Content-Encoding: gzip'
is "$STATUS" "400" "a gzip body that is not gzip: 400"
send "$AGENT" "$(msg 'abc' 1 $CAPS)"
is "$STATUS|$REPLY" "200|$(cat "$FIX/bad_uid_reply.txt")" \
    "an instance_uid that is not 16 bytes: ServerErrorResponse BadRequest in a 200"
truncate -s $((64 * 1024 * 1024 + 1)) "$TMP/big.bin"
post "$AGENT" "$TMP/big.bin"
is "$STATUS" "413" "a body over 64 MiB: 413"
rm -f "$TMP/big.bin"
head -c $((65 * 1024 * 1024)) /dev/zero | gzip -c >"$TMP/bomb.gz"
post "$AGENT" "$TMP/bomb.gz" -H 'Content-Encoding: gzip'
BODY=$(cat "$TMP/reply.bin")
is "$STATUS|$(error_code)" "413|LIMIT" "a gzip body that inflates past 64 MiB: 413"
server_alive
ok $? "the server is alive after the bad bodies"

# ---- per-node credentials; JSON and OpAMP nodes side by side
E9=$("$BIN/pkgstore-token" issue --node edge-9 2>/dev/null)
send "$E9" "$(msg "$UID2" 1 $CAPS "$(desc edge-1)")"
BODY=$(cat "$TMP/reply.bin")
is "$STATUS|$(error_code)" "403|DENIED" "a credential for edge-9 speaking for edge-1: 403"
send "$E9" "$(msg "$UID2" 2 $CAPS "$(desc edge-9)")"
is "$STATUS" "200" "... and for its own node: 200"
req_as "$AGENT" POST /v1/agents/heartbeat -d '{"node_id":"json-1","platform":"linux/amd64","labels":{"env":"dev"}}'
req GET /v1/agents
is "$(json '[.nodes[].id] | join(",")')" "edge-1,edge-9,json-1" "JSON and OpAMP nodes side by side in GET /v1/agents"

# ---- a restart forgets the agents: full state asked again; the empty name
stop_server
mkdir -p "$TMP/pkg"
printf '#!/bin/sh\necho contrib\n' >"$TMP/pkg/otelcol-contrib"
chmod +x "$TMP/pkg/otelcol-contrib"
tar -C "$TMP/pkg" -czf "$TMP/contrib.tar.gz" otelcol-contrib
start_server --opamp-primary-empty-name --new-nodes-rate 1/1
export PKGSTORE_SERVER=$URL
send "$AGENT" "$(msg "$UID1" 20 $CAPS)"
is "$STATUS|$(field flags)" "200|1" "after a restart the agent is unknown: ReportFullState"
req GET /v1/agents/edge-1
is "$STATUS" "200" "... while its node is kept by the fleet"

"$BIN/pkgstore-push" --quiet --name otelcol-contrib --version 0.110.0 --platform linux/amd64 \
    --format tar+gzip --entrypoint otelcol-contrib "$TMP/contrib.tar.gz" >/dev/null
"$BIN/pkgstore-policy" set contrib --selector env=prod --package otelcol-contrib --version 0.110.0 >/dev/null
send "$AGENT" "$(msg "$UID2" 1 $CAPS "$(desc sup-1 | sed 's/"dev"/"prod"/')")"
is "$(masked)" "$(cat "$FIX/offer_empty_name.txt")" \
    "--opamp-primary-empty-name: the primary offered under the name \"\" (the supervisor's shape)"
SHAC=$(sha256 "$TMP/contrib.tar.gz")
is "$(text_hex "$(field content_hash)")" "$SHAC" "content_hash: the tar.gz artifact's SHA-256"
HEXC=$(hex_text "$SHAC")
send "$AGENT" "$(msg "$UID2" 2 $CAPS "package_statuses { packages { key: \"\" value { agent_has_version: \"0.110.0\" agent_has_hash: \"$HEXC\" server_offered_version: \"0.110.0\" status: PackageStatusEnum_Installed } } }")"
req GET /v1/policies/contrib
is "$(json '.status.nodes[0].id + "|" + .status.nodes[0].state')" "sup-1|Upgraded" \
    "statuses for \"\" are the primary's: Upgraded for otelcol-contrib"

# ---- overload: the heartbeat's refusals keep their status and Retry-After
UID3='\061\062\063\064\065\066\067\070\071\072\073\074\075\076\077\100'
send "$AGENT" "$(msg "$UID3" 1 $CAPS "$(desc over-1)")"
RETRY=$(sed -n 's/^[Rr]etry-[Aa]fter: \([0-9]*\)\r$/\1/p' "$TMP/headers")
BODY=$(cat "$TMP/reply.bin")
is "$STATUS|$(error_code)|${RETRY:+set}" "429|LIMIT|set" \
    "a new node past --new-nodes-rate: 429 with Retry-After, as the JSON heartbeat"

finish
