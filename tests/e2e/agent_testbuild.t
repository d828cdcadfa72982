#!/bin/bash
# Issue 10: test hooks live only in test builds. The release library has no
# fault injection symbol, the release agent reads no test switch (and
# upgrades normally with it set), the test build of the agent does; the
# agent compiles with the public headers only.
. "$(dirname "$0")/lib/agent.sh"
echo "1..6"
L=${PKGSTORE_BUILD:-$B/..}/lib
check "libpkgstore.a has no ps_install_set_fault*" bash -c '! nm "$0/libpkgstore.a" 2>/dev/null | grep -q ps_install_set_fault' "$L"
check "libpkgstore.so has no ps_install_set_fault*" bash -c '! nm -D "$0/libpkgstore.so" 2>/dev/null | grep -q ps_install_set_fault && ! nm "$0/libpkgstore.so" 2>/dev/null | grep -q ps_install_set_fault' "$L"
check "the test library (unit tests) has them" bash -c 'nm "$0/libpkgstore-test.a" | grep -q "T ps_install_set_fault_point"' "$L"
check "the release agent has no test switch; the test build has" \
    bash -c '! grep -qa PKGSTORE_AGENT_TEST_FAULT "$0/pkgstore-agent" && grep -qa PKGSTORE_AGENT_TEST_FAULT "$1/pkgstore-agent"' "$B" "$TB"
check "the agent's objects are compiled without -Ilibpkgstore" \
    bash -c 'out=$(make -s -C "$PKGSTORE_SRC" -n -W agent/upgrade.c BUILD="$0" "$0/obj/agent/upgrade.o" 2>&1) && [[ "$out" == *"agent/upgrade.c"* && "$out" == *"-Iinclude"* && "$out" != *"-Ilibpkgstore"* ]]' "${PKGSTORE_BUILD:-$B/..}"

# the release agent with the switch set: the swap just works
d=$T/node; mkdir -p "$d"
start_fake_server "$d"; new_node "$d" "$FAKE_URL" 1
make_variant v2 "$d/v2" testbuild-v2
PKGSTORE_AGENT_TEST_FAULT=swap-after-rename start_agent "$d"
wait_until 10 node_healthy "$d"
set_offers "$d" "$(offer_json "$d" "$d/v2" otelcol 2.0.0)"
check "the release agent ignores PKGSTORE_AGENT_TEST_FAULT: Upgraded" wait_until 20 status_is "$d" Upgraded
[ "$FAILED" = 0 ] || dump "$d/agent.log"
