/*
 * The agent's YAML configuration (libyaml document API): strict parsing
 * with defaults, errors naming the key and line. docs/pkgstore-agent.md
 * documents every field.
 */
#include "agent.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <yaml.h>

typedef struct parse_ctx {
    yaml_document_t *doc;
    const char *path;
} parse_ctx;

#define FAIL(node, ...)                                                          \
    do {                                                                         \
        char msg_[512];                                                          \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                \
        return agent_error_set(PKGSTORE_EINVALID, "%s:%lu: %s", ctx->path,       \
                               (unsigned long)(node)->start_mark.line + 1, msg_); \
    } while (0)

static const char *scalar(yaml_node_t *node)
{
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

static int get_string(parse_ctx *ctx, yaml_node_t *node, const char *key, char **out)
{
    const char *text = scalar(node);
    if (!text)
        FAIL(node, "%s: expected a string", key);
    char *copy = strdup(text);
    if (!copy)
        return PKGSTORE_ENOMEM;
    free(*out);
    *out = copy;
    return 0;
}

static int get_seconds(parse_ctx *ctx, yaml_node_t *node, const char *key, double min,
                       double *out)
{
    const char *text = scalar(node);
    char *end = NULL;
    errno = 0;
    double value = text ? strtod(text, &end) : 0;
    if (!text || errno || end == text || *end != '\0' || !isfinite(value) || value < min ||
        value > 86400.0 * 365)
        FAIL(node, "%s: expected a number of seconds >= %g", key, min);
    *out = value;
    return 0;
}

static int get_count(parse_ctx *ctx, yaml_node_t *node, const char *key, unsigned min,
                     unsigned max, unsigned *out)
{
    const char *text = scalar(node);
    char *end = NULL;
    errno = 0;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || end == text || *end != '\0' || value < (long)min || value > (long)max)
        FAIL(node, "%s: expected an integer in %u..%u", key, min, max);
    *out = (unsigned)value;
    return 0;
}

static int get_bool(parse_ctx *ctx, yaml_node_t *node, const char *key, int *out)
{
    const char *text = scalar(node);
    if (text && (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on")))
        *out = 1;
    else if (text && (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off")))
        *out = 0;
    else
        FAIL(node, "%s: expected true or false", key);
    return 0;
}

static int get_strv(parse_ctx *ctx, yaml_node_t *node, const char *key, agent_strv *out)
{
    if (node->type != YAML_SEQUENCE_NODE)
        FAIL(node, "%s: expected a list of strings", key);
    agent_strv_free(out);
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    out->items = calloc(n + 1, sizeof *out->items);
    if (!out->items)
        return PKGSTORE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
        const char *text = scalar(item);
        if (!text)
            FAIL(item, "%s[%zu]: expected a string", key, i);
        if (!(out->items[out->count] = strdup(text)))
            return PKGSTORE_ENOMEM;
        out->count++;
    }
    return 0;
}

static int get_kvv(parse_ctx *ctx, yaml_node_t *node, const char *key, agent_kvv *out)
{
    if (node->type != YAML_MAPPING_NODE)
        FAIL(node, "%s: expected a mapping of strings", key);
    agent_kvv_free(out);
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    out->items = calloc(n + 1, sizeof *out->items);
    if (!out->items)
        return PKGSTORE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *pair = &node->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ctx->doc, pair->value);
        if (!scalar(k) || !scalar(v))
            FAIL(k, "%s: keys and values must be strings", key);
        out->items[out->count].key = strdup(scalar(k));
        out->items[out->count].value = strdup(scalar(v));
        out->count++;
        if (!out->items[out->count - 1].key || !out->items[out->count - 1].value)
            return PKGSTORE_ENOMEM;
    }
    return 0;
}

static int get_ports(parse_ctx *ctx, yaml_node_t *node, const char *key, agent_health_spec *spec)
{
    if (node->type != YAML_SEQUENCE_NODE)
        FAIL(node, "%s: expected a list of port numbers", key);
    spec->port_count = 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, *it);
        const char *text = scalar(item);
        char *end = NULL;
        long port = text ? strtol(text, &end, 10) : 0;
        if (!text || *end || port < 1 || port > 65535)
            FAIL(item, "%s: '%s' is not a port number", key, text ? text : "?");
        if (spec->port_count == sizeof spec->ports / sizeof spec->ports[0])
            FAIL(item, "%s: too many ports", key);
        spec->ports[spec->port_count++] = (int)port;
    }
    return 0;
}

