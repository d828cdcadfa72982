/*
 * pkgstore-policy - manage upgrade policies on pkgstored.
 *
 *   pkgstore-policy --server URL [--token-file F] [--json] set NAME --package P
 *                   --version V [--selector S] [--type T] [--priority N]
 *   pkgstore-policy ... ls
 *   pkgstore-policy ... show NAME
 *   pkgstore-policy ... rm NAME
 *   pkgstore-policy ... retry NAME
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
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
            "  ls                          list policies with their rollout counts\n"
            "  show NAME                   one policy, its counts and its nodes\n"
            "  rm NAME                     delete a policy\n"
            "  retry NAME                  raise the policy's retry generation: agents try\n"
            "                              the version once more where it failed\n"
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

static int fail(http_reply *reply, const char *object)
{
    fprintf(stderr, PROG ": %s: %s\n", object, http_reply_error(reply));
    http_reply_free(reply);
    return 1;
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

/* The arguments of "set" (argv[0] is the command): the policy's NAME into
 * *name and its JSON body into *text (free()). 0, or a usage error, checked
 * before the client needs a server or a token. */
static int set_parse(const char **name, char **text, int argc, char **argv)
{
    const char *selector = "", *package = NULL, *version = NULL, *type = NULL;
    long priority = 0;
    int has_priority = 0;
    enum { S_SELECTOR = 256, S_PACKAGE, S_VERSION, S_TYPE, S_PRIORITY };
    static const struct option options[] = {
        {"selector", required_argument, NULL, S_SELECTOR},
        {"package", required_argument, NULL, S_PACKAGE},
        {"version", required_argument, NULL, S_VERSION},
        {"type", required_argument, NULL, S_TYPE},
        {"priority", required_argument, NULL, S_PRIORITY},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* glibc: 0 restarts the scan (argv[0] is the command) */
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case S_SELECTOR: selector = optarg; break;
        case S_PACKAGE: package = optarg; break;
        case S_VERSION: version = optarg; break;
        case S_TYPE: type = optarg; break;
        case S_PRIORITY:
            errno = 0;
            priority = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg)
                return cli_usage("--priority: '%s' is not an integer", optarg);
            has_priority = 1;
            break;
        default: return cli_option_error(opt, argv);
        }
    }
    if (!package || !version)
        return cli_usage("set: --package and --version are required");
    if (optind + 1 != argc)
        return cli_usage("set: give exactly one NAME");
    *name = argv[optind];
    json_t *body = json_pack("{s:s,s:s,s:s}", "selector", selector, "package", package,
                             "version", version);
    if (body && type && json_object_set_new(body, "type", json_string(type)) < 0) {
        json_decref(body);
        body = NULL;
    }
    if (!body)
        return cli_usage("set: arguments must be UTF-8");
    if (has_priority)
        json_object_set_new(body, "priority", json_integer(priority));
    *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!*text) {
        cli_error(NULL, "out of memory");
        return 1;
    }
    return 0;
}

/* PUT the policy NAME with the JSON body text (freed here). */
static int cmd_set(http_client *client, int json_out, const char *name, char *text)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    http_reply reply;
    int result = http_request(&reply, client, "PUT", path, text);
    free(text);
    if (result < 0 || reply.status != 200)
        return fail(&reply, name);
    if (json_out) {
        printf("%s\n", reply.body);
    } else {
        json_t *p = json_loads(reply.body, 0, NULL);
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
    http_reply_free(&reply);
    return 0;
}

static int cmd_ls(http_client *client, int json_out)
{
    http_reply reply;
    if (http_request(&reply, client, "GET", "/v1/policies", NULL) < 0 || reply.status != 200)
        return fail(&reply, "policies");
    if (json_out) {
        printf("%s\n", reply.body);
    } else {
        json_t *root = json_loads(reply.body, 0, NULL);
        json_t *policies = json_object_get(root, "policies");
        print_header();
        for (size_t i = 0; i < json_array_size(policies); i++)
            print_policy_row(json_array_get(policies, i));
        json_decref(root);
    }
    http_reply_free(&reply);
    return 0;
}

