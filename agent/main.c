/*
 * pkgstore-agent: the Supervisor on an edge node. Parses the command line,
 * loads the configuration and runs the event loop: supervise the children,
 * heartbeat with jitter, back off while the server is unreachable, and stop
 * cleanly on SIGTERM/SIGINT.
 */
#include "supervisor.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONFIG "/etc/pkgstore/agent.yaml"
#define RETRY_AFTER_MAX_S 3600.0   /* the longest pause a server may ask for */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " AGENT_NAME " [--config FILE]\n"
            "       " AGENT_NAME " --check-config [--json] [--config FILE]\n"
            "       " AGENT_NAME " --version | --help\n"
            "\n"
            "Supervise an OpenTelemetry Collector and its addon sidecars, heartbeat to\n"
            "pkgstored and apply package offers safely: download, verify, validate,\n"
            "swap (keeping a .bak), monitor, and roll back automatically on failure.\n"
            "\n"
            "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
            "      --check-config  load the configuration, print it resolved, exit\n"
            "      --json          with --check-config: print JSON\n"
            "      --version       print the version\n"
            "  -h, --help          this help\n"
            "\n"
            "Exit status: 0 stopped cleanly, 1 runtime failure, 2 usage or configuration error.\n"
            "See pkgstore-agent(8) and docs/pkgstore-agent.md.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs(AGENT_NAME ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry '" AGENT_NAME " --help' for more information.\n", stderr);
    return 2;
}

static int check_config(const agent_config *cfg, int json)
{
    /* The configuration is only half of what the agent needs to run. */
    if (agent_helper_init(cfg) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        agent_helper_cleanup();
        return 1;
    }
    uint64_t root_version = 0;
    if (agent_trust_check_pinned(cfg, &root_version) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        agent_helper_cleanup();
        return 2;
    }
    char *text = agent_config_dump_json(cfg);
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (root)
        json_object_set_new(root, "helper", json_string(agent_helper_path()));
    if (root && cfg->trust_root) {
        json_t *trust = json_object_get(root, "trust");
        json_object_set_new(trust, "root_version", json_integer((json_int_t)root_version));
        /* what this node verified, read from its state_dir: the view of
         * the node's trust that does not depend on the registry */
        json_object_set_new(trust, "state", agent_trust_status(cfg));
    }
    text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, AGENT_NAME ": %s: out of memory\n", cfg->path);
        agent_helper_cleanup();
        return 1;
    }
    if (json)
        printf("%s\n", text);
    else
        printf("%s: OK (node %s, platform %s, collector %s at %s, server %s, helper %s%s%s%s)\n",
               cfg->path, cfg->node_id, cfg->platform, cfg->package, cfg->executable,
               cfg->server_url, agent_helper_path(), cfg->trust_root ? ", trust root " : "",
               cfg->trust_root ? cfg->trust_root : "", cfg->trust_root ? " (signed packages only)" : "");
    if (!json && cfg->trust_root) {
        /* what this node verified so far, from its state_dir */
        json_t *state = agent_trust_status(cfg);
        json_t *adopted = json_object_get(state, "adopted_root_version");
        if (json_integer_value(adopted) <= (json_int_t)root_version)
            adopted = NULL; /* the agent uses the pinned root then */
        json_t *generation = json_object_get(state, "revocations");
        const char *newest = json_string_value(json_object_get(state, "newest_signed"));
        char age[64] = "";
        if (newest)
            snprintf(age, sizeof age, " (%lld s ago)",
                     (long long)json_integer_value(json_object_get(state, "newest_signed_age_s")));
        printf("%s: trust: root version %" PRIu64 "%s, revocation generation %lld (%zu revoked), "
               "newest signed data %s%s\n",
               cfg->path, adopted ? (uint64_t)json_integer_value(adopted) : root_version,
               adopted ? " (adopted)" : " (pinned)", (long long)json_integer_value(generation),
               json_array_size(json_object_get(state, "revoked")), newest ? newest : "none seen yet",
               age);
        json_decref(state);
    }
    free(text);
    agent_helper_cleanup();
    return 0;
}

