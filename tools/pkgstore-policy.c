/*
 * pkgstore-policy - manage upgrade policies on pkgstored.
 *
 *   pkgstore-policy --server URL [--token-file F] [--json] set NAME --package P
 *                   --version V [--selector S] [--type T] [--priority N]
 *   pkgstore-policy ... ls
 *   pkgstore-policy ... show NAME
 *   pkgstore-policy ... rm NAME
 *   pkgstore-policy ... retry NAME
 *   pkgstore-policy ... status NAME
 *   pkgstore-policy ... pause|resume NAME
 *   pkgstore-policy ... abort [--revert] NAME
 *   pkgstore-policy ... audit [NAME]
 *   pkgstore-policy rank NAME [NODE...]
 */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "files.h"
#include "httpclient.h"

#define PROG "pkgstore-policy"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pkgstore-policy --server URL [--token-file FILE] [--cacert FILE] [--json]\n"
            "                       COMMAND ...\n"
            "\n"
            "  set NAME --package P --version V [--selector S] [--type primary|addon]\n"
            "           [--priority N]     create or replace a policy\n"
            "           [--batches LIST] [--soak SECONDS] [--max-failures N|P%%]\n"
            "           [--deadline SECONDS] [--max-parallel N]\n"
            "                              ... with a staged rollout: LIST is cumulative\n"
            "                              batch sizes, e.g. 1,5%%,25%%,100%%\n"
            "           [--config-file FILE] [--arg A]... [--env K=V]...\n"
            "                              ... configuring its addon: the file's body (at\n"
            "                              most 64 KiB), the arguments and environment\n"
            "                              the agent runs it with ({config_file} in an\n"
            "                              argument is the file's path on the node)\n"
            "  ls                          list policies with their rollout counts\n"
            "  show NAME                   one policy, its counts and its nodes\n"
            "  rm NAME                     delete a policy\n"
            "  retry NAME                  raise the policy's retry generation: agents try\n"
            "                              the version once more where it failed\n"
            "  status NAME                 the rollout: state, batches with their counts, reason\n"
            "  pause NAME, resume NAME     hold the rollout's offers; go on (failures seen so\n"
            "                              far are accepted)\n"
            "  abort [--revert] NAME       stop the rollout; --revert offers the version the\n"
            "                              policy named before to the nodes that moved\n"
            "  audit [NAME]                the audit log (of one policy)\n"
            "  rank NAME [NODE...]         each node's place in the policy's rollout order\n"
            "                              (nodes one a line on stdin when none are given):\n"
            "                              'RANK NODE', RANK as 16 hex digits, compared with\n"
            "                              a started batch's rank_below; no server is asked\n"
            "\n"
            "  --server URL        pkgstored base URL (default $PKGSTORE_SERVER)\n"
            "  --token-file FILE   admin token (default $PKGSTORE_TOKEN_FILE, then the token\n"
            "                      itself in $PKGSTORE_TOKEN)\n"
            "  --cacert FILE       PEM CA that an https:// server's certificate must chain to\n"
            "                      (default $PKGSTORE_CACERT, else the system's CAs)\n"
            "  --json              print the server's JSON\n"
            "  --help, --version\n"
            "\n"
            "Selectors: comma means AND; key=value, key!=value, key in (a,b), key, !key.\n");
}

/* "/v1/policies/<NAME escaped><suffix>" into path. */
static void policy_path(char *path, size_t size, const char *name, const char *suffix)
{
    char *escaped = http_escape(name);
    snprintf(path, size, "/v1/policies/%s%s", escaped ? escaped : "", suffix);
    free(escaped);
}

static long long count_of(json_t *policy, const char *state)
{
    return (long long)json_integer_value(
        json_object_get(json_object_get(json_object_get(policy, "status"), "counts"), state));
}

