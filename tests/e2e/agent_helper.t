#!/usr/bin/env bash
# pkgstore-agent-helper, the agent's worker process: one JSON object on
# stdout for every outcome, clear error codes for bad input, and death
# together with the agent that started it.
. "$(dirname "$0")/lib/agent.sh"

H=$B/pkgstore-agent-helper
# run ARGS...: the helper's stdout in $out, its exit status in $rc
run() { out=$("$H" "$@" 2>"$T/stderr"); rc=$?; }
code() { jq -r '.code // empty' <<<"$out"; }
okval() { jq -r '.ok' <<<"$out"; }

# ---------------------------------------------------------------- usage
run frobnicate
check "an unknown command: exit 2, ok false, EINVALID (-3)" \
    test "$rc" = 2 -a "$(okval)" = false -a "$(code)" = -3
run digest
check "a missing argument: exit 2 and a reason" \
    bash -c '[ "$1" = 2 ] && jq -e ".error | test(\"number of arguments\")" <<<"$2" >/dev/null' _ "$rc" "$out"
run --timeout -1 digest /bin/true
check "a bad --timeout: exit 2" test "$rc" = 2
check "--version names the library" bash -c '"$0" --version | grep -q "libpkgstore"' "$H"

# ---------------------------------------------------------------- files
printf 'hello\n' > "$T/hello"
want=sha256:$(sha "$T/hello")
run digest "$T/hello"
check "digest of a file" test "$rc" = 0 -a "$(jq -r .digest <<<"$out")" = "$want"
run digest "$T/nope"
check "digest of a missing file: exit 1, ENOTFOUND (-1), the path named" \
    bash -c '[ "$1" = 1 ] && [ "$(jq -r .code <<<"$2")" = -1 ] && jq -e ".error | contains(\"nope\")" <<<"$2" >/dev/null' _ "$rc" "$out"
run verify "$T/hello" "$want" 6
check "verify: a match" test "$rc" = 0
run verify "$T/hello" "sha256:$(printf '0%.0s' $(seq 64))" 6
check "verify: a mismatch is EDIGEST_MISMATCH (-7) with both digests" \
    bash -c '[ "$(jq -r .code <<<"$1")" = -7 ] && jq -e ".error | contains(\"$2\")" <<<"$1" >/dev/null' _ "$out" "$want"
run verify "$T/hello" "$want" 3
check "verify: larger than offered is ESIZE_MISMATCH (-8)" test "$(code)" = -8
run verify "$T/hello" not-a-digest 6
check "verify: a malformed digest is refused (exit 2)" test "$rc" = 2

mkdir -p "$T/work" "$T/pkg/bin"
cp "$B/fake-otelcol-v1" "$T/pkg/bin/otelcol"
tar -C "$T/pkg" -czf "$T/pkg.tar.gz" bin/otelcol
run prepare "$T/pkg.tar.gz" tar+gzip bin/otelcol "$T/work"
exe=$(jq -r .executable <<<"$out"); dir=$(jq -r .extract_dir <<<"$out")
check "prepare: an archive's entrypoint, executable, with its own digest" \
    bash -c '[ -x "$1" ] && [ "$(jq -r .digest <<<"$2")" = "sha256:$(sha256sum "$1" | cut -d" " -f1)" ] && [ "$1" != "${1#$3/}" ]' \
    _ "$exe" "$out" "$dir"
run rmtree "$dir"
check "rmtree removes the extraction" test "$rc" = 0 -a ! -e "$dir"
run prepare "$T/pkg.tar.gz" zip bin/otelcol "$T/work"
check "prepare: a declared format that is not the content's is EFORMAT (-10)" test "$(code)" = -10
run prepare "$T/pkg.tar.gz" "no such format" bin/otelcol "$T/work"
check "prepare: an unknown format name is EFORMAT (-10)" test "$(code)" = -10
run prepare "$T/pkg.tar.gz" tar+gzip bin/missing "$T/work"
check "prepare: a missing entrypoint fails and leaves nothing in the work dir" \
    bash -c '[ "$1" = 1 ] && [ -z "$(ls -A "$2")" ]' _ "$rc" "$T/work"
cp "$B/fake-otelcol-v1" "$T/raw"
chmod 0644 "$T/raw"
run prepare "$T/raw" "" "" "$T/work"
check "prepare: a plain binary is the download itself, made executable" \
    bash -c '[ "$(jq -r .executable <<<"$1")" = "$2" ] && [ "$(jq -r .extract_dir <<<"$1")" = null ] && [ -x "$2" ]' _ "$out" "$T/raw"

# ---------------------------------------------------------------- network
port=$(free_port)
run --timeout 2 http-get "http://127.0.0.1:$port/"
check "a refused connection is ENET (-14)" test "$rc" = 1 -a "$(code)" = -14
run --timeout 2 health "http://127.0.0.1:$port/"
check "health of nothing listening fails" test "$rc" = 1
echo secret-token > "$T/token"
run --token-file "$T/missing-token" http-get "http://127.0.0.1:$port/"
check "an unreadable token file is named" \
    bash -c '[ "$1" = 1 ] && jq -e ".error | contains(\"missing-token\")" <<<"$2" >/dev/null' _ "$rc" "$out"

# A socket that accepts and never answers, for the tests below.
perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(Listen => 5, LocalAddr => "127.0.0.1:'"$port"'", ReuseAddr => 1) or die;
    my @c; while (my $c = $s->accept) { push @c, $c }' &
PIDS+=($!)
wait_until 5 bash -c "echo > /dev/tcp/127.0.0.1/$port" 2>/dev/null
start=$SECONDS
run --timeout 1 health "http://127.0.0.1:$port/"
check "a health probe gives up after --timeout" test "$rc" = 1 -a $((SECONDS - start)) -le 4

# ---------------------------------------------------------------- tied to the agent
# The helper refuses to run for an agent that is not its parent ...
out=$(PKGSTORE_AGENT_PID=1 "$H" digest "$T/hello" 2>/dev/null); rc=$?
check "a helper whose agent is gone refuses to run" \
    bash -c '[ "$1" = 2 ] && jq -e ".error | contains(\"gone\")" <<<"$2" >/dev/null' _ "$rc" "$out"
# ... and dies with it: a stand-in agent (sh) starts a helper that hangs on
# the silent socket, then is SIGKILLed.
sh -c 'PKGSTORE_AGENT_PID=$$ "$0" --timeout 60 health "$1"; echo done' "$H" "http://127.0.0.1:$port/" &
agent=$!
PIDS+=($agent)
helper=
wait_until 5 bash -c 'pgrep -P "$0" >/dev/null' "$agent" && helper=$(pgrep -P "$agent")
[ -n "$helper" ] && PIDS+=($helper)
kill -KILL "$agent"; wait "$agent" 2>/dev/null
check "the helper dies when its agent is SIGKILLed" \
    bash -c '[ -n "$0" ] && for i in $(seq 50); do kill -0 "$0" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' "$helper"

echo "1..$TESTNUM"
exit $FAILED
