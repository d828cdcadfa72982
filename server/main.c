/*
 * server/main.c - pkgstored: options, store and tokens, the libmicrohttpd
 * daemon (HTTPS with --tls-cert/--tls-key, see tls.c; SIGHUP reloads the
 * certificate), and an orderly shutdown on SIGTERM or SIGINT.
 *
 * Shutdown: stop listening (MHD_quiesce_daemon), let the requests in flight
 * finish (bounded by --shutdown-timeout), stop the daemon, close the store.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server.h"
#include "tls.h"

server g_server;

/* Connection pool beyond the largest header block: the body read buffer. */
#define POOL_EXTRA ((size_t)8u << 10)

/* Descriptors kept out of the connection budget: stdio, the listening
 * socket, the store's directory and lock fds, LMDB's files, the fleet's
 * files and transient ones (a zstd copy at commit), plus per worker thread
 * an epoll fd and an inter-thread pipe. */
#define FD_RESERVE_BASE 128u
#define FD_RESERVE_PER_THREAD 4u
/* Descriptors a connection may hold: its socket and a blob (download) or
 * temporary file (upload). */
#define FDS_PER_CONNECTION 2u
/* The default connection cap, whatever RLIMIT_NOFILE allows: each
 * connection costs a memory pool of --max-header + 8K. */
#define CONNECTIONS_DEFAULT_MAX 16384u
#define PER_IP_DEFAULT_MAX 256u

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pkgstored [--listen HOST:PORT] [--store DIR] [--tokens FILE]\n"
            "                 [--tls-cert FILE --tls-key FILE] [--max-upload BYTES] [options]\n"
            "\n"
            "The pkgstore registry server: blobs, packages, policies and agent heartbeats\n"
            "over HTTPS or HTTP (see docs/api.md and pkgstored(8)).\n"
            "\n"
            "  --listen HOST:PORT        address to listen on (default 127.0.0.1:8080;\n"
            "                            port 0 picks a free port, see --port-file)\n"
            "  --tls-cert FILE           serve HTTPS with this PEM certificate (the server's\n"
            "                            first, then its chain); SIGHUP reloads it\n"
            "  --tls-key FILE            the certificate's PEM private key (unencrypted)\n"
            "  --tls-client-ca FILE      accept node client certificates (mutual TLS) that\n"
            "                            chain to these PEM CAs: the CN names the node,\n"
            "                            which speaks with its newest issued credential;\n"
            "                            SIGHUP reloads it\n"
            "  --store DIR               the store (default $COLLECTORCTRL_PACKAGES_DIR)\n"
            "  --tokens FILE             \"ROLE TOKEN\" lines, roles admin|agent|metrics\n"
            "                            (default: DIR.admin-token, created with mode 0600\n"
            "                            on first start; token files must be mode 0600)\n"
            "  --node-credentials FILE   per-node credentials, only their SHA-256 (default\n"
            "                            DIR.node-credentials; managed by pkgstore-token)\n"
            "  --allow-shared-agent-token  also accept the fleet-wide agent token\n"
            "                            (DIR.agent-token or agent lines of --tokens): its\n"
            "                            holder may speak for ANY node and set any labels;\n"
            "                            for development only\n"
            "  --trust-dir DIR           roots of trust and revocations served to nodes\n"
            "                            (default STORE.trust)\n"
            "  --trust-root FILE         the server's own copy of root.json, the root\n"
            "                            --require-signatures checks against\n"
            "  --require-signatures      refuse policies whose version is not signed to\n"
            "                            threshold by that root (409)\n"
            "  --max-upload BYTES        largest upload body (default 4G; K, M, G suffixes)\n"
            "  --max-json BYTES          largest JSON request body (default 1M)\n"
            "  --max-header BYTES        largest request header block (default 8K)\n"
            "  --header-timeout S        the whole header block must arrive within S\n"
            "                            seconds (default 30)\n"
            "  --idle-timeout S          close a connection silent for S seconds, or kept\n"
            "                            alive S seconds without a new request (default 120)\n"
            "  --body-timeout S          grace before --min-body-rate applies (default 30)\n"
            "  --min-body-rate BYTES     cut bodies slower than this per second on average\n"
            "                            (default 1K; 0 disables)\n"
            "  --max-connections N       total connections (default: from RLIMIT_NOFILE,\n"
            "                            at most 16384)\n"
            "  --max-connections-per-ip N  per client address (default 256, at most a\n"
            "                            quarter of --max-connections; 0: no cap)\n"
            "  --threads N               worker threads (default: one per core)\n"
            "  --heartbeat-interval S    interval told to agents (default 30)\n"
            "  --fleet-dir DIR           node records (default: the store's path + .fleet)\n"
            "  --max-nodes N             nodes the fleet holds at most (default 200000);\n"
            "                            also the OpAMP agents remembered\n"
            "  --node-expiry S           forget nodes silent this long; 0 never\n"
            "                            (default 2592000, 30 days)\n"
            "  --history-max N           status entries kept per node, 1..1024 (default 32)\n"
            "  --new-nodes-rate N[/B]    new node ids per second per token, burst B\n"
            "                            (default 50/2000; 0 unlimited)\n"
            "  --public-url URL          http(s)://HOST[:PORT][/PREFIX] of this server as\n"
            "                            nodes reach it: OpAMP download URLs are made from\n"
            "                            it (default: the scheme and the request's Host)\n"
            "  --opamp-primary-empty-name  offer the primary package to OpAMP agents under\n"
            "                            the name \"\" (the upstream supervisor's design)\n"
            "  --shutdown-timeout S      wait for requests in flight at exit (default 30)\n"
            "  --no-zstd                 do not write .zst transfer copies of uploads\n"
            "  --session-ttl S           a console sign-in lasts S seconds, however busy\n"
            "                            (default 28800, 8 hours; 1..604800)\n"
            "  --max-sessions N          console sessions held at most; a new sign-in\n"
            "                            past it ends the oldest (default 256, 1..65536)\n"
            "  --lock-timeout MS         wait at most MS for the store lock (held by gc or\n"
            "                            repair), then answer 503 (default 100)\n"
            "  --no-fsync                skip fsync (benchmarks and tests only)\n"
            "  --port-file FILE          write the bound port to FILE once listening\n"
            "  --log-level LEVEL         debug|info|warn|error (default info; debug logs\n"
            "                            every request)\n"
            "  --help, --version\n");
}