static void print_policy_row(json_t *p)
{
    long long failed = count_of(p, "UpgradeFailed") + count_of(p, "RolledBack") +
                       count_of(p, "RollbackFailed");
    long long busy = count_of(p, "Downloading") + count_of(p, "Verifying") +
                     count_of(p, "Validating") + count_of(p, "Swapping") +
                     count_of(p, "Monitoring");
    printf("%-20s %8lld %-18s %-12s %-5s %6lld %8lld %8lld %6lld %6lld  %s\n",
           json_string_value(json_object_get(p, "name")),
           (long long)json_integer_value(json_object_get(p, "priority")),
           json_string_value(json_object_get(p, "package")),
           json_string_value(json_object_get(p, "version")),
           json_string_value(json_object_get(p, "type")) &&
                   strcmp(json_string_value(json_object_get(p, "type")), "addon") == 0
               ? "addon"
               : "prim",
           (long long)json_integer_value(
               json_object_get(json_object_get(p, "status"), "nodes_total")),
           count_of(p, "Upgraded"), count_of(p, "Pending") + busy, failed,
           count_of(p, "Incompatible"), json_string_value(json_object_get(p, "selector")));
}

static void print_header(void)
{
    printf("%-20s %8s %-18s %-12s %-5s %6s %8s %8s %6s %6s  %s\n", "NAME", "PRIORITY", "PACKAGE",
           "VERSION", "TYPE", "NODES", "UPGRADED", "ACTIVE", "FAILED", "INCOMP", "SELECTOR");
}

/* A whole number of seconds or nodes from a flag. */
static int flag_count(json_t **out, const char *flag, const char *text)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno || *end || end == text || n < 0 || n > 1000000000)
        return cli_usage("--%s: '%s' is not a whole number in 0..1000000000", flag, text);
    *out = json_integer(n);
    return 0;
}

/* An amount: "3" as a count, "5%" as a percentage string. */
static json_t *amount_json(const char *text)
{
    if (strchr(text, '%'))
        return json_string(text);
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno || *end || end == text)
        return json_string(text); /* the server names what is wrong */
    return json_integer(n);
}

/* The "strategy" object of a policy from set's flags (the server
 * validates it and names what is wrong). */
static int strategy_parse(json_t **out, const char *batches, const char *soak,
                          const char *max_failures, const char *deadline, const char *max_parallel)
{
    json_t *strategy = json_object(), *value = NULL;
    int error = 0;
    *out = NULL;
    if (batches) {
        json_t *list = json_array();
        char *copy = strdup(batches), *save = NULL;
        int bad = 0;
        for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item && !bad;
             item = strtok_r(NULL, ",", &save))
            bad = json_array_append_new(list, amount_json(item)) < 0; /* NULL: not UTF-8 */
        free(copy);
        if (bad) {
            json_decref(list);
            json_decref(strategy);
            return cli_usage("--batches: not valid UTF-8");
        }
        if (json_array_size(list) == 0) {
            json_decref(list);
            json_decref(strategy);
            return cli_usage("--batches: give cumulative sizes such as 1,5%%,25%%,100%%");
        }
        json_object_set_new(strategy, "batches", list);
    }
    if (soak && (error = flag_count(&value, "soak", soak)) == 0)
        json_object_set_new(strategy, "soak_s", value);
    if (!error && deadline && (error = flag_count(&value, "deadline", deadline)) == 0)
        json_object_set_new(strategy, "deadline_s", value);
    if (!error && max_parallel && (error = flag_count(&value, "max-parallel", max_parallel)) == 0)
        json_object_set_new(strategy, "max_parallel", value);
    if (!error && max_failures &&
        json_object_set_new(strategy, "max_failures", amount_json(max_failures)) < 0)
        error = cli_usage("--max-failures: not valid UTF-8");
    if (error) {
        json_decref(strategy);
        return error;
    }
    *out = strategy;
    return 0;
}

/* The arguments of "set" (argv[0] is the command): the policy's NAME into
 * *name and its JSON body into *text (free()). 0, or a usage error, checked
 * before the client needs a server or a token. */
