#!/bin/bash
# The console (issue 14) in a real headless Chromium: a real pkgstored with
# real agents supervising the fake collector, and tests/ui/console.mjs
# (puppeteer-core) driving the UI through the seed flow: sign in, upload v2
# by the form and see its SHA-256, create the canary policy, watch the
# canary reach Upgraded in the fleet view, widen the rollout, push a
# crashing v3 and see the rollback and the pause with its reason, sign out.
# Also: markup in a real agent's status message, a package's annotation
# and an upload's file name and entrypoint stays text (nothing executes, no
# dialog opens), the pages ask no other host, the browser console has no
# error, and every page is screenshot at 1280x800 and 390 px wide into
# $PKGSTORE_BUILD/ui/. A server without /ui/ or /v1/session fails here.
# Needs chromium, nodejs and tests/ui/node_modules: `make deps`.
. "$(dirname "$0")/lib/agent.sh"
SRC=${PKGSTORE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
SHOTS=${PKGSTORE_BUILD:-$B/..}/ui
export HB_INTERVAL=0.3 RETRY_INITIAL=60 RETRY_MAX=60

finish() { echo "1..$TESTNUM"; exit "$FAILED"; }

for tool in node "${CHROMIUM:-chromium}"; do
    command -v "$tool" > /dev/null || { nok "$tool is installed (make deps)"; finish; }
done
[ -f "$SRC/tests/ui/node_modules/puppeteer-core/package.json" ] \
    || { nok "tests/ui/node_modules holds puppeteer-core (make deps runs npm ci there)"; finish; }

real_server
ok "pkgstored started at $URL"

# The server side of the console must be there: the static files and sessions.
ui_status=$(curl -s -o /dev/null -w '%{http_code}' "$URL/ui/")
session_status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"token":"wrong"}' "$URL/v1/session")
if [ "$ui_status" != 200 ] || [ "$session_status" != 401 ]; then
    nok "pkgstored serves the console: GET /ui/ answered $ui_status (want 200), POST /v1/session with a wrong token $session_status (want 401); this pkgstored lacks the console's server side (issue 14: static files at /ui/ and the session routes)"
    finish
fi
ok "pkgstored serves /ui/ and has /v1/session"

# Two nodes on the real agent: a canary and one more, both env=test.
LABELS="env: test, canary: 'true'" new_node "$T/edge-canary" "$URL" 1
LABELS="env: test" new_node "$T/edge-b" "$URL" 1
start_agent "$T/edge-canary"
start_agent "$T/edge-b"

make_variant v2 "$T/otelcol-v2" ui-v2
make_variant crashes-at-start "$T/otelcol-v3" ui-v3-crashes

# Markup through a real agent's report: edge-markup's collector names the
# bad entry of its configuration when asked to validate (as a real one does),
# and its agent reports that as the reason of a failed upgrade; and through
# an uploader's annotation and file name.
XSS='<img src=x onerror="window.__xss=1;alert(1)">'
LABELS="env: other" new_node "$T/edge-markup" "$URL" 1
printf 'invalid: %s\n' "$XSS" >> "$T/edge-markup/collector.yaml"
start_agent "$T/edge-markup"
make_variant v2 "$T/otelcol-1.5" ui-markup
server_add --name otelcol --version 1.5.0 --platform linux/amd64 "$T/otelcol-1.5" > /dev/null
policy set markup --selector 'env=other' --package otelcol --version 1.5.0 > /dev/null
check "the agent reports the validation failure, markup and all, as edge-markup's last status" \
    wait_until 30 bash -c 'admin /v1/agents/edge-markup | jq -e --arg x "$0" ".last_status.status == \"UpgradeFailed\" and (.last_status.message | contains(\$x))" > /dev/null' "$XSS"
printf 'notes\n' > "$T/notes.txt"
server_add --name notes --version 1.0.0 --platform linux/amd64 --annotation "note=$XSS" "$T/notes.txt" > /dev/null
# A root on the server (one key, threshold 1) and notes 1.0.0 signed with
# it: the version page shows the signature as valid and the version signed.
"$B/pkgstore-key" generate --output "$T/key-a" > /dev/null
"$B/pkgstore-key" root create --version 1 --threshold 1 --key "$T/key-a.pub" --sign "$T/key-a.key" \
    --output "$T/root-1.json" > /dev/null
check "the server holds root version 1" \
    bash -c 'curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" --data-binary @"$0" "$URL/v1/trust/root"' "$T/root-1.json"
check "notes 1.0.0 signed with its key (pkgstore-push --sign-key)" push --name notes --version 1.0.0 --sign-key "$T/key-a.key"
XSS_FILE="$T/<img src=x onerror=window.__xss=2>.bin"
printf 'x' > "$XSS_FILE"

check "both agents reported" wait_until 30 bash -c '[ "$(admin "/v1/agents?selector=env%3Dtest&limit=1" | jq .total)" = 2 ]'

rm -rf "$SHOTS"
UI_URL=$URL UI_SHOTS=$SHOTS UI_V2=$T/otelcol-v2 UI_V2_SHA=$(sha "$T/otelcol-v2") UI_V3=$T/otelcol-v3 \
UI_CANARY_NODE=edge-canary UI_NODES=2 UI_XSS_NODE=edge-markup UI_XSS_PKG=notes/1.0.0 UI_XSS_FILE=$XSS_FILE \
    node "$SRC/tests/ui/console.mjs" > "$T/ui.out" 2>&1
rc=$?
while IFS= read -r line; do
    case $line in
        "ok - "*) ok "${line#ok - }" ;;
        "not ok - "*) nok "${line#not ok - }" ;;
        *) echo "# $line" ;;
    esac
done < "$T/ui.out"
check "the browser script ended cleanly (exit $rc)" test "$rc" = 0
check "screenshots written to $SHOTS" bash -c 'ls "$0"/fleet-1280.png "$0"/fleet-390.png > /dev/null' "$SHOTS"
[ "$FAILED" = 0 ] || { dump "$T/edge-canary/agent.log"; dump "$S/server.log"; }
finish