static double next_interval(const supervisor *sup)
{
    const agent_config *cfg = sup->cfg;
    double interval = cfg->heartbeat_interval_s;
    if (cfg->obey_server_interval && sup->server_interval_s > 0)
        interval = sup->server_interval_s;
    return interval;
}

static int run(agent_config *cfg)
{
    supervisor sup;
    int rc;
    if ((rc = agent_signals_init()) < 0 || (rc = agent_helper_init(cfg)) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        agent_helper_cleanup();
        return 1;
    }
    /* A pinned root that is not signed to its own threshold is a
     * configuration error, found before anything runs. */
    uint64_t root_version = 0;
    if (agent_trust_check_pinned(cfg, &root_version) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        agent_helper_cleanup();
        return 2;
    }
    if ((rc = supervisor_init(&sup, cfg)) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        supervisor_free(&sup);
        agent_helper_cleanup();
        return 1;
    }
    agent_log("info", "msg=\"starting\" version=%s node=%s platform=%s server=%s collector=%s",
              PKGSTORE_VERSION_STRING, cfg->node_id, cfg->platform, cfg->server_url,
              cfg->executable);
    supervisor_start(&sup);

    double next_heartbeat = agent_now();
    unsigned failures = 0;
    while (!agent_stop_requested()) {
        /* crashes, spawn failures and watchdogs the pump has seen */
        if (supervisor_tick(&sup))
            next_heartbeat = agent_now();
        double wait = next_heartbeat - agent_now();
        if (wait > 0) {
            agent_pump(wait);
            continue;
        }
        int upgraded = 0;
        if (supervisor_heartbeat(&sup, &upgraded) < 0) {
            /* Keep everything running, keep the state, try again later. */
            failures++;
            double delay = backoff(cfg, next_interval(&sup), cfg->heartbeat_retry_max_s, failures);
            /* 429/503 with Retry-After, or OpAMP's RetryInfo: at least
             * that long (bounded: a server cannot silence a node for good) */
            if (sup.retry_after_s > delay)
                delay = sup.retry_after_s < RETRY_AFTER_MAX_S ? sup.retry_after_s
                                                               : RETRY_AFTER_MAX_S;
            agent_log("warn", "msg=\"heartbeat failed\" error=\"%s\" failures=%u retry_in_s=%.2f",
                      agent_error(), failures, delay);
            next_heartbeat = agent_now() + delay;
            continue;
        }
        if (failures)
            agent_log("info", "msg=\"server reachable again\" after_failures=%u", failures);
        failures = 0;
        /* After an upgrade, report its outcome and ask again right away. */
        double delay = upgraded ? 0 : jittered(cfg, next_interval(&sup));
        agent_log("debug", "msg=\"heartbeat\" next_in_s=%.3f", delay);
        next_heartbeat = agent_now() + delay;
    }
    int sig = agent_stop_signal();
    agent_log("info", "msg=\"stopping\" signal=%d", sig);
    supervisor_shutdown(&sup, sig ? sig : SIGTERM);
    supervisor_free(&sup);
    agent_helper_cleanup();
    agent_log("info", "msg=\"stopped\"");
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = DEFAULT_CONFIG;
    int do_check = 0, json = 0;
    enum { OPT_CHECK = 256, OPT_JSON, OPT_VERSION };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"json", no_argument, NULL, OPT_JSON},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CHECK:
            do_check = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_VERSION:
            printf(AGENT_NAME " (pkgstore) %s\n", pkgstore_library_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error("%s: needs a value", argv[optind - 1]);
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
    if (json && !do_check)
        return usage_error("--json: only with --check-config");
    agent_config cfg;
    if (agent_config_load(&cfg, config_path) < 0) {
        fprintf(stderr, AGENT_NAME ": %s\n", agent_error());
        agent_config_free(&cfg);
        return 2;
    }
    if (cfg.log_level)
        agent_log_set_level(cfg.log_level);
    int status = do_check ? check_config(&cfg, json) : run(&cfg);
    agent_config_free(&cfg);
    return status;
}