static int set_parse(const char **name, char **text, int argc, char **argv)
{
    const char *selector = "", *package = NULL, *version = NULL, *type = NULL;
    const char *batches = NULL, *soak = NULL, *max_failures = NULL, *deadline = NULL,
               *max_parallel = NULL;
    long priority = 0;
    int has_priority = 0;
    json_t *config = json_object(), *config_args = json_array(), *config_env = json_object();
    const char *config_file = NULL;
    enum { S_SELECTOR = 256, S_PACKAGE, S_VERSION, S_TYPE, S_PRIORITY, S_BATCHES, S_SOAK,
           S_MAX_FAILURES, S_DEADLINE, S_MAX_PARALLEL, S_CONFIG_FILE, S_ARG, S_ENV };
    static const struct option options[] = {
        {"config-file", required_argument, NULL, S_CONFIG_FILE},
        {"arg", required_argument, NULL, S_ARG},
        {"env", required_argument, NULL, S_ENV},

        {"batches", required_argument, NULL, S_BATCHES},
        {"soak", required_argument, NULL, S_SOAK},
        {"max-failures", required_argument, NULL, S_MAX_FAILURES},
        {"deadline", required_argument, NULL, S_DEADLINE},
        {"max-parallel", required_argument, NULL, S_MAX_PARALLEL},
        {"selector", required_argument, NULL, S_SELECTOR},
        {"package", required_argument, NULL, S_PACKAGE},
        {"version", required_argument, NULL, S_VERSION},
        {"type", required_argument, NULL, S_TYPE},
        {"priority", required_argument, NULL, S_PRIORITY},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* glibc: 0 restarts the scan (argv[0] is the command) */
    int opt, error = 0;
    char *end;
    if (!config || !config_args || !config_env) {
        error = cli_usage("set: out of memory");
        goto out;
    }
    while (error == 0 && (opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case S_CONFIG_FILE: config_file = optarg; break;
        case S_ARG: {
            json_t *arg = json_string(optarg);
            if (!arg || json_array_append_new(config_args, arg) < 0)
                error = cli_usage("--arg: '%s' is not UTF-8", optarg);
            break;
        }
        case S_ENV: {
            const char *eq = strchr(optarg, '=');
            char key[256];
            if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof key) {
                error = cli_usage("--env: '%s' is not NAME=VALUE", optarg);
                break;
            }
            memcpy(key, optarg, (size_t)(eq - optarg));
            key[eq - optarg] = '\0';
            json_t *value = json_string(eq + 1);
            if (json_object_get(config_env, key))
                error = cli_usage("--env: %s given twice", key);
            else if (!value || json_object_set_new(config_env, key, value) < 0)
                error = cli_usage("--env: '%s' is not UTF-8", optarg);
            value = NULL; /* now owned by config_env, or freed by it */
            break;
        }
        case S_SELECTOR: selector = optarg; break;
        case S_PACKAGE: package = optarg; break;
        case S_VERSION: version = optarg; break;
        case S_TYPE: type = optarg; break;
        case S_BATCHES: batches = optarg; break;
        case S_SOAK: soak = optarg; break;
        case S_MAX_FAILURES: max_failures = optarg; break;
        case S_DEADLINE: deadline = optarg; break;
        case S_MAX_PARALLEL: max_parallel = optarg; break;
        case S_PRIORITY:
            errno = 0;
            priority = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg)
                error = cli_usage("--priority: '%s' is not an integer", optarg);
            has_priority = 1;
            break;
        default: error = cli_option_error(opt, argv); break;
        }
    }
    if (error != 0)
        goto out;
    if (!package || !version) {
        error = cli_usage("set: --package and --version are required");
        goto out;
    }
    if (optind + 1 != argc) {
        error = cli_usage("set: give exactly one NAME");
        goto out;
    }
    int has_config = config_file || json_array_size(config_args) || json_object_size(config_env);
    if (config_file) {
        char *data = NULL;
        size_t len = 0;
        if (cli_read_file(&data, &len, config_file, 4u << 20) < 0) {
            error = 2; /* as an unreadable CA file: before the server is asked */
            goto out;
        }
        if (len > PKGSTORE_ADDON_CONFIG_FILE_MAX) {
            free(data);
            error = cli_usage("--config-file: %s: %zu bytes, more than %d (config.file's cap)",
                              config_file, len, PKGSTORE_ADDON_CONFIG_FILE_MAX);
            goto out;
        }
        json_t *body = strlen(data) == len ? json_string(data) : NULL;
        free(data);
        if (!body) {
            error = cli_usage("--config-file: %s is not UTF-8 text", config_file);
            goto out;
        }
        json_object_set_new(config, "file", body);
    }
    if (json_array_size(config_args))
        json_object_set(config, "args", config_args);
    if (json_object_size(config_env))
        json_object_set(config, "env", config_env);
    *name = argv[optind];
    json_t *body = json_pack("{s:s,s:s,s:s}", "selector", selector, "package", package,
                             "version", version);
    if (body && type && json_object_set_new(body, "type", json_string(type)) < 0) {
        json_decref(body);
        body = NULL;
    }
    if (!body) {
        error = cli_usage("set: arguments must be UTF-8");
        goto out;
    }
    /* without a configuration flag the policy has none: set replaces it whole */
    if (has_config)
        json_object_set(body, "config", config);
    if (has_priority)
        json_object_set_new(body, "priority", json_integer(priority));
    if (batches || soak || max_failures || deadline || max_parallel) {
        json_t *strategy = NULL;
        error = strategy_parse(&strategy, batches, soak, max_failures, deadline, max_parallel);
        if (error != 0) {
            json_decref(body);
            goto out;
        }
        json_object_set_new(body, "strategy", strategy);
    }
    *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!*text) {
        cli_error(NULL, "out of memory");
        error = 1;
    }