/* A usage error: "pkgstored: <message>" in one line, a pointer to --help,
 * exit status 2 (the form the pkgstore-* tools print through tools/cli.c). */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("pkgstored: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'pkgstored --help' for more information.\n", stderr);
    return 2;
}

static int parse_size(uint64_t *out, const char *str)
{
    char *end = NULL;
    errno = 0;
    if (!str || !*str || *str == '-')
        return -1;
    unsigned long long n = strtoull(str, &end, 10);
    if (errno || end == str)
        return -1;
    unsigned long long mult = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mult = 1ull << 10; break;
        case 'm': case 'M': mult = 1ull << 20; break;
        case 'g': case 'G': mult = 1ull << 30; break;
        case 't': case 'T': mult = 1ull << 40; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'B')
            end++;
        if (*end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (n > UINT64_MAX / mult)
        return -1;
    *out = n * mult;
    return 0;
}

static int parse_uint(unsigned int *out, const char *str, unsigned int max)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(str, &end, 10);
    if (errno || end == str || *end || *str == '-' || n > max)
        return -1;
    *out = (unsigned int)n;
    return 0;
}

/* A whole-number option value in min..max into *out; 0, or the exit
 * status of the usage error it printed. */
static int option_uint(unsigned int *out, const char *name, const char *arg, unsigned int min,
                       unsigned int max, const char *unit)
{
    if (parse_uint(out, arg, max) < 0 || *out < min)
        return usage_error("--%s: not %u..%u%s: %s", name, min, max, unit, arg);
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" into a socket address. */
static int resolve_listen(struct sockaddr_storage *addr, socklen_t *addr_len, const char *listen)
{
    char host[256];
    const char *port;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(close - listen - 1), listen + 1);
        port = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
        port = colon + 1;
    }
    unsigned int port_number;
    if (!*port || parse_uint(&port_number, port, 65535) < 0)
        return -1;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || !res)
        return -1;
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* libmicrohttpd logs one line per refused or dropped connection, so a
 * flood would flood the log too: at most MHD_LOG_PER_SECOND lines a second
 * pass, and the next line that passes says how many were suppressed (as
 * does the shutdown, for the last ones). */
#define MHD_LOG_PER_SECOND 20

static pthread_mutex_t mhd_log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long mhd_log_suppressed;