static int cmd_show(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    http_reply reply;
    if (http_request(&reply, client, "GET", path, NULL) < 0 || reply.status != 200)
        return fail(&reply, name);
    if (json_out) {
        printf("%s\n", reply.body);
        http_reply_free(&reply);
        return 0;
    }
    json_t *p = json_loads(reply.body, 0, NULL);
    printf("name:      %s\n", json_string_value(json_object_get(p, "name")));
    printf("selector:  %s\n", json_string_value(json_object_get(p, "selector")));
    printf("package:   %s %s (%s)\n", json_string_value(json_object_get(p, "package")),
           json_string_value(json_object_get(p, "version")),
           json_string_value(json_object_get(p, "type")));
    printf("priority:  %lld\n", (long long)json_integer_value(json_object_get(p, "priority")));
    printf("retry:     %lld\n", (long long)json_integer_value(json_object_get(p, "retry")));
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
    http_reply_free(&reply);
    return 0;
}

static int cmd_rm(http_client *client, int json_out, const char *name)
{
    char path[1024];
    policy_path(path, sizeof path, name, "");
    http_reply reply;
    if (http_request(&reply, client, "DELETE", path, NULL) < 0 || reply.status != 200)
        return fail(&reply, name);
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
    http_reply reply;
    if (http_request(&reply, client, "POST", path, "") < 0 || reply.status != 200)
        return fail(&reply, name);
    if (json_out) {
        printf("%s\n", reply.body);
    } else {
        json_t *p = json_loads(reply.body, 0, NULL);
        printf("policy %s: retry generation %lld (%s %s is tried again where it failed)\n", name,
               (long long)json_integer_value(json_object_get(p, "retry")),
               json_string_value(json_object_get(p, "package")),
               json_string_value(json_object_get(p, "version")));
        json_decref(p);
    }
    http_reply_free(&reply);
    return 0;
}

int main(int argc, char **argv)
{
    const char *server = getenv("PKGSTORE_SERVER"), *token_file = NULL, *cacert = NULL;
    int json_out = 0;
    enum { O_SERVER = 256, O_TOKEN, O_JSON, O_HELP, O_VERSION, O_CACERT };
    static const struct option options[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"cacert", required_argument, NULL, O_CACERT},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    int opt;
    cli_init(argv[0]);
    opterr = 0;
    /* '+': stop at the command; its own options follow it */
    while ((opt = getopt_long(argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
        case O_SERVER: server = optarg; break;
        case O_TOKEN: token_file = optarg; break;
        case O_CACERT: cacert = optarg; break;
        case O_JSON: json_out = 1; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION: return cli_version();
        default: return cli_option_error(opt, argv);
        }
    }
    if (optind >= argc)
        return cli_usage("no command: give set, ls, show, rm or retry");
    const char *command = argv[optind];
    int rest_argc = argc - optind;
    char **rest_argv = argv + optind;
    int needs_name = strcmp(command, "show") == 0 || strcmp(command, "rm") == 0 ||
                     strcmp(command, "retry") == 0;
    if (strcmp(command, "set") != 0 && strcmp(command, "ls") != 0 && !needs_name)
        return cli_usage("%s: unknown command (set, ls, show, rm, retry)", command);
    if (needs_name && rest_argc != 2)
        return cli_usage("%s: give exactly one NAME", command);
    if (strcmp(command, "ls") == 0 && rest_argc != 1)
        return cli_usage("ls: takes no arguments");
    const char *set_name = NULL;
    char *set_text = NULL;
    int error;
    if (strcmp(command, "set") == 0 && (error = set_parse(&set_name, &set_text, rest_argc,
                                                          rest_argv)) != 0)
        return error;
    http_client client;
    if (http_client_init(&client, PROG, server, token_file, cacert) < 0) {
        free(set_text);
        return 2;
    }
    if (strcmp(command, "set") == 0)
        return cmd_set(&client, json_out, set_name, set_text);
    if (strcmp(command, "ls") == 0)
        return cmd_ls(&client, json_out);
    if (strcmp(command, "show") == 0)
        return cmd_show(&client, json_out, rest_argv[1]);
    if (strcmp(command, "retry") == 0)
        return cmd_retry(&client, json_out, rest_argv[1]);
    return cmd_rm(&client, json_out, rest_argv[1]);
}