out:
    json_decref(config);
    json_decref(config_args);
    json_decref(config_env);
    return error;
}

/* PUT the policy NAME with the JSON body text (freed here). */
static int cmd_set(http_client *client, int json_out, const char *name, char *text)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    json_t *p;
    int result = http_json_request(&p, client, "PUT", path, text, json_out, name);
    free(text);
    if (result != 0)
        return result;
    if (p) {
        const char *matching = json_string_value(json_object_get(p, "selector"));
        printf("policy %s: %s %s for ", name, json_string_value(json_object_get(p, "package")),
               json_string_value(json_object_get(p, "version")));
        if (matching && *matching)
            printf("nodes matching '%s'", matching);
        else
            printf("all nodes"); /* the empty selector matches every node */
        printf(" (priority %lld)\n", (long long)json_integer_value(json_object_get(p, "priority")));
        json_decref(p);
    }
    return 0;
}

static int cmd_ls(http_client *client, int json_out)
{
    json_t *root;
    if (http_json_request(&root, client, "GET", "/v1/policies", NULL, json_out, "policies"))
        return 1;
    if (root) {
        json_t *policies = json_object_get(root, "policies");
        print_header();
        for (size_t i = 0; i < json_array_size(policies); i++)
            print_policy_row(json_array_get(policies, i));
        json_decref(root);
    }
    return 0;
}

