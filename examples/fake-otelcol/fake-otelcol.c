/*
 * fake-otelcol - a stand-in for an OpenTelemetry Collector, for the agent's
 * tests, benchmarks and the demo.
 *
 * It behaves like a collector in the ways the Supervisor can observe:
 *   fake-otelcol --version
 *   fake-otelcol --config FILE validate     accept (exit 0) or reject (exit 1)
 *   fake-otelcol --config FILE              run: listen on the configured
 *                                           ports, answer the health endpoint
 *
 * One source builds several variants (FAKE_VARIANT, set by the Makefile):
 *   good               everything works
 *   validate-fails     "validate" rejects every config
 *   crashes-at-start   runs, then exits 1 before binding anything
 *   crashes-after      runs healthy for crash_after_s seconds (default 2), then exits 1
 *   never-healthy      binds its ports, but the health endpoint answers 503
 *   no-bind            answers health 200 but never binds the configured ports
 *   ignores-sigterm    ignores SIGTERM (the Supervisor must SIGKILL it)
 * FAKE_VERSION is baked in so binaries of different versions differ in digest.
 *
 * The config is a line format that is also valid YAML:
 *   # comment
 *   ports: [4317, 4318]        TCP ports to listen on (127.0.0.1)
 *   health_port: 13133         health endpoint port (default 13133)
 *   crash_after_s: 2           the crashes-after variant's delay
 *   validate_sleep_s: 0        make "validate" slow (to test timeouts)
 *   invalid: true              "validate" rejects this config (any variant);
 *   invalid: TEXT              ... with TEXT as its reason, the way a real
 *                              collector names the bad entry (other than
 *                              "false"; the collector still runs with it)
 * Any other key is rejected by "validate" and at start, as a collector does.
 *
 * The health endpoint is served by libmicrohttpd: GET any path answers
 * 200 {"status":"Server available"} (503 in never-healthy).
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#ifndef FAKE_VARIANT
#define FAKE_VARIANT "good"
#endif
#ifndef FAKE_VERSION
#define FAKE_VERSION "0.0.0"
#endif

#define MAX_PORTS 16

struct fake_config {
    int ports[MAX_PORTS];
    int port_count;
    int health_port;
    int crash_after_s;
    int validate_sleep_s;
    int invalid;
    char invalid_reason[256]; /* "" for plain "invalid: true" */
};

