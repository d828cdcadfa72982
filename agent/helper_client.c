/*
 * The resident agent's side of pkgstore-agent-helper: find the helper, run
 * one command in it, read its one-line JSON reply. The helper carries the
 * agent's child marker (so a restarted agent stops what a killed one left
 * running) and the agent's pid (so it dies with the agent).
 */
#include "agent.h"
#include "reply.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HELPER_NAME "pkgstore-agent-helper"
#define HELPER_ARGS_MAX 16
#define REPLY_MAX (64u << 20)
#define FILE_OP_TIMEOUT_S 0   /* local file work is never cut short */
#define HTTP_SLACK_S 5.0      /* beyond the helper's own request timeout */

extern char **environ;

static char *helper_path;
static char **helper_envp;
static char *token_file;
static char *node_id;
static char *ca_file;
static char *client_cert, *client_key;
static double http_timeout_s = 30;

const char *agent_helper_path(void)
{
    return helper_path;
}

static char *find_helper(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    const char *candidates[] = {"/" HELPER_NAME, "/../libexec/pkgstore/" HELPER_NAME};
    for (size_t i = 0; i < 2; i++) {
        char *path = agent_strdup_printf("%s%s", self, candidates[i]);
        char *real = path && access(path, X_OK) == 0 ? realpath(path, NULL) : NULL;
        free(path);
        if (real)
            return real;
    }
    return NULL;
}

int agent_helper_init(const agent_config *cfg)
{
    agent_helper_cleanup();
    helper_path = find_helper();
    if (!helper_path)
        return agent_error_set(PKGSTORE_ENOTFOUND,
                               HELPER_NAME ": not found beside the agent's executable nor in "
                               "../libexec/pkgstore/ (is the installation complete?)");
    size_t base = 0;
    while (environ[base])
        base++;
    helper_envp = calloc(base + 3, sizeof *helper_envp);
    if (!helper_envp)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < base; i++)
        if (strncmp(environ[i], "PKGSTORE_AGENT_PID=", 19) &&
            strncmp(environ[i], "PKGSTORE_AGENT_CHILD=", 21))
            helper_envp[n++] = strdup(environ[i]);
    helper_envp[n++] = agent_strdup_printf("PKGSTORE_AGENT_PID=%ld", (long)getpid());
    helper_envp[n++] = agent_strdup_printf("PKGSTORE_AGENT_CHILD=%s/helper", cfg->state_dir);
    for (size_t i = 0; i < n; i++)
        if (!helper_envp[i])
            return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    token_file = cfg->token_file ? strdup(cfg->token_file) : NULL;
    node_id = cfg->node_id ? strdup(cfg->node_id) : NULL;
    ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    client_cert = cfg->client_cert ? strdup(cfg->client_cert) : NULL;
    client_key = cfg->client_key ? strdup(cfg->client_key) : NULL;
    if ((cfg->token_file && !token_file) || (cfg->node_id && !node_id) ||
        (cfg->ca_file && !ca_file) || (cfg->client_cert && !client_cert) ||
        (cfg->client_key && !client_key))
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    http_timeout_s = cfg->http_timeout_s;
    return 0;
}

void agent_helper_cleanup(void)
{
    free(helper_path);
    helper_path = NULL;
    agent_argv_free(helper_envp);
    helper_envp = NULL;
    free(token_file);
    token_file = NULL;
    free(node_id);
    node_id = NULL;
    free(ca_file);
    ca_file = NULL;
    free(client_cert);
    client_cert = NULL;
    free(client_key);
    client_key = NULL;
}

static int is_network(const char *cmd)
{
    return !strncmp(cmd, "http-", 5) || !strcmp(cmd, "health") || !strcmp(cmd, "download") ||
           !strcmp(cmd, "fetch") || !strcmp(cmd, "opamp-exchange");
}