static void print_rollout(json_t *rollout)
{
    printf("state:     %s\n", json_string_value(json_object_get(rollout, "state")));
    if (json_object_get(rollout, "batch"))
        printf("batch:     %lld of %lld\n",
               (long long)json_integer_value(json_object_get(rollout, "batch")),
               (long long)json_integer_value(json_object_get(rollout, "batch_count")));
    const char *reason = json_string_value(json_object_get(rollout, "reason"));
    if (reason && *reason)
        printf("reason:    %s\n", reason);
    const char *until = json_string_value(json_object_get(rollout, "soak_until"));
    if (until)
        printf("soak until %s\n", until);
    if (json_object_get(rollout, "nodes"))
        printf("nodes:     %lld (%lld waiting for a later batch)\n",
               (long long)json_integer_value(json_object_get(rollout, "nodes")),
               (long long)json_integer_value(json_object_get(rollout, "waiting")));
    json_t *batches = json_object_get(rollout, "batches");
    if (json_array_size(batches)) {
        printf("%-6s %-6s %-8s %6s %6s %6s %7s %6s\n", "BATCH", "SIZE", "STATE", "NODES", "DONE",
               "ACTIVE", "PENDING", "FAILED");
        for (size_t i = 0; i < json_array_size(batches); i++) {
            json_t *b = json_array_get(batches, i);
            if (json_object_get(b, "nodes"))
                printf("%-6lld %-6s %-8s %6lld %6lld %6lld %7lld %6lld\n",
                       (long long)json_integer_value(json_object_get(b, "batch")),
                       json_string_value(json_object_get(b, "size")),
                       json_string_value(json_object_get(b, "state")),
                       (long long)json_integer_value(json_object_get(b, "nodes")),
                       (long long)json_integer_value(json_object_get(b, "done")),
                       (long long)json_integer_value(json_object_get(b, "active")),
                       (long long)json_integer_value(json_object_get(b, "pending")),
                       (long long)json_integer_value(json_object_get(b, "failed")));
            else
                printf("%-6lld %-6s %-8s %6lld\n",
                       (long long)json_integer_value(json_object_get(b, "batch")),
                       json_string_value(json_object_get(b, "size")),
                       json_string_value(json_object_get(b, "state")),
                       (long long)json_integer_value(json_object_get(b, "planned_nodes")));
        }
    }
    json_t *failures = json_object_get(rollout, "failures");
    for (size_t i = 0; i < json_array_size(failures); i++) {
        json_t *fail_item = json_array_get(failures, i);
        const char *message = json_string_value(json_object_get(fail_item, "message"));
        printf("failed:    %s %s (batch %lld)%s%s\n",
               json_string_value(json_object_get(fail_item, "node")),
               json_string_value(json_object_get(fail_item, "status")),
               (long long)json_integer_value(json_object_get(fail_item, "batch")),
               message && *message ? ": " : "", message ? message : "");
    }
}

static int cmd_show(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    json_t *p;
    if (http_json_request(&p, client, "GET", path, NULL, json_out, name))
        return 1;
    if (!p)
        return 0;
    printf("name:      %s\n", json_string_value(json_object_get(p, "name")));
    printf("selector:  %s\n", json_string_value(json_object_get(p, "selector")));
    printf("package:   %s %s (%s)\n", json_string_value(json_object_get(p, "package")),
           json_string_value(json_object_get(p, "version")),
           json_string_value(json_object_get(p, "type")));
    printf("priority:  %lld\n", (long long)json_integer_value(json_object_get(p, "priority")));
    printf("retry:     %lld\n", (long long)json_integer_value(json_object_get(p, "retry")));
    json_t *config = json_object_get(p, "config");
    if (json_is_object(config)) {
        const char *file = json_string_value(json_object_get(config, "file"));
        printf("config:    %s (%zu args, %zu env, ",
               json_string_value(json_object_get(p, "config_digest")),
               json_array_size(json_object_get(config, "args")),
               json_object_size(json_object_get(config, "env")));
        if (file)
            printf("a file of %zu bytes)\n", strlen(file));
        else
            printf("no file)\n");
        json_t *tally = json_object_get(json_object_get(p, "status"), "config");
        if (tally)
            printf("           applied on %lld node(s), rolled back on %lld\n",
                   (long long)json_integer_value(json_object_get(tally, "applied")),
                   (long long)json_integer_value(json_object_get(tally, "refused")));
    }
    printf("updated:   %s\n", json_string_value(json_object_get(p, "updated")) ?
                                  json_string_value(json_object_get(p, "updated")) : "-");
    json_t *status = json_object_get(p, "status");
    printf("nodes:     %lld\n", (long long)json_integer_value(json_object_get(status, "nodes_total")));
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(status, "counts"), key, value) {
        if (json_integer_value(value))
            printf("  %-16s %lld\n", key, (long long)json_integer_value(value));
    }
    if (json_is_object(json_object_get(status, "rollout"))) {
        printf("rollout:\n");
        print_rollout(json_object_get(status, "rollout"));
    }
    json_t *nodes = json_object_get(status, "nodes");
    if (json_array_size(nodes)) {
        printf("%-40s %s\n", "NODE", "STATE");
        for (size_t i = 0; i < json_array_size(nodes); i++) {
            json_t *node = json_array_get(nodes, i);
            printf("%-40s %s\n", json_string_value(json_object_get(node, "id")),
                   json_string_value(json_object_get(node, "state")));
        }
    }
    json_decref(p);
    return 0;
}