/* At shutdown: report what the last window suppressed. */
static void mhd_log_flush(void)
{
    pthread_mutex_lock(&mhd_log_lock);
    unsigned long dropped = mhd_log_suppressed;
    mhd_log_suppressed = 0;
    pthread_mutex_unlock(&mhd_log_lock);
    if (dropped)
        log_msg(LOG_WARN, "libmicrohttpd: messages suppressed", "suppressed=%lu", dropped);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    static time_t window;
    static unsigned int in_window;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&mhd_log_lock);
    if (now.tv_sec != window) {
        window = now.tv_sec;
        in_window = 0;
    }
    if (in_window >= MHD_LOG_PER_SECOND) {
        mhd_log_suppressed++;
        pthread_mutex_unlock(&mhd_log_lock);
        return;
    }
    in_window++;
    unsigned long dropped = mhd_log_suppressed;
    mhd_log_suppressed = 0;
    pthread_mutex_unlock(&mhd_log_lock);

    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    size_t len = strlen(message);
    while (len && (message[len - 1] == '\n' || message[len - 1] == '\r'))
        message[--len] = '\0';
    char quoted[600];
    if (dropped)
        log_msg(LOG_WARN, "libmicrohttpd", "detail=%s suppressed=%lu",
                log_quote(quoted, sizeof quoted, message), dropped);
    else
        log_msg(LOG_WARN, "libmicrohttpd", "detail=%s", log_quote(quoted, sizeof quoted, message));
}

