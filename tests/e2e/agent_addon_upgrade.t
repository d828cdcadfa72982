#!/bin/bash
# Addon upgrades beyond the happy path:
#  a) the entrypoint is renamed between versions (bin/side-a -> bin/side-b):
#     the new name is installed and run, the old one (and its .bak) removed
#     once the watchdog after the upgrade has passed (it is the way back
#     until then);
#  b) a failed upgrade of an addon whose args/env come from the manifest's
#     annotations restarts the old binary with the OLD args and env;
#  c) a rename that fails (bin/side-c crashes): rolled back to side-b,
#     side-c never left behind.
. "$(dirname "$0")/lib/agent.sh"
echo "1..16"
d=$T/node; mkdir -p "$d/manifests/helper" "$d/pkg"
start_fake_server "$d"
sp=$(free_port); sh=$(free_port)      # side
hp1=$(free_port); hh1=$(free_port)    # helper, v1's config
hp2=$(free_port); hh2=$(free_port)    # helper, v2's config
printf 'ports: [%s]\nhealth_port: %s\n' "$sp" "$sh" > "$d/side.yaml"
printf 'ports: [%s]\nhealth_port: %s\n' "$hp1" "$hh1" > "$d/helper1.yaml"
printf 'ports: [%s]\nhealth_port: %s\n' "$hp2" "$hh2" > "$d/helper2.yaml"
# side: args from the config; helper: only health settings in the config,
# so its args and env come from the manifest annotations
export ADDONS_YAML="addons:
  - name: side
    args: [\"--config\", \"$d/side.yaml\"]
    ports: [$sp]
    health_url: http://127.0.0.1:$sh/
    monitor_window_s: 1
  - name: helper
    health_url: http://127.0.0.1:$hh1/
    monitor_window_s: 1"
WATCHDOG_WINDOW=2 new_node "$d" "$FAKE_URL" 1

# side: three tar+gzip archives whose entrypoint changes name each time
side_archive() { # VERSION VARIANT ENTRY
    rm -rf "$d/pkg/$1"; mkdir -p "$d/pkg/$1/bin"
    make_variant "$2" "$d/pkg/$1/bin/$3" "side-$1"
    tar -C "$d/pkg/$1" -czf "$d/side-$1.tar.gz" "bin/$3"
}
side_archive 1.0.0 v1 side-a
side_archive 2.0.0 v2 side-b
side_archive 3.0.0 crashes-at-start side-c
side_offer() { offer_json "$d" "$d/side-$1.tar.gz" side "$1" addon tar+gzip "bin/$2"; }
make_variant v1 "$d/helper-1" helper-1
make_variant crashes-at-start "$d/helper-2" helper-2
jq -n --arg cfg "$d/helper1.yaml" '{schemaVersion: 1, name: "helper", version: "1.0.0", type: "addon",
    annotations: {"io.pkgstore.addon.args": (["--config", $cfg] | tojson),
                  "io.pkgstore.addon.env": ({SIDE_MARK: "v1"} | tojson)}}' > "$d/manifests/helper/1.0.0.json"
jq -n --arg cfg "$d/helper2.yaml" '{schemaVersion: 1, name: "helper", version: "2.0.0", type: "addon",
    annotations: {"io.pkgstore.addon.args": (["--config", $cfg] | tojson),
                  "io.pkgstore.addon.env": ({SIDE_MARK: "v2"} | tojson)}}' > "$d/manifests/helper/2.0.0.json"

A=$d/state/addons
# "status+version" of an addon, from one read of the journal
sv() { jq -r --arg n "$2" '.packages[] | select(.name == $n) | (.status // "") + (.version // "")' "$1/state/state.json" 2>/dev/null; }
addon_pid() { cat "$1/state/run/addon-$2.pid" 2>/dev/null; }
exe_of() { readlink "/proc/$1/exe" 2>/dev/null; }

export -f sv addon_pid exe_of

start_agent "$d"; wait_until 10 node_healthy "$d"
set_offers "$d" "$(side_offer 1.0.0 side-a)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
# expects: first installs: the archive's entrypoint under its own name
check "v1s installed: side runs addons/side/side-a, helper Upgraded" \
    bash -c 'wait_until 15 bash -c "[ \"\$(sv \"$0\" side)\" = Upgraded1.0.0 ] && [ \"\$(sv \"$0\" helper)\" = Upgraded1.0.0 ]" && wait_until 5 bash -c "[ \"\$(exe_of \"\$(addon_pid \"$0\" side)\")\" = \"$0/state/addons/side/side-a\" ]" && wait_until 5 health_ok "$1" && wait_until 5 health_ok "$2"' "$d" "$sh" "$hh1"
helper_v1_pid=$(addon_pid "$d" helper)

# --- a) entrypoint renamed: bin/side-a -> bin/side-b
set_offers "$d" "$(side_offer 2.0.0 side-b)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
check "rename: side Upgraded to 2.0.0" wait_until 15 bash -c '[ "$(sv "$0" side)" = Upgraded2.0.0 ]' "$d"
# expects: the new entrypoint is installed under its new name
check "rename: addons/side/side-b is v2's entrypoint" \
    bash -c '[ "$(sha "$0/side/side-b" 2>/dev/null)" = "$(sha "$1")" ]' "$A" "$d/pkg/2.0.0/bin/side-b"
