#!/bin/bash
# Issue 11 finding 10, against the real pkgstored: a download that would
# fill state_dir is refused before its first byte (free space against the
# artifact's size), and a download that hits ENOSPC anyway deletes its
# part: state_dir is not left full, the journal can be written and says
# UpgradeFailed, not Downloading. state_dir is on a small tmpfs (root only:
# the test says SKIP otherwise).
. "$(dirname "$0")/lib/agent.sh"
echo "1..7"
if [ "$(id -u)" != 0 ]; then
    for i in 1 2 3 4 5 6 7; do echo "ok $i # SKIP needs root to mount a small tmpfs"; done
    exit 0
fi
real_server
export RETRY_INITIAL=1
d=$T/node; mkdir -p "$d/state"
mount -t tmpfs -o size=4m tmpfs "$d/state" && MOUNTS+=("$d/state") || { echo "Bail out! cannot mount a tmpfs"; exit 1; }
new_node "$d" "$URL" 1
# a 6 MiB version: more than the 4 MiB state_dir can take
cp "$B/fake-otelcol-v2" "$T/big"; head -c $((6 << 20)) /dev/urandom >> "$T/big"
push --name otelcol --version 2.0.0 "$T/big" > /dev/null
policy set everyone --package otelcol --version 2.0.0 > /dev/null
start_agent "$d"
check "refused before the download: UpgradeFailed with the bytes needed and available" \
    wait_until 20 bash -c '[[ "$(state_message "$0")" == "download: "*"bytes needed"*"available"* ]]' "$d"
check "no part is left in state/tmp, the disk is not full" \
    bash -c '[ -z "$(ls -A "$0/state/tmp")" ] && [ "$(df --output=avail -k "$0/state" | tail -1)" -gt 2048 ]' "$d"
check "the journal was written: UpgradeFailed, no upgrade in progress" \
    bash -c '[ "$(journal_of "$0" otelcol status)" = UpgradeFailed ] && ! jq -e .upgrade "$0/state/state.json" > /dev/null' "$d"
check "the old collector runs on, healthy" node_healthy "$d"

# ENOSPC in the middle of a download: the helper, run as the agent runs
# it, into a tmpfs that another file fills while the transfer waits half
# way (the server sends half the body, then the rest once the disk is full)
small=$T/small; mkdir -p "$small"
mount -t tmpfs -o size=8m tmpfs "$small" && MOUNTS+=("$small")
h=$(sha "$T/big"); size=$(stat -c %s "$T/big"); dport=$(free_port)
perl -MIO::Socket::INET -e '
    my ($port, $file, $go) = @ARGV;
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:$port", ReuseAddr => 1) or die;
    open my $r, ">", "$go.ready"; close $r;
    my $c = $s->accept; open my $f, "<", $file or die; binmode $f; my $n = -s $file;
    while (<$c>) { last if /^\r?$/ }
    print $c "HTTP/1.1 200 OK\r\nContent-Length: $n\r\nConnection: close\r\n\r\n";
    read($f, my $half, int($n / 2)); print $c $half; $c->flush;
    select(undef, undef, undef, 0.05) until -e $go;
    while (read($f, my $buf, 65536)) { print $c $buf }' "$dport" "$T/big" "$T/filled" &
PIDS+=($!)
wait_until 5 test -e "$T/filled.ready"
PKGSTORE_AGENT_PID=$$ "$B/pkgstore-agent-helper" --timeout 20 download \
    "http://127.0.0.1:$dport/blob" "$small/$h.part" "$size" > "$T/helper.out" 2>/dev/null &
helper=$!; PIDS+=($helper)
wait_until 20 bash -c '[ "$(stat -c %s "$0" 2>/dev/null || echo 0)" -ge $((2 << 20)) ]' "$small/$h.part"
head -c $((8 << 20)) /dev/zero > "$small/filler" 2>/dev/null   # until the disk is full
touch "$T/filled"
wait "$helper"; rc=$?
out=$(cat "$T/helper.out")
diag "helper: $out"
check "ENOSPC during a download: the helper says NOSPC (-6)" \
    bash -c '[ "$1" = 1 ] && [ "$(jq -r .code <<<"$0")" = -6 ]' "$out" "$rc"
check "and deletes the part, which gives the room back" test ! -e "$small/$h.part"

# More room: the retry downloads and upgrades.
mount -o remount,size=32m "$d/state"
check "with room, the retry upgrades: Upgraded to 2.0.0" \
    wait_until 60 bash -c '[ "$(journal_of "$0" otelcol status)$(journal_of "$0" otelcol version)" = Upgraded2.0.0 ] && node_healthy "$0"' "$d"
[ "$FAILED" = 0 ] || dump "$d/agent.log"