/* Whether the listening address is loopback (127/8, ::1 or ::ffff:127/104). */
static int is_loopback(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

/* SIGHUP: read --tls-cert and --tls-key again. New handshakes get the new
 * certificate; established connections keep theirs; a file that does not
 * load leaves the old one in use. */
static void reload_certificate(const server_config *cfg)
{
    if (!cfg->tls_cert) {
        log_msg(LOG_INFO, "SIGHUP: nothing to reload (no --tls-cert)", "pid=%ld", (long)getpid());
        return;
    }
    char err[4600], q[4700];
    if (tls_load(cfg->tls_cert, cfg->tls_key, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "SIGHUP: certificate not reloaded; the previous one stays in use",
                "detail=%s", log_quote(q, sizeof q, err));
    if (cfg->tls_client_ca && tls_client_ca_load(cfg->tls_client_ca, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "SIGHUP: client CA not reloaded; the previous one stays in use",
                "detail=%s", log_quote(q, sizeof q, err));
}

static int write_port_file(const char *path, unsigned int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *file = fopen(tmp, "w");
    if (!file)
        return -1;
    fprintf(file, "%u\n", port);
    if (fclose(file) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Raise the soft RLIMIT_NOFILE to the hard limit and size the connection
 * caps from it. Returns 0, or an exit status after printing why. */
static int connection_budget(server_config *cfg, unsigned int threads, rlim_t *nofile_out)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) {
        fprintf(stderr, "pkgstored: getrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
        return 1;
    }
    if (limit.rlim_cur < limit.rlim_max) {
        struct rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (raised.rlim_cur == RLIM_INFINITY)
            raised.rlim_cur = 1u << 20; /* Linux's default fs.nr_open */
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            limit = raised;
    }
    rlim_t nofile = limit.rlim_cur == RLIM_INFINITY ? (rlim_t)1 << 20 : limit.rlim_cur;
    *nofile_out = nofile;
    rlim_t reserve = FD_RESERVE_BASE + (rlim_t)FD_RESERVE_PER_THREAD * threads;
    rlim_t fit = nofile > reserve ? (nofile - reserve) / FDS_PER_CONNECTION : 0;
    if (fit > (1u << 20))
        fit = 1u << 20;
    if (fit < 8) {
        fprintf(stderr,
                "pkgstored: RLIMIT_NOFILE is %llu: too low for %u threads and 8 connections "
                "(raise it with ulimit -n or LimitNOFILE=)\n",
                (unsigned long long)nofile, threads);
        return 1;
    }
    if (cfg->max_connections == 0) {
        cfg->max_connections = fit < CONNECTIONS_DEFAULT_MAX ? (unsigned int)fit
                                                            : CONNECTIONS_DEFAULT_MAX;
    } else if (cfg->max_connections > fit) {
        fprintf(stderr,
                "pkgstored: --max-connections: %u needs %u descriptors but RLIMIT_NOFILE is "
                "%llu (at most %llu connections fit)\n",
                cfg->max_connections, cfg->max_connections * FDS_PER_CONNECTION,
                (unsigned long long)nofile, (unsigned long long)fit);
        return 2;
    }
    if (!cfg->per_ip_set) {
        unsigned int quarter = cfg->max_connections / 4 ? cfg->max_connections / 4 : 1;
        cfg->max_connections_per_ip = quarter < PER_IP_DEFAULT_MAX ? quarter : PER_IP_DEFAULT_MAX;
    } else if (cfg->max_connections_per_ip >= cfg->max_connections) {
        fprintf(stderr,
                "pkgstored: --max-connections-per-ip: %u must be below --max-connections (%u), "
                "or one address could take every connection\n",
                cfg->max_connections_per_ip, cfg->max_connections);
        return 2;
    }
    return 0;
}

/* "pkgstored: <object>: <reason>"; the library's detail usually names the
 * object already. */
static void store_error(const char *store_path, int error)
{
    const char *detail = pkgstore_error_detail();
    if (*detail && strstr(detail, store_path))
        fprintf(stderr, "pkgstored: %s\n", detail);
    else
        fprintf(stderr, "pkgstored: %s: %s\n", store_path, *detail ? detail : pkgstore_strerror(error));
}

/* Write pending node records, then close the handles in reverse order. */
static int close_store(void)
{
    int error = 0;
    fleet_error err;
    if (g_server.fleet && (error = fleet_close(g_server.fleet, &err)) < 0) {
        char q[600];
        log_msg(LOG_ERROR, "cannot write node records", "detail=%s",
                log_quote(q, sizeof q, err.message));
    }
    g_server.fleet = NULL;
    pkgstore_registry_free(g_server.registry);
    g_server.registry = NULL;
    pkgstore_store_free(g_server.store);
    g_server.store = NULL;
    return error;
}

int main(int argc, char **argv)
{
    server_config *cfg = &g_server.config;
    cfg->listen = "127.0.0.1:8080";
    cfg->store_path = getenv("COLLECTORCTRL_PACKAGES_DIR");
    cfg->max_upload = 4ull << 30;
    cfg->max_json = 1u << 20;
    cfg->max_header = 8u << 10;
    cfg->heartbeat_interval_s = 30;
    cfg->shutdown_timeout_s = 30;
    cfg->zstd_copies = 1;
    fleet_options_init(&cfg->fleet);
    cfg->header_timeout_s = 30;
    cfg->idle_timeout_s = 120;
    cfg->body_timeout_s = 30;
    cfg->min_body_rate = 1024;
    cfg->lock_timeout_ms = 100;
    cfg->session_ttl_s = 28800;
    cfg->max_sessions = 256;

    enum {
        OPT_LISTEN = 256, OPT_STORE, OPT_TOKENS, OPT_MAX_UPLOAD, OPT_MAX_JSON, OPT_MAX_HEADER,
        OPT_THREADS, OPT_HB, OPT_SHUTDOWN, OPT_NO_ZSTD, OPT_NO_FSYNC, OPT_PORT_FILE,
        OPT_LOG_LEVEL, OPT_HELP, OPT_VERSION, OPT_FLEET_DIR, OPT_MAX_NODES, OPT_NODE_EXPIRY,
        OPT_HISTORY_MAX, OPT_NEW_NODES_RATE, OPT_HEADER_TIMEOUT, OPT_IDLE_TIMEOUT,
        OPT_BODY_TIMEOUT, OPT_MIN_BODY_RATE, OPT_MAX_CONNECTIONS, OPT_MAX_PER_IP,
        OPT_LOCK_TIMEOUT, OPT_NODE_CREDENTIALS, OPT_SHARED_AGENT_TOKEN, OPT_TLS_CERT,
        OPT_TLS_KEY, OPT_TLS_CLIENT_CA, OPT_TRUST_DIR, OPT_TRUST_ROOT, OPT_REQUIRE_SIGNATURES,
        OPT_SESSION_TTL, OPT_MAX_SESSIONS, OPT_PUBLIC_URL, OPT_OPAMP_PRIMARY_EMPTY_NAME
    };
    static const struct option options[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
        {"trust-dir", required_argument, NULL, OPT_TRUST_DIR},
        {"trust-root", required_argument, NULL, OPT_TRUST_ROOT},
        {"require-signatures", no_argument, NULL, OPT_REQUIRE_SIGNATURES},
        {"store", required_argument, NULL, OPT_STORE},
        {"tokens", required_argument, NULL, OPT_TOKENS},
        {"node-credentials", required_argument, NULL, OPT_NODE_CREDENTIALS},
        {"allow-shared-agent-token", no_argument, NULL, OPT_SHARED_AGENT_TOKEN},
        {"max-upload", required_argument, NULL, OPT_MAX_UPLOAD},
        {"max-json", required_argument, NULL, OPT_MAX_JSON},
        {"max-header", required_argument, NULL, OPT_MAX_HEADER},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"heartbeat-interval", required_argument, NULL, OPT_HB},
        {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN},
        {"no-zstd", no_argument, NULL, OPT_NO_ZSTD},
        {"no-fsync", no_argument, NULL, OPT_NO_FSYNC},
        {"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
        {"session-ttl", required_argument, NULL, OPT_SESSION_TTL},
        {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"fleet-dir", required_argument, NULL, OPT_FLEET_DIR},
        {"max-nodes", required_argument, NULL, OPT_MAX_NODES},
        {"node-expiry", required_argument, NULL, OPT_NODE_EXPIRY},
        {"history-max", required_argument, NULL, OPT_HISTORY_MAX},
        {"new-nodes-rate", required_argument, NULL, OPT_NEW_NODES_RATE},
        {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
        {"min-body-rate", required_argument, NULL, OPT_MIN_BODY_RATE},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-connections-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
        {"public-url", required_argument, NULL, OPT_PUBLIC_URL},
        {"opamp-primary-empty-name", no_argument, NULL, OPT_OPAMP_PRIMARY_EMPTY_NAME},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    int opt, status;
    uint64_t size;
    opterr = 0; /* getopt's own messages name the full argv[0] path */
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN: cfg->listen = optarg; break;
        case OPT_TLS_CERT: cfg->tls_cert = optarg; break;
        case OPT_TLS_KEY: cfg->tls_key = optarg; break;
        case OPT_TLS_CLIENT_CA: cfg->tls_client_ca = optarg; break;
        case OPT_TRUST_DIR: cfg->trust_dir = optarg; break;
        case OPT_TRUST_ROOT: cfg->trust_root = optarg; break;
        case OPT_REQUIRE_SIGNATURES: cfg->require_signatures = 1; break;
        case OPT_STORE: cfg->store_path = optarg; break;
        case OPT_TOKENS: cfg->tokens_path = optarg; break;
        case OPT_NODE_CREDENTIALS: cfg->credentials_path = optarg; break;
        case OPT_SHARED_AGENT_TOKEN: cfg->allow_shared_agent_token = 1; break;
        case OPT_PORT_FILE: cfg->port_file = optarg; break;
        case OPT_NO_ZSTD: cfg->zstd_copies = 0; break;
        case OPT_NO_FSYNC: cfg->no_fsync = 1; break;
        case OPT_OPAMP_PRIMARY_EMPTY_NAME: cfg->opamp_primary_empty_name = 1; break;
        case OPT_PUBLIC_URL: {
            static char public_url[400];
            char why[200];
            if (opamp_public_url_check(public_url, sizeof public_url, optarg, why, sizeof why) < 0)
                return usage_error("--public-url %s: %s", optarg, why);
            cfg->public_url = public_url;
            break;
        }
        case OPT_MAX_UPLOAD:
            if (parse_size(&cfg->max_upload, optarg) < 0 || cfg->max_upload == 0) {
                fprintf(stderr, "pkgstored: --max-upload: not a size: %s\n", optarg);
                return 2;
            }
            break;
        case OPT_MAX_JSON:
            if (parse_size(&size, optarg) < 0 || size == 0 || size > (256u << 20)) {
                fprintf(stderr, "pkgstored: --max-json: not a size up to 256M: %s\n", optarg);
                return 2;
            }
            cfg->max_json = (size_t)size;
            break;
        case OPT_MAX_HEADER:
            if (parse_size(&size, optarg) < 0 || size < 1024 || size > (48u << 10)) {
                fprintf(stderr, "pkgstored: --max-header: not a size in 1K..48K: %s\n", optarg);
                return 2;
            }
            cfg->max_header = (size_t)size;
            break;
        case OPT_THREADS:
            if ((status = option_uint(&cfg->threads, "threads", optarg, 0, 1024, "")) != 0)
                return status;
            break;
        case OPT_HB:
            if ((status = option_uint(&cfg->heartbeat_interval_s, "heartbeat-interval", optarg, 1,
                                      86400, " seconds")) != 0)
                return status;
            break;
        case OPT_SHUTDOWN:
            if ((status = option_uint(&cfg->shutdown_timeout_s, "shutdown-timeout", optarg, 0,
                                      86400, " seconds")) != 0)
                return status;
            break;
        case OPT_HEADER_TIMEOUT:
            if ((status = option_uint(&cfg->header_timeout_s, "header-timeout", optarg, 1, 3600,
                                      " seconds")) != 0)
                return status;
            break;
        case OPT_IDLE_TIMEOUT:
            if ((status = option_uint(&cfg->idle_timeout_s, "idle-timeout", optarg, 1, 86400,
                                      " seconds")) != 0)
                return status;
            break;
        case OPT_BODY_TIMEOUT:
            if ((status = option_uint(&cfg->body_timeout_s, "body-timeout", optarg, 1, 86400,
                                      " seconds")) != 0)
                return status;
            break;
        case OPT_MIN_BODY_RATE:
            if (parse_size(&cfg->min_body_rate, optarg) < 0 || cfg->min_body_rate > (1ull << 30))
                return usage_error("--min-body-rate: not a size up to 1G: %s", optarg);
            break;
        case OPT_MAX_CONNECTIONS:
            if ((status = option_uint(&cfg->max_connections, "max-connections", optarg, 1,
                                      1u << 20, "")) != 0)
                return status;
            break;
        case OPT_MAX_PER_IP:
            if ((status = option_uint(&cfg->max_connections_per_ip, "max-connections-per-ip",
                                      optarg, 0, 1u << 20, "")) != 0)
                return status;
            cfg->per_ip_set = 1;
            break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(&log_threshold, optarg) < 0) {
                fprintf(stderr, "pkgstored: --log-level: not debug|info|warn|error: %s\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_FLEET_DIR: cfg->fleet_dir = optarg; break;
        case OPT_MAX_NODES: {
            unsigned int n;
            if (parse_uint(&n, optarg, 100000000) < 0 || n == 0)
                return usage_error("--max-nodes: not a number in 1..100000000: %s", optarg);
            cfg->fleet.max_nodes = n;
            break;
        }
        case OPT_NODE_EXPIRY:
            if (parse_uint(&cfg->fleet.expiry_s, optarg, 100u * 365 * 86400) < 0)
                return usage_error("--node-expiry: not a number of seconds: %s", optarg);
            break;
        case OPT_SESSION_TTL:
            if (parse_uint(&cfg->session_ttl_s, optarg, 7u * 86400) < 0 || cfg->session_ttl_s == 0)
                return usage_error("--session-ttl: not a number of seconds in 1..604800: %s",
                                   optarg);
            break;
        case OPT_MAX_SESSIONS:
            if (parse_uint(&cfg->max_sessions, optarg, 65536) < 0 || cfg->max_sessions == 0)
                return usage_error("--max-sessions: not a number in 1..65536: %s", optarg);
            break;
        case OPT_LOCK_TIMEOUT:
            if (parse_uint(&cfg->lock_timeout_ms, optarg, 60000) < 0)
                return usage_error("--lock-timeout: not a number of milliseconds in 0..60000: %s",
                                   optarg);
            break;
        case OPT_HISTORY_MAX:
            if (parse_uint(&cfg->fleet.history_max, optarg, 1024) < 0 ||
                cfg->fleet.history_max == 0)
                return usage_error("--history-max: not a number in 1..1024: %s", optarg);
            break;
        case OPT_NEW_NODES_RATE: {
            unsigned int rate = 0, burst = 0;
            char rate_text[32];
            const char *slash = strchr(optarg, '/');
            snprintf(rate_text, sizeof rate_text, "%.*s",
                     (int)(slash ? (size_t)(slash - optarg) : strlen(optarg)), optarg);
            if (parse_uint(&rate, rate_text, 1000000) < 0 ||
                (slash && (parse_uint(&burst, slash + 1, 100000000) < 0 || burst == 0)))
                return usage_error("--new-nodes-rate: not N or N/BURST: %s", optarg);
            cfg->fleet.new_nodes_per_s = rate;
            if (slash)
                cfg->fleet.new_nodes_burst = burst;
            else if (rate && cfg->fleet.new_nodes_burst < rate)
                cfg->fleet.new_nodes_burst = rate;
            break;
        }
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("pkgstored (pkgstore) %s\n", pkgstore_library_version());
            return 0;
        case ':': return usage_error("%s: needs a value", argv[optind - 1]);
        default:
            /* optopt: an unknown short option (argv[optind - 1] may not hold
             * it yet); 0 for an unknown long one */
            if (optopt)
                return usage_error("-%c: unknown option", optopt);
            return usage_error("%s: unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("%s: unexpected argument", argv[optind]);
    if (!cfg->store_path || !*cfg->store_path) {
        fprintf(stderr, "pkgstored: no store: pass --store DIR or set COLLECTORCTRL_PACKAGES_DIR\n");
        return 2;
    }
    if (!cfg->tls_cert != !cfg->tls_key)
        return usage_error("%s: needs %s too", cfg->tls_cert ? "--tls-cert" : "--tls-key",
                           cfg->tls_cert ? "--tls-key" : "--tls-cert");
    if (cfg->tls_client_ca && !cfg->tls_cert)
        return usage_error("--tls-client-ca: needs --tls-cert and --tls-key (client "
                           "certificates are a part of HTTPS)");
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    if (resolve_listen(&addr, &addr_len, cfg->listen) < 0) {
        fprintf(stderr, "pkgstored: --listen: not HOST:PORT: %s\n", cfg->listen);
        return 2;
    }
    if (cfg->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
            MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
            fprintf(stderr, "pkgstored: --tls-cert: this libmicrohttpd was built without TLS "
                            "(or without its certificate callback)\n");
            return 1;
        }
        char tls_err[4600];
        if (tls_load(cfg->tls_cert, cfg->tls_key, tls_err, sizeof tls_err) < 0) {
            fprintf(stderr, "pkgstored: %s\n", tls_err);
            return 1;
        }
        if (cfg->tls_client_ca &&
            tls_client_ca_load(cfg->tls_client_ca, tls_err, sizeof tls_err) < 0) {
            fprintf(stderr, "pkgstored: --tls-client-ca: %s\n", tls_err);
            tls_free();
            return 1;
        }
    }
    unsigned int threads = cfg->threads;
    if (threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (unsigned int)cores : 1;
    }
    rlim_t nofile = 0;
    int budget_status = connection_budget(cfg, threads, &nofile);
    if (budget_status != 0)
        return budget_status;

    /* Workers inherit this mask; only sigwait() below sees the signals. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    pkgstore_store_options store_options = PKGSTORE_STORE_OPTIONS_INIT;
    store_options.durability = cfg->no_fsync ? PKGSTORE_DURABILITY_NONE : PKGSTORE_DURABILITY_FSYNC;
    store_options.zstd_copies = cfg->zstd_copies;
    int error = pkgstore_store_open(&g_server.store, cfg->store_path, &store_options);
    if (error < 0) {
        store_error(cfg->store_path, error);
        return 1;
    }
    /* No request thread waits behind gc or repair: it answers 503. */
    (void)pkgstore_store_set_lock_timeout(g_server.store, (int)cfg->lock_timeout_ms);

    error = pkgstore_registry_open(&g_server.registry, g_server.store);
    if (error < 0) {
        store_error(cfg->store_path, error);
        close_store();
        tls_free();
        return 1;
    }
    char fleet_dir[4200];
    snprintf(fleet_dir, sizeof fleet_dir, "%s.fleet", cfg->store_path);
    cfg->fleet.dir = cfg->fleet_dir ? cfg->fleet_dir : fleet_dir;
    cfg->fleet.heartbeat_interval_s = cfg->heartbeat_interval_s;
    cfg->fleet.no_fsync = cfg->no_fsync;
    cfg->fleet.store = g_server.store;
    char trust_dir[4200], trust_err[4600];
    snprintf(trust_dir, sizeof trust_dir, "%s.trust", cfg->store_path);
    if (trust_open(cfg->trust_dir ? cfg->trust_dir : trust_dir, cfg->trust_root,
                   cfg->require_signatures, trust_err, sizeof trust_err) < 0) {
        fprintf(stderr, "pkgstored: trust: %s\n", trust_err);
        trust_close();
        close_store();
        tls_free();
        return 1;
    }
    fleet_error fleet_err;
    if (fleet_open(&g_server.fleet, g_server.registry, &cfg->fleet, &fleet_err) < 0) {
        fprintf(stderr, "pkgstored: %s\n", fleet_err.message);
        close_store();
        tls_free();
        return 1;
    }

    if (opamp_agents_new(&g_server.opamp, cfg->fleet.max_nodes) < 0) {
        fprintf(stderr, "pkgstored: opamp: out of memory\n");
        close_store();
        tls_free();
        return 1;
    }

    char err[4600];
    if (tokens_open(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pkgstored: tokens: %s\n", err);
        close_store();
        tls_free();
        return 1;
    }

    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The certificate comes from tls_certificate_callback at each
     * handshake, so that SIGHUP can change it (tls.c). */
    /* With --tls-client-ca, libmicrohttpd's trust makes GnuTLS ask every
     * client for a certificate (optional: tokens still work); tls.c
     * verifies what is presented, against the list SIGHUP reloads. */
    struct MHD_OptionItem tls_option[3] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)tls_certificate_callback},
        {MHD_OPTION_END, 0, NULL},
        {MHD_OPTION_END, 0, NULL}};
    char *client_ca_pem = NULL;
    if (cfg->tls_client_ca) {
        size_t pem_len;
        if (read_whole_file(&client_ca_pem, &pem_len, cfg->tls_client_ca, 1u << 20) < 0) {
            fprintf(stderr, "pkgstored: --tls-client-ca: %s: cannot read: %s\n",
                    cfg->tls_client_ca, strerror(errno));
            tokens_free(g_server.tokens);
            close_store();
            tls_free();
            return 1;
        }
        tls_option[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, client_ca_pem};
    }
    if (cfg->tls_cert)
        flags |= MHD_USE_TLS;
    else
        tls_option[0].option = MHD_OPTION_END;
    struct MHD_OptionItem pool_option[2] = {{MHD_OPTION_THREAD_POOL_SIZE, threads, NULL},
                                            {MHD_OPTION_END, 0, NULL}};
    if (threads < 2)
        pool_option[0].option = MHD_OPTION_END;
    guard_config guard = {cfg->header_timeout_s, cfg->idle_timeout_s, cfg->body_timeout_s,
                          cfg->min_body_rate};
    if (guard_start(&guard) < 0) {
        fprintf(stderr, "pkgstored: cannot start the connection watchdog: %s\n", strerror(errno));
        tokens_free(g_server.tokens);
        close_store();
        tls_free();
        free(client_ca_pem);
        return 1;
    }
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_access, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, guard_notify_connection, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, http_uri_log, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, http_unescape_none, NULL,
        /* The per-connection pool holds the headers and the read buffer.
         * libmicrohttpd zeroes all of it between requests, so it is kept
         * small: a large pool costs every keep-alive request a big memset. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(cfg->max_header + POOL_EXTRA),
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
        MHD_OPTION_ARRAY, pool_option,
        MHD_OPTION_ARRAY, tls_option,
        MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "pkgstored: %s: cannot listen (address in use or not permitted?)\n",
                cfg->listen);
        guard_stop();
        tokens_free(g_server.tokens);
        close_store();
        tls_free();
        free(client_ca_pem);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned int port = info ? info->port : 0;
    if (cfg->port_file && write_port_file(cfg->port_file, port) < 0) {
        fprintf(stderr, "pkgstored: %s: %s\n", cfg->port_file, strerror(errno));
        guard_stop();
        MHD_stop_daemon(daemon);
        tokens_free(g_server.tokens);
        close_store();
        tls_free();
        free(client_ca_pem);
        return 1;
    }
    char q3[4300], q4[300], q5[4300];
    fleet_stats fleet_now;
    fleet_stats_get(g_server.fleet, &fleet_now);
    size_t fleet_nodes = fleet_now.nodes;
    log_msg(LOG_INFO, "listening",
            "listen=%s port=%u tls=%s store=%s fleet=%s nodes=%zu threads=%u max_upload=%" PRIu64
            " tokens=%zu max_connections=%u max_connections_per_ip=%u nofile=%llu pid=%ld",
            log_quote(q4, sizeof q4, cfg->listen), port, cfg->tls_cert ? "on" : "off",
            log_quote(q3, sizeof q3, cfg->store_path), log_quote(q5, sizeof q5, cfg->fleet.dir),
            fleet_nodes, threads, cfg->max_upload, tokens_count(g_server.tokens),
            cfg->max_connections, cfg->max_connections_per_ip, (unsigned long long)nofile,
            (long)getpid());

    if (!cfg->tls_cert && !is_loopback(&addr))
        log_msg(LOG_WARN,
                "plain HTTP on an address other than loopback: tokens and offers cross the "
                "network in clear; serve HTTPS with --tls-cert and --tls-key",
                "listen=%s", q4);

    int signal_number = 0;
    for (;;) {
        if (sigwait(&stop_signals, &signal_number) != 0)
            continue;
        if (signal_number != SIGHUP)
            break;
        reload_certificate(cfg);
    }
    log_msg(LOG_INFO, "shutting down", "signal=%s in_flight=%ld",
            signal_number == SIGTERM ? "SIGTERM" : "SIGINT", (long)atomic_load(&g_server.in_flight));

    MHD_socket listen_fd = MHD_quiesce_daemon(daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        long busy = atomic_load(&g_server.in_flight);
        if (busy <= 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)cfg->shutdown_timeout_s) {
            log_msg(LOG_WARN, "shutdown timeout: dropping requests", "in_flight=%ld", busy);
            break;
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    guard_stop();
    MHD_stop_daemon(daemon);
    mhd_log_flush();
    int flushed = close_store();
    opamp_agents_free(g_server.opamp);
    g_server.opamp = NULL;
    console_free();
    tokens_free(g_server.tokens);
    credentials_unload();
    trust_close();
    tls_free();
    free(client_ca_pem);
    log_msg(LOG_INFO, "stopped", "pid=%ld", (long)getpid());
    return flushed < 0 ? 1 : 0;
}