/* Iterate a mapping: for each pair call handler(ctx, key, value, obj). */
typedef int (*pair_fn)(parse_ctx *ctx, const char *key, yaml_node_t *value, void *obj);

static int each_pair(parse_ctx *ctx, yaml_node_t *node, const char *where, pair_fn fn, void *obj)
{
    if (!node || node->type != YAML_MAPPING_NODE)
        FAIL(node, "%s: expected a mapping", where);
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ctx->doc, pair->value);
        if (!scalar(k))
            FAIL(k, "%s: keys must be strings", where);
        int rc = fn(ctx, scalar(k), v, obj);
        if (rc == 1)
            FAIL(k, "%s: unknown key '%s'", where, scalar(k));
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int server_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "url"))
        return get_string(ctx, v, "server.url", &cfg->server_url);
    if (!strcmp(key, "token_file"))
        return get_string(ctx, v, "server.token_file", &cfg->token_file);
    if (!strcmp(key, "ca_file"))
        return get_string(ctx, v, "server.ca_file", &cfg->ca_file);
    if (!strcmp(key, "client_cert"))
        return get_string(ctx, v, "server.client_cert", &cfg->client_cert);
    if (!strcmp(key, "client_key"))
        return get_string(ctx, v, "server.client_key", &cfg->client_key);
    if (!strcmp(key, "timeout_s"))
        return get_seconds(ctx, v, "server.timeout_s", 0.1, &cfg->http_timeout_s);
    if (!strcmp(key, "protocol")) {
        const char *protocol = scalar(v);
        if (!protocol || (strcmp(protocol, "pkgstore") && strcmp(protocol, "opamp")))
            FAIL(v, "server.protocol: must be pkgstore or opamp");
        cfg->opamp = !strcmp(protocol, "opamp");
        return 0;
    }
    if (!strcmp(key, "opamp_path"))
        return get_string(ctx, v, "server.opamp_path", &cfg->opamp_path);
    return 1;
}

static int heartbeat_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "interval_s"))
        return get_seconds(ctx, v, "heartbeat.interval_s", 0.1, &cfg->heartbeat_interval_s);
    if (!strcmp(key, "jitter"))
        return get_seconds(ctx, v, "heartbeat.jitter", 0, &cfg->heartbeat_jitter);
    if (!strcmp(key, "retry_max_s"))
        return get_seconds(ctx, v, "heartbeat.retry_max_s", 0.1, &cfg->heartbeat_retry_max_s);
    if (!strcmp(key, "obey_server_interval"))
        return get_bool(ctx, v, "heartbeat.obey_server_interval", &cfg->obey_server_interval);
    return 1;
}

static int node_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "id"))
        return get_string(ctx, v, "node.id", &cfg->node_id);
    if (!strcmp(key, "platform"))
        return get_string(ctx, v, "node.platform", &cfg->platform);
    if (!strcmp(key, "labels"))
        return get_kvv(ctx, v, "node.labels", &cfg->labels);
    return 1;
}

static int health_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, agent_health_spec *h,
                       const char *where)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", where, key);
    if (!strcmp(key, "health_url")) {
        if (scalar(v) && scalar(v)[0] == '\0') { /* "" disables the check */
            free(h->health_url);
            h->health_url = NULL;
            return 0;
        }
        return get_string(ctx, v, name, &h->health_url);
    }
    if (!strcmp(key, "ports"))
        return get_ports(ctx, v, name, h);
    if (!strcmp(key, "monitor_window_s"))
        return get_seconds(ctx, v, name, 0, &h->monitor_window_s);
    return 1;
}

static int collector_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "package"))
        return get_string(ctx, v, "collector.package", &cfg->package);
    if (!strcmp(key, "version"))
        return get_string(ctx, v, "collector.version", &cfg->initial_version);
    if (!strcmp(key, "executable"))
        return get_string(ctx, v, "collector.executable", &cfg->executable);
    if (!strcmp(key, "config"))
        return get_string(ctx, v, "collector.config", &cfg->collector_config);
    if (!strcmp(key, "args"))
        return get_strv(ctx, v, "collector.args", &cfg->args);
    if (!strcmp(key, "validate_command"))
        return get_string(ctx, v, "collector.validate_command", &cfg->validate_command);
    if (!strcmp(key, "validate_timeout_s"))
        return get_seconds(ctx, v, "collector.validate_timeout_s", 0.1, &cfg->validate_timeout_s);
    if (!strcmp(key, "stop_timeout_s"))
        return get_seconds(ctx, v, "collector.stop_timeout_s", 0, &cfg->stop_timeout_s);
    return health_pair(ctx, key, v, &cfg->health, "collector");
}