static int cmd_rm(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    http_reply reply;
    if (http_request(&reply, client, "DELETE", path, NULL) < 0 || reply.status != 200)
        return http_reply_fail(&reply, name);
    if (json_out)
        printf("%s\n", reply.body);
    else
        printf("deleted policy %s\n", name);
    http_reply_free(&reply);
    return 0;
}

static int cmd_retry(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "/retry");
    json_t *p;
    if (http_json_request(&p, client, "POST", path, "", json_out, name))
        return 1;
    if (p) {
        printf("policy %s: retry generation %lld (%s %s is tried again where it failed)\n", name,
               (long long)json_integer_value(json_object_get(p, "retry")),
               json_string_value(json_object_get(p, "package")),
               json_string_value(json_object_get(p, "version")));
        json_decref(p);
    }
    return 0;
}

static int cmd_status(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    json_t *p;
    /* --json prints the rollout alone, not the policy */
    if (http_json_request(&p, client, "GET", path, NULL, 0, name))
        return 1;
    json_t *rollout = json_object_get(json_object_get(p, "status"), "rollout");
    if (json_out) {
        char *text = json_dumps(rollout ? rollout : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s\n", text ? text : "null");
        free(text);
    } else {
        printf("policy:    %s (%s %s)\n", name, json_string_value(json_object_get(p, "package")),
               json_string_value(json_object_get(p, "version")));
        print_rollout(rollout);
    }
    json_decref(p);
    return 0;
}

/* "rank": pkgstore_rollout_rank() of each node, computed here, so that a
 * check from outside can compare it with a batch's rank_below (same
 * format: 16 lowercase hex digits, which compare as the numbers do). */
static int rank_line(const char *policy, const char *node)
{
    if (*node == '\0') {
        cli_error(NULL, "rank: an empty node id");
        return 1;
    }
    printf("%016" PRIx64 " %s\n", pkgstore_rollout_rank(policy, node), node);
    return 0;
}

static int cmd_rank(const char *policy, int argc, char **argv)
{
    int rc = 0;
    for (int i = 0; i < argc; i++)
        rc |= rank_line(policy, argv[i]);
    if (argc > 0)
        return rc;
    char *line = NULL;
    size_t size = 0;
    ssize_t len;
    while ((len = getline(&line, &size, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        rc |= rank_line(policy, line);
    }
    free(line);
    if (ferror(stdin)) {
        cli_error("stdin", "%s", strerror(errno));
        return 1;
    }
    return rc;
}

static int cmd_action(http_client *client, int json_out, const char *action, const char *name,
                      int revert)
{
    char path[1024], suffix[16];
    snprintf(suffix, sizeof suffix, "/%s", action);
    policy_path(path, sizeof path, name, suffix);
    json_t *p;
    if (http_json_request(&p, client, "POST", path, revert ? "{\"revert\":true}" : "", json_out,
                          name))
        return 1;
    if (p) {
        json_t *rollout = json_object_get(json_object_get(p, "status"), "rollout");
        printf("policy %s: rollout %s (%s %s)\n", name,
               json_string_value(json_object_get(rollout, "state")),
               json_string_value(json_object_get(p, "package")),
               json_string_value(json_object_get(p, "version")));
        json_decref(p);
    }
    return 0;
}

static int cmd_audit(http_client *client, int json_out, const char *name)
{
    char path[1024] = "/v1/audit";
    if (name) {
        char *escaped = http_escape(name);
        snprintf(path, sizeof path, "/v1/audit?policy=%s", escaped ? escaped : "");
        free(escaped);
    }
    json_t *root;
    if (http_json_request(&root, client, "GET", path, NULL, json_out, "audit"))
        return 1;
    if (root) {
        json_t *entries = json_object_get(root, "entries");
        printf("%-20s %-20s %-24s %-14s %s\n", "TIME", "POLICY", "WHO", "ACTION", "REASON");
        for (size_t i = 0; i < json_array_size(entries); i++) {
            json_t *e = json_array_get(entries, i);
            printf("%-20s %-20s %-24s %-14s %s\n", json_string_value(json_object_get(e, "time")),
                   json_string_value(json_object_get(e, "policy")),
                   json_string_value(json_object_get(e, "who")),
                   json_string_value(json_object_get(e, "action")),
                   json_string_value(json_object_get(e, "reason")));
        }
        json_decref(root);
    }
    return 0;
}

int main(int argc, char **argv)
{
    http_tool_options opts;
    int rc;
    cli_init(argv[0]);
    if ((rc = http_tool_options_parse(&opts, argc, argv, usage)) >= 0)
        return rc;
    if (optind >= argc)
        return cli_usage("no command: give set, ls, show, rm, retry, status, pause, resume, "
                         "abort, audit or rank");
    const char *command = argv[optind];
    int rest_argc = argc - optind;
    char **rest_argv = argv + optind;
    int revert = 0;
    if (strcmp(command, "abort") == 0 && rest_argc >= 2 && strcmp(rest_argv[1], "--revert") == 0) {
        revert = 1;
        rest_argv[1] = rest_argv[0];
        rest_argv++;
        rest_argc--;
    } else if (strcmp(command, "abort") == 0 && rest_argc == 3 &&
               strcmp(rest_argv[2], "--revert") == 0) {
        revert = 1;
        rest_argc--;
    }
    if (strcmp(command, "rank") == 0) {
        /* computed here: no server, no token */
        if (rest_argc < 2)
            return cli_usage("rank: give the policy's NAME (then node ids, or them on stdin)");
        return cmd_rank(rest_argv[1], rest_argc - 2, rest_argv + 2);
    }
    int needs_name = strcmp(command, "show") == 0 || strcmp(command, "rm") == 0 ||
                     strcmp(command, "retry") == 0 || strcmp(command, "status") == 0 ||
                     strcmp(command, "pause") == 0 || strcmp(command, "resume") == 0 ||
                     strcmp(command, "abort") == 0;
    if (strcmp(command, "set") != 0 && strcmp(command, "ls") != 0 &&
        strcmp(command, "audit") != 0 && !needs_name)
        return cli_usage("%s: unknown command (set, ls, show, rm, retry, status, pause, resume, "
                         "abort, audit, rank)",
                         command);
    if (needs_name && rest_argc != 2)
        return cli_usage("%s: give exactly one NAME%s", command,
                         strcmp(command, "abort") == 0 ? " (and --revert)" : "");
    if (strcmp(command, "audit") == 0 && rest_argc > 2)
        return cli_usage("audit: give at most one NAME");
    if (strcmp(command, "ls") == 0 && rest_argc != 1)
        return cli_usage("ls: takes no arguments");
    const char *set_name = NULL;
    char *set_text = NULL;
    int error;
    if (strcmp(command, "set") == 0 && (error = set_parse(&set_name, &set_text, rest_argc,
                                                          rest_argv)) != 0)
        return error;
    http_client client;
    if (http_client_init(&client, PROG, opts.server, opts.token_file, opts.cacert) < 0) {
        free(set_text);
        return 2;
    }
    if (strcmp(command, "set") == 0)
        return cmd_set(&client, opts.json, set_name, set_text);
    if (strcmp(command, "ls") == 0)
        return cmd_ls(&client, opts.json);
    if (strcmp(command, "show") == 0)
        return cmd_show(&client, opts.json, rest_argv[1]);
    if (strcmp(command, "retry") == 0)
        return cmd_retry(&client, opts.json, rest_argv[1]);
    if (strcmp(command, "status") == 0)
        return cmd_status(&client, opts.json, rest_argv[1]);
    if (strcmp(command, "pause") == 0 || strcmp(command, "resume") == 0 ||
        strcmp(command, "abort") == 0)
        return cmd_action(&client, opts.json, command, rest_argv[1], revert);
    if (strcmp(command, "audit") == 0)
        return cmd_audit(&client, opts.json, rest_argc == 2 ? rest_argv[1] : NULL);
    return cmd_rm(&client, opts.json, rest_argv[1]);
}
