/*
 * pkgstore-agent-helper: the short-lived worker of pkgstore-agent.
 *
 * The resident Supervisor maps neither libcurl nor OpenSSL nor libarchive
 * (with their dependencies they cost more than its whole idle memory
 * budget). It runs this program once per network request, hash,
 * verification or extraction:
 *
 *   pkgstore-agent-helper [--token-file F] [--node ID] [--ca-file F] [--timeout S] COMMAND ARGS...
 *
 * --ca-file names the only CA an https:// server may chain to (the agent's
 * server.ca_file, for requests to server.url).
 *
 *   http-post URL            POST stdin as JSON    {"status":N,"body":"..."}
 *   http-get URL             GET a small body      {"status":N,"body":"..."}
 *   health URL               200 within --timeout  {"status":200}
 *   download URL PART MAX    resumable download    {"size":N}
 *   fetch URL FILE MAX       a document of at most MAX bytes, no encoding {"size":N}
 *   verify FILE DIGEST MAX   size and SHA-256      {"digest":"sha256:..."}
 *   prepare FILE FORMAT ENTRYPOINT WORKDIR
 *                            ("": none)            {"executable":P,"extract_dir":P|null,
 *                                                   "digest":"sha256:..." (archives)}
 *   digest FILE              SHA-256 of a file     {"digest":"sha256:..."}
 *   rmtree DIR               remove a tree         {}
 *   root-check FILE          a pinned root.json, self-signed to threshold
 *                                                  {"version":N,"threshold":K,"keys":N}
 *   root-rotate NEW CURRENT  NEW may replace CURRENT (docs/trust.md, Rotation)
 *                                                  {"version":N,"threshold":K,"keys":N}
 *   verify-offer ROOT MANIFEST MANIFEST_DIGEST NAME VERSION TYPE PLATFORM
 *                            stdin: the offer's signatures (a JSON array);
 *                            the manifest blob's digest, a threshold of
 *                            signatures by ROOT's keys, the signed manifest
 *                            matching the offer       {"digest","size","format",
 *                                                  "entrypoint","platform","valid",
 *                                                  "threshold","root_version"}
 *   opamp-exchange SERVER_URL PATH STATE_DIR
 *                            stdin: the JSON heartbeat; sent as an OpAMP
 *                            AgentToServer to SERVER_URL PATH, the
 *                            ServerToAgent read back as the JSON reply
 *                            (docs/opamp.md)    {"status":N,"body":"...",
 *                                                  "retry_after_s":S (a pause asked for)}
 *   verify-revocations ROOT  stdin: GET /v1/trust/revocations' body; those
 *                            signed to threshold by ROOT  {"revoked":[{"name",
 *                                                  "version","reason"}],"ignored":[...]}
 *
 * stdout carries exactly one JSON object: {"ok":true,...} or
 * {"ok":false,"code":<PKGSTORE_E*>,"error":"<detail>"}; the exit status is
 * 0, 1 (the operation failed) or 2 (usage). Log lines go to stderr, which
 * is the agent's. The helper dies with the agent (PR_SET_PDEATHSIG): no
 * work of it outlives the process that asked for it.
 */
#include "helper.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#define INPUT_MAX (16u << 20)

static json_t *reply;