static int backoff_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "initial_s"))
        return get_seconds(ctx, v, "restart_backoff.initial_s", 0.01, &cfg->backoff_initial_s);
    if (!strcmp(key, "max_s"))
        return get_seconds(ctx, v, "restart_backoff.max_s", 0.01, &cfg->backoff_max_s);
    if (!strcmp(key, "reset_after_s"))
        return get_seconds(ctx, v, "restart_backoff.reset_after_s", 0, &cfg->backoff_reset_s);
    return 1;
}

static int retry_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "initial_s"))
        return get_seconds(ctx, v, "upgrade_retry.initial_s", 0.01, &cfg->retry_initial_s);
    if (!strcmp(key, "max_s"))
        return get_seconds(ctx, v, "upgrade_retry.max_s", 0.01, &cfg->retry_max_s);
    return 1;
}

static int limit_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "attempts"))
        return get_count(ctx, v, "upgrade_limit.attempts", 0, 10000, &cfg->limit_attempts);
    if (!strcmp(key, "window_s"))
        return get_seconds(ctx, v, "upgrade_limit.window_s", 1, &cfg->limit_window_s);
    return 1;
}

static int watchdog_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "window_s"))
        return get_seconds(ctx, v, "upgrade_watchdog.window_s", 0, &cfg->watchdog_window_s);
    if (!strcmp(key, "crashes"))
        return get_count(ctx, v, "upgrade_watchdog.crashes", 1, 1000, &cfg->watchdog_crashes);
    return 1;
}

static int addon_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_addon_config *addon = obj;
    if (!strcmp(key, "name"))
        return get_string(ctx, v, "addons[].name", &addon->name);
    if (!strcmp(key, "args")) {
        addon->has_args = 1;
        return get_strv(ctx, v, "addons[].args", &addon->args);
    }
    if (!strcmp(key, "env"))
        return get_kvv(ctx, v, "addons[].env", &addon->env);
    if (!strcmp(key, "stop_timeout_s"))
        return get_seconds(ctx, v, "addons[].stop_timeout_s", 0, &addon->stop_timeout_s);
    return health_pair(ctx, key, v, &addon->health, "addons[]");
}

static int addons_value(parse_ctx *ctx, yaml_node_t *v, agent_config *cfg)
{
    if (v->type != YAML_SEQUENCE_NODE)
        FAIL(v, "addons: expected a list");
    if (cfg->addons) /* YAML allows a repeated key; a second list would overrun the first */
        FAIL(v, "addons: listed twice");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    cfg->addons = calloc(n + 1, sizeof *cfg->addons);
    if (!cfg->addons)
        return PKGSTORE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, v->data.sequence.items.start[i]);
        agent_addon_config *addon = &cfg->addons[cfg->addon_count++];
        addon->stop_timeout_s = -1;
        addon->health.monitor_window_s = -1;
        int rc = each_pair(ctx, item, "addons[]", addon_pair, addon);
        if (rc < 0)
            return rc;
        if (!agent_valid_name(addon->name))
            FAIL(item, "addons[%zu].name: missing or not a valid package name", i);
    }
    return 0;
}

static int trust_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "root"))
        return get_string(ctx, v, "trust.root", &cfg->trust_root);
    return 1;
}