static int is_variant(const char *name)
{
    return strcmp(FAKE_VARIANT, name) == 0;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s fake-otelcol[%ld] ", when, (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int parse_int(const char *text, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *out = (int)value;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Parse "[a, b]" or "a, b" or "a". */
static int parse_ports(char *value, struct fake_config *cfg, char *err, size_t errlen)
{
    char *p = value;
    if (*p == '[') {
        p++;
        char *close = strrchr(p, ']');
        if (!close) {
            snprintf(err, errlen, "ports: missing ']'");
            return -1;
        }
        *close = '\0';
    }
    for (char *tok = strtok(p, ","); tok; tok = strtok(NULL, ",")) {
        tok = trim(tok);
        if (*tok == '\0')
            continue;
        if (cfg->port_count == MAX_PORTS) {
            snprintf(err, errlen, "ports: more than %d ports", MAX_PORTS);
            return -1;
        }
        if (parse_int(tok, 1, 65535, &cfg->ports[cfg->port_count]) < 0) {
            snprintf(err, errlen, "ports: '%s' is not a port number", tok);
            return -1;
        }
        cfg->port_count++;
    }
    return 0;
}

static int load_config(const char *path, struct fake_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->health_port = 13133;
    cfg->crash_after_s = 2;

    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *text = trim(line);
        if (*text == '\0')
            continue;
        char *colon = strchr(text, ':');
        if (!colon) {
            snprintf(err, errlen, "%s:%d: expected 'key: value'", path, lineno);
            rc = -1;
            break;
        }
        *colon = '\0';
        char *key = trim(text), *value = trim(colon + 1);
        int bad = 0;
        if (strcmp(key, "ports") == 0)
            bad = parse_ports(value, cfg, err, errlen);
        else if (strcmp(key, "health_port") == 0)
            bad = parse_int(value, 1, 65535, &cfg->health_port);
        else if (strcmp(key, "crash_after_s") == 0)
            bad = parse_int(value, 0, 86400, &cfg->crash_after_s);
        else if (strcmp(key, "validate_sleep_s") == 0)
            bad = parse_int(value, 0, 86400, &cfg->validate_sleep_s);
        else if (strcmp(key, "invalid") == 0) {
            cfg->invalid = strcmp(value, "false") != 0;
            if (cfg->invalid && strcmp(value, "true") != 0)
                snprintf(cfg->invalid_reason, sizeof cfg->invalid_reason, "%s", value);
        } else {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, key);
            rc = -1;
            break;
        }
        if (bad) {
            if (strcmp(key, "ports") != 0)
                snprintf(err, errlen, "%s:%d: %s: bad value '%s'", path, lineno, key, value);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

static int validate(const char *config_path)
{
    struct fake_config cfg;
    char err[512];
    if (load_config(config_path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "Error: failed to get config: %s\n", err);
        return 1;
    }
    if (cfg.validate_sleep_s > 0)
        sleep((unsigned)cfg.validate_sleep_s);
    if (cfg.invalid) {
        fprintf(stderr, "Error: invalid configuration: %s\n",
                cfg.invalid_reason[0] ? cfg.invalid_reason : "config marked invalid");
        return 1;
    }
    if (is_variant("validate-fails")) {
        printf("fake-otelcol %s: checking config\n", FAKE_VERSION);
        fprintf(stderr, "Error: invalid configuration: processors::foo: unknown type: \"foo\"\n");
        fprintf(stderr, "2 errors occurred\n");
        return 1;
    }
    printf("fake-otelcol %s: config %s is valid\n", FAKE_VERSION, config_path);
    return 0;
}

static enum MHD_Result answer_health(void *cls, struct MHD_Connection *connection,
                                     const char *url, const char *method,
                                     const char *version, const char *upload_data,
                                     size_t *upload_data_size, void **req_cls)
{
    (void)cls; (void)url; (void)version; (void)upload_data; (void)upload_data_size;
    (void)req_cls;
    int healthy = !is_variant("never-healthy");
    unsigned status = healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    const char *body = healthy ? "{\"status\":\"Server available\",\"version\":\"" FAKE_VERSION "\"}\n"
                               : "{\"status\":\"Server not available\"}\n";
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return ret;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int run(const char *config_path)
{
    struct fake_config cfg;
    char err[512];
    if (load_config(config_path, &cfg, err, sizeof err) < 0) {
        logf_("level=error msg=\"cannot load config\" error=\"%s\"", err);
        return 1;
    }
    logf_("level=info msg=\"starting\" version=%s variant=%s ports=%d health_port=%d",
          FAKE_VERSION, FAKE_VARIANT, cfg.port_count, cfg.health_port);

    if (is_variant("crashes-at-start")) {
        logf_("level=error msg=\"panic: runtime error: invalid memory address\"");
        return 1;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    if (is_variant("ignores-sigterm"))
        signal(SIGTERM, SIG_IGN);
    else
        sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return 1;
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        logf_("level=error msg=\"signalfd\" error=\"%s\"", strerror(errno));
        return 1;
    }

    struct pollfd pfds[MAX_PORTS + 1];
    int nfds = 0;
    pfds[nfds++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    if (!is_variant("no-bind")) {
        for (int i = 0; i < cfg.port_count; i++) {
            int fd = listen_on(cfg.ports[i]);
            if (fd < 0) {
                logf_("level=error msg=\"cannot listen\" port=%d error=\"%s\"", cfg.ports[i],
                      strerror(errno));
                return 1;
            }
            pfds[nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
        }
    }

    struct sockaddr_in health_addr = {.sin_family = AF_INET,
                                      .sin_port = htons((uint16_t)cfg.health_port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                         (uint16_t)cfg.health_port, NULL, NULL, answer_health, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&health_addr,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)5, MHD_OPTION_END);
    if (!daemon) {
        logf_("level=error msg=\"cannot start health endpoint\" port=%d", cfg.health_port);
        return 1;
    }
    logf_("level=info msg=\"Everything is ready. Begin running and processing data.\"");

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int exit_code = 0;
    for (;;) {
        int timeout_ms = -1;
        if (is_variant("crashes-after")) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 +
                              (now.tv_nsec - start.tv_nsec) / 1000000;
            long left = cfg.crash_after_s * 1000L - elapsed_ms;
            if (left <= 0) {
                logf_("level=error msg=\"panic: send on closed channel\"");
                exit_code = 1;
                break;
            }
            timeout_ms = (int)left;
        }
        int n = poll(pfds, (nfds_t)nfds, timeout_ms);
        if (n < 0 && errno != EINTR) {
            exit_code = 1;
            break;
        }
        if (n <= 0)
            continue;
        if (pfds[0].revents & POLLIN) {
            struct signalfd_siginfo info;
            if (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
                logf_("level=info msg=\"received signal, shutting down\" signal=%u", info.ssi_signo);
                break;
            }
        }
        for (int i = 1; i < nfds; i++) {
            if (pfds[i].revents & POLLIN) {
                int conn = accept4(pfds[i].fd, NULL, NULL, SOCK_CLOEXEC);
                if (conn >= 0)
                    close(conn);
            }
        }
    }
    MHD_stop_daemon(daemon);
    for (int i = 1; i < nfds; i++)
        close(pfds[i].fd);
    close(sfd);
    logf_("level=info msg=\"shutdown complete\" exit=%d", exit_code);
    return exit_code;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fake-otelcol --config FILE [validate]\n"
            "       fake-otelcol --version | --help\n"
            "A fake OpenTelemetry Collector (variant %s) for pkgstore-agent tests.\n",
            FAKE_VARIANT);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int do_validate = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-v") == 0) {
            printf("fake-otelcol version %s (%s)\n", FAKE_VERSION, FAKE_VARIANT);
            return 0;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "fake-otelcol: --config: missing file\n");
                return 2;
            }
            config_path = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            config_path = arg + 9;
        } else if (strcmp(arg, "validate") == 0) {
            do_validate = 1;
        } else {
            fprintf(stderr, "fake-otelcol: %s: unknown argument\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (!config_path) {
        fprintf(stderr, "fake-otelcol: --config: required\n");
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return do_validate ? validate(config_path) : run(config_path);
}
