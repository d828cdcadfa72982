# tests/e2e/lib/ports.sh - free_port, sourced by tests/e2e/lib/agent.sh and
# bench/lib.sh (one copy of the port rule for tests and benchmarks).

# A port that is free now, for a collector or health endpoint that binds it
# later. Taken below the kernel's ephemeral range (32768-60999 here): a port
# from that range can meanwhile become the local port of some outgoing
# connection (an agent's, curl's), and the collector then fails to bind.
free_port() {
    perl -MIO::Socket::INET -e '
        my ($low, $high) = (20000, 32767);
        if (open my $f, "<", "/proc/sys/net/ipv4/ip_local_port_range") {
            my ($lo) = split " ", scalar <$f>;
            $high = $lo - 1 if $lo && $lo - 1 < $high && $lo - 1 > $low + 1000;
        }
        for (1 .. 200) {
            my $p = $low + int rand($high - $low + 1);
            my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:$p") or next;
            print "$p\n"; exit 0;
        }
        die "no free port in $low-$high\n";'
}