static int top_pair(parse_ctx *ctx, const char *key, yaml_node_t *v, void *obj)
{
    agent_config *cfg = obj;
    if (!strcmp(key, "server"))
        return each_pair(ctx, v, "server", server_pair, cfg);
    if (!strcmp(key, "heartbeat"))
        return each_pair(ctx, v, "heartbeat", heartbeat_pair, cfg);
    if (!strcmp(key, "node"))
        return each_pair(ctx, v, "node", node_pair, cfg);
    if (!strcmp(key, "state_dir"))
        return get_string(ctx, v, "state_dir", &cfg->state_dir);
    if (!strcmp(key, "collector"))
        return each_pair(ctx, v, "collector", collector_pair, cfg);
    if (!strcmp(key, "restart_backoff"))
        return each_pair(ctx, v, "restart_backoff", backoff_pair, cfg);
    if (!strcmp(key, "upgrade_retry"))
        return each_pair(ctx, v, "upgrade_retry", retry_pair, cfg);
    if (!strcmp(key, "upgrade_limit"))
        return each_pair(ctx, v, "upgrade_limit", limit_pair, cfg);
    if (!strcmp(key, "upgrade_watchdog"))
        return each_pair(ctx, v, "upgrade_watchdog", watchdog_pair, cfg);
    if (!strcmp(key, "addons"))
        return addons_value(ctx, v, cfg);
    if (!strcmp(key, "trust"))
        return each_pair(ctx, v, "trust", trust_pair, cfg);
    if (!strcmp(key, "log_level")) {
        const char *text = scalar(v);
        if (!text || (strcmp(text, "debug") && strcmp(text, "info") && strcmp(text, "warn") &&
                      strcmp(text, "error")))
            FAIL(v, "log_level: expected debug, info, warn or error");
        return get_string(ctx, v, "log_level", &cfg->log_level);
    }
    return 1;
}

/* node.platform as configured (normalized: x86_64 -> amd64, ...), else the
 * host's, both through libpkgstore's platform module. */
static int resolve_platform(agent_config *cfg)
{
    char text[PKGSTORE_PLATFORM_STR_SIZE];
    if (cfg->platform) {
        if (pkgstore_platform_normalize(text, cfg->platform) < 0)
            return agent_error_set(PKGSTORE_EINVALID, "%s: node.platform: %s", cfg->path,
                                   pkgstore_error_detail());
    } else {
        pkgstore_platform host;
        if (pkgstore_platform_host(&host) < 0)
            return agent_error_set(PKGSTORE_EINVALID,
                                   "%s: node.platform: cannot detect the host's (%s); set it",
                                   cfg->path, pkgstore_error_detail());
        pkgstore_platform_format(text, &host);
    }
    free(cfg->platform);
    cfg->platform = strdup(text);
    return cfg->platform ? 0 : PKGSTORE_ENOMEM;
}