int agent_helper_call(json_t **reply_out, const char *input, double timeout_s, unsigned flags,
                      const char *cmd, ...)
{
    if (reply_out)
        *reply_out = NULL;
    if (!helper_path)
        return agent_error_set(PKGSTORE_EINVALID, HELPER_NAME ": not initialised");
    int network = is_network(cmd);
    char timeout_text[32];
    snprintf(timeout_text, sizeof timeout_text, "%g", timeout_s > 0 ? timeout_s : http_timeout_s);
    const char *argv[HELPER_ARGS_MAX + 10];
    size_t argc = 0;
    argv[argc++] = helper_path;
    if (network && token_file && !(flags & AGENT_HELPER_NO_TOKEN)) {
        argv[argc++] = "--token-file";
        argv[argc++] = token_file;
        if (node_id) { /* a per-node credential is checked against it */
            argv[argc++] = "--node";
            argv[argc++] = node_id;
        }
    }
    /* The server's CA goes where its token goes: requests to server.url.
     * A mirror or a collector's health URL has certificates of its own. */
    if (network && ca_file && !(flags & AGENT_HELPER_NO_TOKEN)) {
        argv[argc++] = "--ca-file";
        argv[argc++] = ca_file;
    }
    if (network && client_cert && !(flags & AGENT_HELPER_NO_TOKEN)) {
        argv[argc++] = "--client-cert";
        argv[argc++] = client_cert;
        argv[argc++] = "--client-key";
        argv[argc++] = client_key;
    }
    argv[argc++] = "--timeout";
    argv[argc++] = timeout_text;
    argv[argc++] = cmd;
    va_list ap;
    va_start(ap, cmd);
    const char *arg;
    while ((arg = va_arg(ap, const char *)) && argc < HELPER_ARGS_MAX + 8)
        argv[argc++] = arg;
    va_end(ap);
    argv[argc] = NULL;

    /* Network commands stop on their own after timeout_s (a download only
     * when it stalls that long); file operations are never cut short: a
     * swap killed half-way is safe, but it is not something to provoke. */
    agent_run_opts opts = {
        .name = HELPER_NAME,
        .argv = (char **)argv,
        .envp = helper_envp,
        .input = input,
        .input_len = input ? strlen(input) : 0,
        .timeout_s = network && strcmp(cmd, "download")
                         ? (timeout_s > 0 ? timeout_s : http_timeout_s) + HTTP_SLACK_S
                         : FILE_OP_TIMEOUT_S,
        .interruptible = network,
        .max_output = REPLY_MAX,
    };
    agent_run_result res;
    int rc = agent_run(&opts, &res);
    if (rc < 0)
        return rc;
    if (res.outcome == AGENT_RUN_STOPPED) {
        free(res.output);
        return agent_error_set(PKGSTORE_ENET, "%s: interrupted by stop request", cmd);
    }
    if (res.outcome == AGENT_RUN_TIMEOUT) {
        free(res.output);
        return agent_error_set(PKGSTORE_ENET, "%s: no answer within %.0f s", cmd, opts.timeout_s);
    }
    char how[96];
    agent_describe_status(how, sizeof how, res.wait_status);
    json_t *reply = NULL;
    rc = agent_helper_reply_parse(&reply, res.output, res.len, cmd, how);
    free(res.output);
    if (rc < 0)
        return rc;
    if (reply_out)
        *reply_out = reply;
    else
        json_decref(reply);
    return 0;
}

int agent_file_digest(char out[PKGSTORE_DIGEST_STR_SIZE], const char *path)
{
    out[0] = '\0';
    json_t *reply = NULL;
    int rc = agent_helper_call(&reply, NULL, 0, 0, "digest", path, NULL);
    if (rc < 0)
        return rc;
    rc = agent_helper_reply_digest(out, reply, "digest", HELPER_NAME " digest");
    json_decref(reply);
    return rc;
}

int agent_remove_tree(const char *path)
{
    return agent_helper_call(NULL, NULL, 0, 0, "rmtree", path, NULL);
}