static int fail(int code, const char *detail)
{
    json_t *out = json_pack("{s:b, s:i, s:s}", "ok", 0, "code", code, "error",
                            detail && *detail ? detail : pkgstore_strerror(code));
    if (!out) /* detail not UTF-8 */
        out = json_pack("{s:b, s:i, s:s}", "ok", 0, "code", code, "error", pkgstore_strerror(code));
    json_dumpf(out, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(out);
    return code == PKGSTORE_EINVALID ? 2 : 1;
}

static int fail_lib(int code)
{
    return fail(code, pkgstore_error_detail());
}

static int succeed(void)
{
    json_object_set_new(reply, "ok", json_true());
    json_dumpf(reply, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    return 0;
}

static char *read_stdin(size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (len == cap) {
            if (cap >= INPUT_MAX) {
                free(buf);
                return NULL;
            }
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (buf)
        buf[len] = '\0';
    *len_out = len;
    return buf;
}

static int parse_u64(uint64_t *out, const char *text)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int cmd_http(const char *cmd, char **args, const char *token, double timeout_s)
{
    char *body = NULL, *response = NULL;
    size_t len = 0;
    long status = 0;
    if (!strcmp(cmd, "http-post") && !(body = read_stdin(&len)))
        return fail(PKGSTORE_EIO, "cannot read the request body from stdin");
    int rc = helper_http_request(&response, &status, token, args[0], body, timeout_s);
    free(body);
    if (rc < 0)
        return fail(rc, agent_error());
    json_t *text = json_string(response ? response : "");
    free(response);
    json_object_set_new(reply, "status", json_integer(status));
    json_object_set_new(reply, "body", text ? text : json_string(""));
    return succeed();
}

static int cmd_digest_of(const char *path, const char *key)
{
    pkgstore_digest digest;
    char text[PKGSTORE_DIGEST_STR_SIZE];
    int rc = pkgstore_digest_file(&digest, NULL, path);
    if (rc < 0)
        return rc;
    pkgstore_digest_format(text, &digest);
    json_object_set_new(reply, key, json_string(text));
    return 0;
}

static int cmd_prepare(char **args)
{
    pkgstore_archive_format format = PKGSTORE_ARCHIVE_UNKNOWN;
    if (args[1][0] && pkgstore_archive_format_parse(&format, args[1]) < 0)
        return fail_lib(PKGSTORE_EFORMAT);
    char *exe = NULL, *dir = NULL;
    int rc = pkgstore_install_prepare(&exe, &dir, args[0], format, args[2][0] ? args[2] : NULL,
                                      args[3], NULL);
    if (rc < 0)
        return fail_lib(rc);
    json_object_set_new(reply, "executable", json_string(exe));
    json_object_set_new(reply, "extract_dir", dir ? json_string(dir) : json_null());
    /* A plain binary is the verified download itself: its digest is known. */
    rc = dir ? cmd_digest_of(exe, "digest") : 0;
    if (rc < 0) {
        int code = fail_lib(rc);
        if (dir)
            pkgstore_archive_remove_tree(dir);
        pkgstore_free(exe);
        pkgstore_free(dir);
        return code;
    }
    pkgstore_free(exe);
    pkgstore_free(dir);
    return succeed();
}

static const struct {
    const char *name;
    int argc;
} commands[] = {
    {"http-post", 1}, {"http-get", 1}, {"health", 1}, {"download", 3}, {"fetch", 3},
    {"verify", 3},    {"prepare", 4},  {"digest", 1}, {"rmtree", 1},
    {"root-check", 1}, {"root-rotate", 2}, {"verify-offer", 7}, {"verify-revocations", 1},
    {"opamp-exchange", 3},
};

static int cmd_opamp(char **args, const char *token, double timeout_s)
{
    size_t len = 0;
    char *input = read_stdin(&len);
    if (!input)
        return fail(PKGSTORE_EIO, "cannot read the heartbeat from stdin");
    char detail[2048] = "";
    int rc = helper_opamp_exchange(reply, args[0], args[1], args[2], token, input, len, timeout_s,
                                   detail, sizeof detail);
    free(input);
    if (rc == PKGSTORE_EINVALID)
        rc = PKGSTORE_EFORMAT; /* an answer, not a usage error */
    return rc < 0 ? fail(rc, detail) : succeed();
}

static int cmd_trust(const char *cmd, char **args)
{
    char detail[2048] = "";
    int rc;
    if (!strcmp(cmd, "root-check")) {
        rc = helper_root_check(reply, args[0], detail, sizeof detail);
    } else if (!strcmp(cmd, "root-rotate")) {
        rc = helper_root_rotate(reply, args[0], args[1], detail, sizeof detail);
    } else {
        size_t len = 0;
        char *input = read_stdin(&len);
        if (!input)
            return fail(PKGSTORE_EIO, "cannot read stdin");
        if (!strcmp(cmd, "verify-offer"))
            rc = helper_verify_offer(reply, args, input, len, detail, sizeof detail);
        else
            rc = helper_verify_revocations(reply, args[0], input, len, detail, sizeof detail);
        free(input);
    }
    /* a refusal is an answer, not a usage error: exit 1, never 2 */
    if (rc == PKGSTORE_EINVALID)
        rc = PKGSTORE_EFORMAT;
    return rc < 0 ? fail(rc, detail) : succeed();
}

static int run(const char *cmd, char **args, const char *token, double timeout_s)
{
    uint64_t size = 0;
    int rc;
    if (!strcmp(cmd, "http-post") || !strcmp(cmd, "http-get"))
        return cmd_http(cmd, args, token, timeout_s);
    if (!strcmp(cmd, "health")) {
        long status = 0;
        rc = helper_http_health(args[0], timeout_s, &status);
        json_object_set_new(reply, "status", json_integer(status));
        return rc < 0 ? fail(rc, agent_error()) : succeed();
    }
    if (!strcmp(cmd, "download") || !strcmp(cmd, "fetch")) {
        if (parse_u64(&size, args[2]) < 0)
            return fail(PKGSTORE_EINVALID, "download: MAX must be a byte count");
        uint64_t got = 0;
        /* fetch: MAX bounds a document of unknown size, so no zstd (whose
         * short-body check needs the exact size) */
        rc = helper_http_download(token, args[0], args[1], size, !strcmp(cmd, "download"),
                                  timeout_s, &got);
        json_object_set_new(reply, "size", json_integer((json_int_t)got));
        return rc < 0 ? fail(rc, agent_error()) : succeed();
    }
    if (!strcmp(cmd, "verify")) {
        pkgstore_digest expected, actual;
        if (pkgstore_digest_parse(&expected, args[1]) < 0)
            return fail_lib(PKGSTORE_EINVALID);
        if (parse_u64(&size, args[2]) < 0)
            return fail(PKGSTORE_EINVALID, "verify: MAX must be a byte count");
        rc = pkgstore_install_verify(&actual, args[0], &expected, size);
        if (rc < 0)
            return fail_lib(rc);
        json_object_set_new(reply, "digest", json_string(args[1]));
        return succeed();
    }
    if (!strcmp(cmd, "opamp-exchange"))
        return cmd_opamp(args, token, timeout_s);
    if (!strcmp(cmd, "prepare"))
        return cmd_prepare(args);
    if (!strcmp(cmd, "digest"))
        return (rc = cmd_digest_of(args[0], "digest")) < 0 ? fail_lib(rc) : succeed();
    if (!strncmp(cmd, "root-", 5) || !strncmp(cmd, "verify-", 7))
        return cmd_trust(cmd, args);
    if (!strcmp(cmd, "rmtree"))
        return (rc = pkgstore_archive_remove_tree(args[0])) < 0 ? fail_lib(rc) : succeed();
    return fail(PKGSTORE_EINVALID, "unknown command");
}

/* Die with the agent: a file operation must not outlive the process that
 * journaled it, or a restarted agent could recover under its feet. */
static int tie_to_agent(void)
{
    const char *agent = getenv("PKGSTORE_AGENT_PID");
    if (!agent)
        return 0;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return -1;
    return atol(agent) == (long)getppid() ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"token-file", required_argument, NULL, 't'},
        {"node", required_argument, NULL, 'n'},
        {"ca-file", required_argument, NULL, 'c'},
        {"client-cert", required_argument, NULL, 'C'},
        {"client-key", required_argument, NULL, 'K'},
        {"timeout", required_argument, NULL, 'T'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *token_file = NULL, *ca_file = NULL, *client_cert = NULL, *client_key = NULL;
    double timeout_s = 30;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
        switch (opt) {
        case 't':
            token_file = optarg;
            break;
        case 'n':
            helper_http_set_node(optarg);
            break;
        case 'c':
            ca_file = optarg;
            break;
        case 'C':
            client_cert = optarg;
            break;
        case 'K':
            client_key = optarg;
            break;
        case 'T': {
            char *end;
            timeout_s = strtod(optarg, &end);
            if (*end || !(timeout_s > 0))
                return fail(PKGSTORE_EINVALID, "--timeout: must be a positive number of seconds");
            break;
        }
        case 'V':
            printf(HELPER_NAME " %s (libpkgstore %s)\n", PKGSTORE_VERSION_STRING,
                   pkgstore_library_version());
            return 0;
        case 'h':
            printf("usage: " HELPER_NAME " [--token-file F] [--node ID] [--ca-file F]\n"
                   "       [--client-cert F --client-key F] [--timeout S] COMMAND ARGS...\n"
                   "The worker process of pkgstore-agent(8); not meant to be run by hand.\n"
                   "See pkgstore-agent-helper(8).\n");
            return 0;
        default:
            return fail(PKGSTORE_EINVALID, "unknown option");
        }
    }
    if (optind >= argc)
        return fail(PKGSTORE_EINVALID, "no command (see --help)");
    const char *cmd = argv[optind];
    size_t i = 0;
    for (; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            break;
    if (i == sizeof commands / sizeof commands[0])
        return fail(PKGSTORE_EINVALID, "unknown command (see --help)");
    if (argc - optind - 1 != commands[i].argc)
        return fail(PKGSTORE_EINVALID, "wrong number of arguments (see --help)");
    if (tie_to_agent() < 0)
        return fail(PKGSTORE_EINVALID, "the agent that started this helper is gone");
    signal(SIGPIPE, SIG_IGN);
    char *token = NULL;
    if (token_file && !(token = agent_trimmed(agent_read_small_file(token_file, 4096)))) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s: cannot read: %s", token_file, strerror(errno));
        return fail(PKGSTORE_EIO, detail);
    }
    reply = json_object();
    int http = !strncmp(cmd, "http-", 5) || !strcmp(cmd, "health") || !strcmp(cmd, "download") ||
               !strcmp(cmd, "fetch") || !strcmp(cmd, "opamp-exchange");
    int status;
    if (http && helper_http_init(ca_file, client_cert, client_key) < 0)
        status = fail(PKGSTORE_ENET, agent_error());
    else
        status = run(cmd, argv + optind + 1, token, timeout_s);
    if (http)
        helper_http_cleanup();
    json_decref(reply);
    free(token);
    fflush(stdout);
    return status;
}