static int apply_defaults(agent_config *cfg, unsigned flags)
{
    if (!cfg->server_url)
        return agent_error_set(PKGSTORE_EINVALID, "%s: server.url: required", cfg->path);
    size_t n = strlen(cfg->server_url);
    while (n > 0 && cfg->server_url[n - 1] == '/')
        cfg->server_url[--n] = '\0';
    if (strncmp(cfg->server_url, "http://", 7) && strncmp(cfg->server_url, "https://", 8))
        return agent_error_set(PKGSTORE_EINVALID, "%s: server.url: must start with http:// or https://",
                               cfg->path);
    /* a CA for a plain-HTTP url would protect nothing, silently */
    if (cfg->ca_file && strncmp(cfg->server_url, "https://", 8))
        return agent_error_set(PKGSTORE_EINVALID,
                               "%s: server.ca_file is set but server.url is not https://",
                               cfg->path);
    if (!cfg->opamp_path && !(cfg->opamp_path = strdup("/v1/opamp")))
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    /* a path only: the OpAMP endpoint lives on server.url's host, with its
     * token, CA and client certificate */
    if (cfg->opamp_path[0] != '/' || strlen(cfg->opamp_path) > 1024 ||
        strcspn(cfg->opamp_path, " \t\r\n?#") != strlen(cfg->opamp_path))
        return agent_error_set(PKGSTORE_EINVALID,
                               "%s: server.opamp_path: must be a path starting with / (no blanks, "
                               "query or fragment)",
                               cfg->path);
    if (!cfg->client_cert != !cfg->client_key)
        return agent_error_set(PKGSTORE_EINVALID, "%s: server.%s is set but server.%s is not",
                               cfg->path, cfg->client_cert ? "client_cert" : "client_key",
                               cfg->client_cert ? "client_key" : "client_cert");
    if (cfg->client_cert && strncmp(cfg->server_url, "https://", 8))
        return agent_error_set(PKGSTORE_EINVALID,
                               "%s: server.client_cert is set but server.url is not https://",
                               cfg->path);
    if (!cfg->package || !agent_valid_name(cfg->package))
        return agent_error_set(PKGSTORE_EINVALID, "%s: collector.package: required (a package name)",
                               cfg->path);
    if (!cfg->executable || cfg->executable[0] != '/')
        return agent_error_set(PKGSTORE_EINVALID, "%s: collector.executable: required (an absolute path)",
                               cfg->path);
    if (!cfg->collector_config)
        return agent_error_set(PKGSTORE_EINVALID, "%s: collector.config: required", cfg->path);
    if (!cfg->state_dir && !(cfg->state_dir = strdup("/var/lib/pkgstore-agent")))
        return PKGSTORE_ENOMEM;
    if (!cfg->validate_command &&
        !(cfg->validate_command = strdup("{executable} --config {config} validate")))
        return PKGSTORE_ENOMEM;
    if (!cfg->args.items) {
        cfg->args.items = calloc(3, sizeof(char *));
        if (!cfg->args.items)
            return PKGSTORE_ENOMEM;
        cfg->args.items[0] = strdup("--config");
        cfg->args.items[1] = strdup("{config}");
        cfg->args.count = 2;
    }
    if (cfg->backoff_max_s < cfg->backoff_initial_s)
        cfg->backoff_max_s = cfg->backoff_initial_s;
    if (cfg->retry_max_s < cfg->retry_initial_s)
        cfg->retry_max_s = cfg->retry_initial_s;
    if (flags & AGENT_CONFIG_NO_ENV) {
        /* nothing of this machine: a harness parses untrusted text */
        if (!cfg->platform && !(cfg->platform = strdup("linux/amd64")))
            return PKGSTORE_ENOMEM;
        if (!cfg->node_id && !(cfg->node_id = strdup("unknown")))
            return PKGSTORE_ENOMEM;
    }
    int rc = resolve_platform(cfg);
    if (rc < 0)
        return rc;
    if (!cfg->node_id) {
        char *id = agent_trimmed(agent_read_small_file("/etc/machine-id", 256));
        if (id && !*id) {
            free(id);
            id = NULL;
        }
        if (!id) {
            char host[256] = "";
            gethostname(host, sizeof host - 1);
            id = strdup(host[0] ? host : "unknown");
        }
        cfg->node_id = id;
        if (!id)
            return PKGSTORE_ENOMEM;
    }
    if (cfg->token_file && !(flags & AGENT_CONFIG_NO_ENV)) {
        /* read by the helper at every request; checked here to fail early */
        char *token = agent_read_small_file(cfg->token_file, 4096);
        if (!token)
            return agent_error_set(PKGSTORE_EIO, "%s: server.token_file: %s: cannot read: %s",
                                   cfg->path, cfg->token_file, strerror(errno));
        free(token);
    }
    /* its signatures are checked at start by the helper (main.c) */
    if (cfg->trust_root && !cfg->trust_root[0])
        return agent_error_set(PKGSTORE_EINVALID, "%s: trust.root: empty path", cfg->path);
    if (cfg->trust_root && !(flags & AGENT_CONFIG_NO_ENV) && access(cfg->trust_root, R_OK) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: trust.root: %s: cannot read: %s", cfg->path,
                               cfg->trust_root, strerror(errno));
    if (cfg->ca_file && !(flags & AGENT_CONFIG_NO_ENV) && access(cfg->ca_file, R_OK) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: server.ca_file: %s: cannot read: %s", cfg->path,
                               cfg->ca_file, strerror(errno));
    if (cfg->client_cert && !(flags & AGENT_CONFIG_NO_ENV)) {
        struct stat st;
        if (access(cfg->client_cert, R_OK) < 0)
            return agent_error_set(PKGSTORE_EIO, "%s: server.client_cert: %s: cannot read: %s",
                                   cfg->path, cfg->client_cert, strerror(errno));
        if (access(cfg->client_key, R_OK) < 0 || stat(cfg->client_key, &st) < 0)
            return agent_error_set(PKGSTORE_EIO, "%s: server.client_key: %s: cannot read: %s",
                                   cfg->path, cfg->client_key, strerror(errno));
        /* what proves this node's identity must not be readable by others */
        if (st.st_mode & (S_IRWXG | S_IRWXO))
            return agent_error_set(PKGSTORE_EINVALID,
                                   "%s: server.client_key: %s: mode %04o lets others read it; "
                                   "chmod 600 it",
                                   cfg->path, cfg->client_key, (unsigned)(st.st_mode & 07777));
    }
    for (size_t i = 0; i < cfg->addon_count; i++) {
        agent_addon_config *addon = &cfg->addons[i];
        if (addon->stop_timeout_s < 0)
            addon->stop_timeout_s = cfg->stop_timeout_s;
        if (addon->health.monitor_window_s < 0)
            addon->health.monitor_window_s = cfg->health.monitor_window_s;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->addons[j].name, addon->name))
                return agent_error_set(PKGSTORE_EINVALID, "%s: addons: '%s' listed twice",
                                       cfg->path, addon->name);
    }
    return 0;
}

