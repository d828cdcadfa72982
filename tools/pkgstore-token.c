/*
 * pkgstore-token - manage per-node credentials on pkgstored, over its admin
 * API (so a running server sees each change at once: a revoked credential
 * gets 401 from its next request).
 *
 *   pkgstore-token --server URL [--token-file F] [--json] issue --node ID
 *                  [--label KEY=VALUE]... [--self-label KEY|*]... [--out FILE]
 *   pkgstore-token ... ls
 *   pkgstore-token ... revoke ID
 *
 * The server keeps only the SHA-256 of a credential: issue prints the token
 * once (or writes it to --out, mode 0600), and nothing can show it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "httpclient.h"

#define PROG "pkgstore-token"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pkgstore-token --server URL [--token-file FILE] [--cacert FILE] [--json]\n"
            "                      COMMAND ...\n"
            "\n"
            "  issue --node ID [--label KEY=VALUE]... [--self-label KEY|*]... [--out FILE]\n"
            "                    issue a credential for node ID and print its token once\n"
            "                    (or write it to FILE, created with mode 0600).\n"
            "                    --label pins a label: it wins over what the node reports.\n"
            "                    --self-label lets the node report that label itself ('*':\n"
            "                    any label); by default its reported labels are ignored\n"
            "  ls                list credentials: id, node, created, labels (no tokens)\n"
            "  revoke ID         revoke a credential (ID: 4 or more of its hex digits);\n"
            "                    its next request gets 401\n"
            "\n"
            "  --server URL        pkgstored base URL (default $PKGSTORE_SERVER)\n"
            "  --token-file FILE   admin token (default $PKGSTORE_TOKEN_FILE, then the token\n"
            "                      itself in $PKGSTORE_TOKEN)\n"
            "  --cacert FILE       PEM CA that an https:// server's certificate must chain to\n"
            "                      (default $PKGSTORE_CACERT, else the system's CAs)\n"
            "  --json              print the server's JSON\n"
            "  --help, --version\n");
}

/* The arguments of "issue" (argv[0] is the command): the request body into
 * *text (free()) and --out into *out_path. 0, or a usage error, checked
 * before the client needs a server or a token. */
static int issue_parse(char **text, const char **out_path, int argc, char **argv)
{
    const char *node = NULL;
    json_t *labels = json_object(), *self_labels = json_array();
    int error = 0;
    enum { I_NODE = 256, I_LABEL, I_SELF, I_OUT };
    static const struct option options[] = {
        {"node", required_argument, NULL, I_NODE},
        {"label", required_argument, NULL, I_LABEL},
        {"self-label", required_argument, NULL, I_SELF},
        {"out", required_argument, NULL, I_OUT},
        {NULL, 0, NULL, 0},
    };
    *text = NULL;
    *out_path = NULL;
    if (!labels || !self_labels) {
        cli_error(NULL, "out of memory");
        error = 1;
        goto out;
    }
    optind = 0; /* glibc: 0 restarts the scan (argv[0] is the command) */
    int opt;
    while (error == 0 && (opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case I_NODE: node = optarg; break;
        case I_OUT: *out_path = optarg; break;
        case I_SELF:
            if (json_array_append_new(self_labels, json_string(optarg)) < 0)
                error = cli_usage("--self-label: '%s' is not UTF-8", optarg);
            break;
        case I_LABEL: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                error = cli_usage("--label: '%s' is not KEY=VALUE", optarg);
                break;
            }
            *eq = '\0';
            if (json_object_get(labels, optarg))
                error = cli_usage("--label: %s given twice", optarg);
            else if (json_object_set_new(labels, optarg, json_string(eq + 1)) < 0)
                error = cli_usage("--label: '%s' is not UTF-8", optarg);
            *eq = '=';
            break;
        }
        default: error = cli_option_error(opt, argv); break;
        }
    }
    if (error)
        goto out;
    if (!node) {
        error = cli_usage("issue: --node ID is required");
        goto out;
    }
    if (optind != argc) {
        error = cli_usage("issue: unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (*out_path && access(*out_path, F_OK) == 0) {
        /* refused before a credential exists whose token would be lost */
        error = cli_usage("--out: %s already exists", *out_path);
        goto out;
    }
    json_t *body = json_pack("{s:s, s:O, s:O}", "node", node, "labels", labels, "self_labels",
                             self_labels);
    if (!body) {
        error = cli_usage("issue: --node must be UTF-8");
        goto out;
    }
    *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!*text) {
        cli_error(NULL, "out of memory");
        error = 1;
    }
out:
    json_decref(labels);
    json_decref(self_labels);
    return error;
}

/* Write token and a newline to path, created (never replaced) with mode
 * 0600; nothing is left behind on failure. */