# expects: the process runs from addons/side/side-b (not from the old name)
check "rename: the running process's executable is addons/side/side-b" \
    wait_until 5 bash -c 'p=$(addon_pid "$0" side); [ "$(exe_of "$p")" = "$0/state/addons/side/side-b" ] && [ "$(exe_sha "$p")" = "$(sha "$1")" ]' "$d" "$d/pkg/2.0.0/bin/side-b"
# expects: the old name and its backup are gone once the watchdog passed
check "rename: addons/side/side-a and side-a.bak removed after the watchdog" \
    bash -c 'wait_until 15 grep -q "msg=\"watchdog passed\" package=side version=2.0.0" "$1" && [ ! -e "$0/side/side-a" ] && [ ! -e "$0/side/side-a.bak" ]' "$A" "$d/agent.log"
check "rename: side healthy" health_ok "$sh"
# expects: if the journal records the entrypoint, it is the new one
check "rename: journal entrypoint (when recorded) is bin/side-b" \
    bash -c '[ "$(jq -r ".packages[] | select(.name == \"side\") | .entrypoint // \"bin/side-b\"" "$0/state/state.json")" = bin/side-b ]' "$d"
[ -n "$helper_v1_pid" ] && [ "$(addon_pid "$d" helper)" = "$helper_v1_pid" ] || diag "helper restarted during side's upgrade"

# --- b) failed upgrade of an annotated addon keeps the old args and env
set_offers "$d" "$(side_offer 2.0.0 side-b)" "$(offer_json "$d" "$d/helper-2" helper 2.0.0 addon)"
check "helper v2 (crashes) RolledBack" wait_until 15 bash -c '[ "$(sv "$0" helper)" = RolledBack1.0.0 ]' "$d"
# expects: v1's binary runs again
check "helper: the running process is v1's binary" \
    wait_until 5 bash -c '[ "$(exe_sha "$(addon_pid "$0" helper)")" = "$(sha "$1")" ]' "$d" "$d/helper-1"
# expects: with v1's args from v1's manifest (--config CFG1), not v2's (CFG2)
check "helper: cmdline has --config helper1.yaml, not helper2.yaml" \
    bash -c 'c=$(tr "\0" " " < /proc/$(addon_pid "$0" helper)/cmdline); [[ "$c" == *"--config $0/helper1.yaml"* && "$c" != *helper2.yaml* ]] || { echo "# cmdline: $c"; exit 1; }' "$d"
# expects: with v1's env (SIDE_MARK=v1), not v2's (SIDE_MARK=v2)
check "helper: environ has SIDE_MARK=v1 and not SIDE_MARK=v2" \
    bash -c 'e=$(tr "\0" "\n" < /proc/$(addon_pid "$0" helper)/environ | grep "^SIDE_MARK="); [ "$e" = SIDE_MARK=v1 ] || { echo "# environ: $e"; exit 1; }' "$d"
# expects: and so it serves v1's health port again
check "helper: healthy on v1's health port" wait_until 5 health_ok "$hh1" 2>/dev/null

# --- c) a renamed entrypoint that fails: back to side-b, side-c not left behind
set_offers "$d" "$(side_offer 3.0.0 side-c)" "$(offer_json "$d" "$d/helper-1" helper 1.0.0 addon)"
check "rename + crash: side RolledBack to 2.0.0" wait_until 15 bash -c '[ "$(sv "$0" side)" = RolledBack2.0.0 ]' "$d"
# expects: side-b, v2's entrypoint, is what runs again
check "rename + crash: side-b still there and running" \
    wait_until 5 bash -c 'p=$(addon_pid "$0" side); [ "$(sha "$0/state/addons/side/side-b" 2>/dev/null)" = "$(sha "$1")" ] && [ "$(exe_of "$p")" = "$0/state/addons/side/side-b" ] && [ "$(exe_sha "$p")" = "$(sha "$1")" ]' "$d" "$d/pkg/2.0.0/bin/side-b"
# expects: the failed new name is removed, with no backup of it
check "rename + crash: addons/side/side-c (and .bak) do not exist" \
    bash -c '[ ! -e "$0/side/side-c" ] && [ ! -e "$0/side/side-c.bak" ]' "$A"
# expects: the journal (when it records the entrypoint) still names
# side-b's, and side is healthy
check "rename + crash: journal entrypoint (when recorded) is bin/side-b, side healthy" \
    bash -c '[ "$(jq -r ".packages[] | select(.name == \"side\") | .entrypoint // \"bin/side-b\"" "$0/state/state.json")" = bin/side-b ] && wait_until 5 health_ok "$1"' "$d" "$sh" 2>/dev/null
[ "$FAILED" = 0 ] || { diag "addons dir: $(cd "$A" && find . | sort | tr '\n' ' ')"; dump "$d/agent.log"; }