static int config_init(agent_config *cfg, const char *path)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->heartbeat_interval_s = 30;
    cfg->heartbeat_jitter = 0.1;
    cfg->heartbeat_retry_max_s = 300;
    cfg->obey_server_interval = 1;
    cfg->http_timeout_s = 30;
    cfg->validate_timeout_s = 30;
    cfg->stop_timeout_s = 10;
    cfg->health.monitor_window_s = 60;
    cfg->health.health_url = strdup("http://127.0.0.1:13133/");
    cfg->backoff_initial_s = 1;
    cfg->backoff_max_s = 60;
    cfg->backoff_reset_s = 60;
    cfg->retry_initial_s = 30;
    cfg->retry_max_s = 3600;
    cfg->limit_attempts = 10;
    cfg->limit_window_s = 600;
    cfg->watchdog_window_s = 600;
    cfg->watchdog_crashes = 2;
    cfg->path = strdup(path);
    if (!cfg->path || !cfg->health.health_url)
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    return 0;
}

static int parse_file(agent_config *cfg, FILE *f, const char *path, unsigned flags);

int agent_config_load(agent_config *cfg, const char *path)
{
    int rc = config_init(cfg, path);
    if (rc < 0)
        return rc;
    FILE *f = fopen(path, "re");
    if (!f)
        return agent_error_set(errno == ENOENT ? PKGSTORE_ENOTFOUND : PKGSTORE_EIO, "%s: %s", path,
                               strerror(errno));
    rc = parse_file(cfg, f, path, 0);
    fclose(f);
    return rc;
}

/* Parse f into cfg, whose defaults config_init() set. */
static int parse_file(agent_config *cfg, FILE *f, const char *path, unsigned flags)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = agent_error_set(PKGSTORE_EINVALID, "%s:%lu: %s", path,
                             (unsigned long)parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    parse_ctx ctx = {.doc = &doc, .path = path};
    if (!root)
        rc = agent_error_set(PKGSTORE_EINVALID, "%s: empty configuration", path);
    else
        rc = each_pair(&ctx, root, "top level", top_pair, cfg);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc == 0)
        rc = apply_defaults(cfg, flags);
    return rc;
}

int agent_config_parse(agent_config *cfg, FILE *f, const char *name, unsigned flags)
{
    int rc = config_init(cfg, name);
    if (rc < 0)
        return rc;
    return parse_file(cfg, f, name, flags);
}

static void health_free(agent_health_spec *h)
{
    free(h->health_url);
    h->health_url = NULL;
}

void agent_config_free(agent_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->server_url);
    free(cfg->token_file);
    free(cfg->ca_file);
    free(cfg->client_cert);
    free(cfg->client_key);
    free(cfg->opamp_path);
    free(cfg->trust_root);
    free(cfg->node_id);
    free(cfg->platform);
    agent_kvv_free(&cfg->labels);
    free(cfg->state_dir);
    free(cfg->package);
    free(cfg->initial_version);
    free(cfg->executable);
    free(cfg->collector_config);
    agent_strv_free(&cfg->args);
    free(cfg->validate_command);
    health_free(&cfg->health);
    for (size_t i = 0; i < cfg->addon_count; i++) {
        free(cfg->addons[i].name);
        agent_strv_free(&cfg->addons[i].args);
        agent_kvv_free(&cfg->addons[i].env);
        health_free(&cfg->addons[i].health);
    }
    free(cfg->addons);
    free(cfg->log_level);
    memset(cfg, 0, sizeof *cfg);
}