static int write_token_file(const char *path, const char *token)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cli_error(path, "%s", strerror(errno));
        return -1;
    }
    size_t len = strlen(token);
    if (write(fd, token, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
        cli_error(path, "%s", strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (close(fd) < 0) {
        cli_error(path, "%s", strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static void print_labels(json_t *labels)
{
    const char *key;
    json_t *value;
    int first = 1;
    json_object_foreach(labels, key, value) {
        printf("%s%s=%s", first ? "" : ",", key, json_string_value(value));
        first = 0;
    }
    if (first)
        printf("-");
}

static void print_self_labels(json_t *keys)
{
    for (size_t i = 0; i < json_array_size(keys); i++)
        printf("%s%s", i ? "," : "", json_string_value(json_array_get(keys, i)));
    if (json_array_size(keys) == 0)
        printf("-");
}

static int cmd_issue(http_client *client, int json_out, char *text, const char *out_path)
{
    http_reply reply;
    int result = http_request(&reply, client, "POST", "/v1/credentials", text);
    free(text);
    if (result < 0 || reply.status != 201)
        return http_reply_fail(&reply, "issue");
    json_t *record = json_loads(reply.body, 0, NULL);
    const char *token = json_string_value(json_object_get(record, "token"));
    const char *id = json_string_value(json_object_get(record, "id"));
    const char *node = json_string_value(json_object_get(record, "node"));
    int error = 0;
    if (!token || !id || !node) {
        cli_error("issue", "the server's answer has no token");
        error = 1;
    } else if (out_path) {
        if (write_token_file(out_path, token) < 0) {
            /* the credential exists but its token is lost: revoke it */
            cli_error("issue", "credential %s for node %s was issued but its token could not "
                      "be saved; revoke it: pkgstore-token revoke %s", id, node, id);
            error = 1;
        } else if (json_out) {
            json_object_del(record, "token");
            char *dumped = json_dumps(record, JSON_COMPACT);
            printf("%s\n", dumped ? dumped : "{}");
            free(dumped);
        } else {
            printf("credential %s for node %s written to %s\n", id, node, out_path);
        }
    } else if (json_out) {
        printf("%s\n", reply.body);
    } else {
        printf("%s\n", token);
        fprintf(stderr, PROG ": credential %s for node %s: the token above is shown once; "
                "only its SHA-256 is kept\n", id, node);
    }
    json_decref(record);
    explicit_bzero(reply.body, reply.len);
    http_reply_free(&reply);
    return error;
}

static int cmd_ls(http_client *client, int json_out)
{
    json_t *root;
    if (http_json_request(&root, client, "GET", "/v1/credentials", NULL, json_out, "credentials"))
        return 1;
    if (root) {
        json_t *list = json_object_get(root, "credentials");
        printf("%-16s %-24s %-20s %-24s %s\n", "ID", "NODE", "CREATED", "PINNED", "SELF");
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *c = json_array_get(list, i);
            printf("%-16s %-24s %-20s ", json_string_value(json_object_get(c, "id")),
                   json_string_value(json_object_get(c, "node")),
                   json_string_value(json_object_get(c, "created")));
            print_labels(json_object_get(c, "labels"));
            printf(" ");
            print_self_labels(json_object_get(c, "self_labels"));
            printf("\n");
        }
        json_decref(root);
    }
    return 0;
}

static int cmd_revoke(http_client *client, int json_out, const char *id)
{
    char path[1024];
    char *escaped = http_escape(id);
    snprintf(path, sizeof path, "/v1/credentials/%s", escaped ? escaped : "");
    free(escaped);
    json_t *c;
    if (http_json_request(&c, client, "DELETE", path, NULL, json_out, id))
        return 1;
    if (c) {
        printf("revoked credential %s of node %s\n", json_string_value(json_object_get(c, "id")),
               json_string_value(json_object_get(c, "node")));
        json_decref(c);
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
        return cli_usage("no command: give issue, ls or revoke");
    const char *command = argv[optind];
    int rest_argc = argc - optind;
    char **rest_argv = argv + optind;
    char *issue_text = NULL;
    const char *out_path = NULL;
    int error;
    if (strcmp(command, "issue") == 0) {
        if ((error = issue_parse(&issue_text, &out_path, rest_argc, rest_argv)) != 0)
            return error;
    } else if (strcmp(command, "ls") == 0) {
        if (rest_argc != 1)
            return cli_usage("ls: takes no arguments");
    } else if (strcmp(command, "revoke") == 0) {
        if (rest_argc != 2)
            return cli_usage("revoke: give exactly one ID");
    } else {
        return cli_usage("%s: unknown command (issue, ls, revoke)", command);
    }
    http_client client;
    if (http_client_init(&client, PROG, opts.server, opts.token_file, opts.cacert) < 0) {
        free(issue_text);
        return 2;
    }
    if (strcmp(command, "issue") == 0)
        return cmd_issue(&client, opts.json, issue_text, out_path);
    if (strcmp(command, "ls") == 0)
        return cmd_ls(&client, opts.json);
    return cmd_revoke(&client, opts.json, rest_argv[1]);
}