const agent_addon_config *agent_config_addon(const agent_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->addon_count; i++)
        if (!strcmp(cfg->addons[i].name, name))
            return &cfg->addons[i];
    return NULL;
}

static json_t *strv_json(const agent_strv *v)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < v->count; i++)
        json_array_append_new(arr, json_string(v->items[i]));
    return arr;
}

static json_t *kvv_json(const agent_kvv *v)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < v->count; i++)
        json_object_set_new(obj, v->items[i].key, json_string(v->items[i].value));
    return obj;
}

static void health_json(json_t *obj, const agent_health_spec *h)
{
    json_object_set_new(obj, "health_url", h->health_url ? json_string(h->health_url) : json_null());
    json_t *ports = json_array();
    for (size_t i = 0; i < h->port_count; i++)
        json_array_append_new(ports, json_integer(h->ports[i]));
    json_object_set_new(obj, "ports", ports);
    json_object_set_new(obj, "monitor_window_s", json_real(h->monitor_window_s));
}

char *agent_config_dump_json(const agent_config *cfg)
{
    json_t *root = json_object();
    json_object_set_new(root, "server",
                        json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:f, s:s, s:s?}", "url",
                                  cfg->server_url, "token_file", cfg->token_file, "ca_file",
                                  cfg->ca_file, "client_cert", cfg->client_cert, "client_key",
                                  cfg->client_key, "timeout_s", cfg->http_timeout_s, "protocol",
                                  cfg->opamp ? "opamp" : "pkgstore", "opamp_path",
                                  cfg->opamp_path));
    json_object_set_new(root, "heartbeat",
                        json_pack("{s:f, s:f, s:f, s:b}", "interval_s", cfg->heartbeat_interval_s,
                                  "jitter", cfg->heartbeat_jitter, "retry_max_s",
                                  cfg->heartbeat_retry_max_s, "obey_server_interval",
                                  cfg->obey_server_interval));
    json_object_set_new(root, "node", json_pack("{s:s, s:s, s:o}", "id", cfg->node_id, "platform",
                                                cfg->platform, "labels", kvv_json(&cfg->labels)));
    json_object_set_new(root, "state_dir", json_string(cfg->state_dir));
    json_t *collector = json_pack(
        "{s:s, s:s?, s:s, s:s, s:o, s:s, s:f, s:f}", "package", cfg->package, "version",
        cfg->initial_version, "executable", cfg->executable, "config", cfg->collector_config,
        "args", strv_json(&cfg->args), "validate_command", cfg->validate_command,
        "validate_timeout_s", cfg->validate_timeout_s, "stop_timeout_s", cfg->stop_timeout_s);
    health_json(collector, &cfg->health);
    json_object_set_new(root, "collector", collector);
    json_object_set_new(root, "restart_backoff",
                        json_pack("{s:f, s:f, s:f}", "initial_s", cfg->backoff_initial_s, "max_s",
                                  cfg->backoff_max_s, "reset_after_s", cfg->backoff_reset_s));
    json_object_set_new(root, "upgrade_retry", json_pack("{s:f, s:f}", "initial_s",
                                                         cfg->retry_initial_s, "max_s",
                                                         cfg->retry_max_s));
    json_object_set_new(root, "upgrade_limit",
                        json_pack("{s:i, s:f}", "attempts", (int)cfg->limit_attempts, "window_s",
                                  cfg->limit_window_s));
    json_object_set_new(root, "upgrade_watchdog",
                        json_pack("{s:f, s:i}", "window_s", cfg->watchdog_window_s, "crashes",
                                  (int)cfg->watchdog_crashes));
    json_object_set_new(root, "log_level", json_string(cfg->log_level ? cfg->log_level : "info"));
    json_object_set_new(root, "trust", json_pack("{s:s?}", "root", cfg->trust_root));
    json_t *addons = json_array();
    for (size_t i = 0; i < cfg->addon_count; i++) {
        const agent_addon_config *a = &cfg->addons[i];
        json_t *obj = json_pack("{s:s, s:o, s:o, s:f}", "name", a->name, "args",
                                a->has_args ? strv_json(&a->args) : json_null(), "env",
                                kvv_json(&a->env), "stop_timeout_s", a->stop_timeout_s);
        health_json(obj, &a->health);
        json_array_append_new(addons, obj);
    }
    json_object_set_new(root, "addons", addons);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return text;
}
