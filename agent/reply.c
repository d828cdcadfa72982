/*
 * Parsing what the agent receives: the heartbeat reply (offers, their
 * addon annotations and dependencies, targets) and the helper's replies.
 * Everything here is pure: no file, no process, no log line, so that the
 * fuzz harnesses reach it exactly as the agent does.
 */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ strings */

/* A printable string of 1..max bytes (no control characters). */
static int plain_string(const char *text, size_t max)
{
    size_t len = text ? strlen(text) : 0;
    if (len == 0 || len > max)
        return 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static const char *member_string(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int semver_ok(const char *text)
{
    pkgstore_semver parsed;
    return text && strlen(text) <= PKGSTORE_VERSION_MAX && pkgstore_version_parse(&parsed, text) == 0;
}

static int policy_name_ok(const char *text)
{
    size_t len = text ? strlen(text) : 0;
    if (len == 0 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '.' || c == '_' || c == '-'))))
            return 0;
    }
    return 1;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static int env_name_ok(const char *text)
{
    if (!text || !*text || strlen(text) > 256 || (text[0] >= '0' && text[0] <= '9'))
        return 0;
    for (const char *p = text; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    return 1;
}

static char *dup_checked(const char *text, int *oom)
{
    if (!text)
        return NULL;
    char *copy = strdup(text);
    if (!copy)
        *oom = 1;
    return copy;
}

/* ------------------------------------------------------------------ offers */

void agent_offer_free(agent_offer *o)
{
    if (!o)
        return;
    free(o->name);
    free(o->version);
    free(o->digest);
    free(o->url);
    free(o->format);
    free(o->entrypoint);
    free(o->policy);
    free(o->manifest);
    free(o->signatures);
    free(o->trust_error);
    agent_strv_free(&o->args);
    agent_kvv_free(&o->env);
    for (size_t i = 0; i < o->ndeps; i++) {
        free(o->deps[i].name);
        free(o->deps[i].constraint);
    }
    free(o->deps);
    memset(o, 0, sizeof *o);
}

#define WHY(...)                                       \
    do {                                               \
        snprintf(why, why_len, __VA_ARGS__);           \
        goto fail;                                     \
    } while (0)

/* io.pkgstore.addon.args: a JSON array of strings, inside a string. */
static int parse_args(agent_strv *out, const char *text, char *why, size_t why_len)
{
    json_t *args = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    size_t i;
    json_t *v;
    int rc = -1;
    if (!json_is_array(args) || json_array_size(args) > REPLY_ARGS_MAX) {
        snprintf(why, why_len, "annotations: io.pkgstore.addon.args: not a JSON array of at most %d strings",
                 REPLY_ARGS_MAX);
        goto out;
    }
    out->items = calloc(json_array_size(args) + 1, sizeof *out->items);
    if (!out->items) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    json_array_foreach(args, i, v) {
        const char *arg = json_is_string(v) ? json_string_value(v) : NULL;
        if (!arg || strlen(arg) > REPLY_STRING_MAX) {
            snprintf(why, why_len, "annotations: io.pkgstore.addon.args[%zu]: not a string of at most %d bytes",
                     i, REPLY_STRING_MAX);
            goto out;
        }
        if (!(out->items[out->count] = strdup(arg))) {
            snprintf(why, why_len, "out of memory");
            goto out;
        }
        out->count++;
    }
    rc = 0;
out:
    json_decref(args);
    return rc;
}

/* io.pkgstore.addon.env: a JSON object of strings, inside a string. */
static int parse_env(agent_kvv *out, const char *text, char *why, size_t why_len)
{
    json_t *env = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    const char *key;
    json_t *v;
    int rc = -1;
    if (!json_is_object(env) || json_object_size(env) > REPLY_ENV_MAX) {
        snprintf(why, why_len, "annotations: io.pkgstore.addon.env: not a JSON object of at most %d strings",
                 REPLY_ENV_MAX);
        goto out;
    }
    out->items = calloc(json_object_size(env) + 1, sizeof *out->items);
    if (!out->items) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    json_object_foreach(env, key, v) {
        const char *value = json_is_string(v) ? json_string_value(v) : NULL;
        if (!env_name_ok(key) || !value || strlen(value) > REPLY_STRING_MAX) {
            snprintf(why, why_len, "annotations: io.pkgstore.addon.env: '%.64s': not NAME: string", key);
            goto out;
        }
        out->items[out->count].key = strdup(key);
        out->items[out->count].value = strdup(value);
        out->count++;
        if (!out->items[out->count - 1].key || !out->items[out->count - 1].value) {
            snprintf(why, why_len, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(env);
    return rc;
}

static int parse_deps(agent_offer *o, json_t *deps, char *why, size_t why_len)
{
    size_t i;
    json_t *item;
    if (!json_is_array(deps) || json_array_size(deps) > REPLY_DEPS_MAX) {
        snprintf(why, why_len, "%s: dependencies: not an array of at most %d", o->name, REPLY_DEPS_MAX);
        return -1;
    }
    o->deps = calloc(json_array_size(deps) + 1, sizeof *o->deps);
    if (!o->deps) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    json_array_foreach(deps, i, item) {
        const char *name = member_string(item, "name"), *version = member_string(item, "version");
        pkgstore_version_constraint *constraint = NULL;
        if (!agent_valid_name(name) || !plain_string(version, PKGSTORE_MANIFEST_CONSTRAINT_MAX) ||
            pkgstore_version_constraint_parse(&constraint, version) < 0) {
            snprintf(why, why_len, "%s: dependencies[%zu]: not {\"name\", \"version\": a constraint}",
                     o->name, i);
            return -1;
        }
        pkgstore_version_constraint_free(constraint);
        o->deps[o->ndeps].name = strdup(name);
        o->deps[o->ndeps].constraint = strdup(version);
        o->ndeps++;
        if (!o->deps[o->ndeps - 1].name || !o->deps[o->ndeps - 1].constraint) {
            snprintf(why, why_len, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* "manifest" and "signatures" are kept for the trust check; what is wrong
 * with them is kept too, as the reason an agent with a root refuses the
 * offer (one without a root never looks). -1: out of memory. */
static int parse_signed(agent_offer *o, json_t *item)
{
    json_t *manifest = json_object_get(item, "manifest");
    json_t *signatures = json_object_get(item, "signatures");
    const char *problem = NULL;
    if (manifest && !json_is_null(manifest)) {
        const char *text = json_string_value(manifest);
        if (!text || pkgstore_digest_validate(text) < 0)
            problem = "manifest: not a sha256 digest";
        else if (!(o->manifest = strdup(text)))
            return -1;
    }
    if (signatures && !json_is_null(signatures)) {
        if (!json_is_array(signatures))
            problem = problem ? problem : "signatures: not an array";
        else if (!(o->signatures = json_dumps(signatures, JSON_COMPACT)))
            return -1;
    }
    if (problem && !(o->trust_error = strdup(problem)))
        return -1;
    return 0;
}

int agent_offer_parse(agent_offer *o, json_t *item, char *why, size_t why_len)
{
    int oom = 0;
    memset(o, 0, sizeof *o);
    if (!json_is_object(item))
        WHY("not an object");
    const char *name = member_string(item, "name"), *type = member_string(item, "type");
    const char *version = member_string(item, "version"), *digest = member_string(item, "digest");
    const char *format = member_string(item, "format"), *entrypoint = member_string(item, "entrypoint");
    const char *url = member_string(item, "url"), *policy = member_string(item, "policy");
    json_t *size = json_object_get(item, "size"), *retry = json_object_get(item, "retry");
    json_t *annotations = json_object_get(item, "annotations");
    json_t *deps = json_object_get(item, "dependencies");
    if (!agent_valid_name(name))
        WHY("name: missing or invalid");
    if (!type || (strcmp(type, "primary") && strcmp(type, "addon")))
        WHY("%s: type: must be primary or addon", name);
    /* it goes into the journal, the log and status reports: a SemVer */
    if (!version)
        WHY("%s: version: missing", name);
    if (!semver_ok(version))
        WHY("%s: version: not a SemVer version of at most %d characters", name,
            PKGSTORE_VERSION_MAX);
    if (!digest || pkgstore_digest_validate(digest) < 0)
        WHY("%s: digest: not a sha256 digest", name);
    if (!json_is_integer(size) || json_integer_value(size) <= 0 ||
        json_integer_value(size) > ((json_int_t)1 << 50))
        WHY("%s: size: must be a positive integer", name);
    /* The helper parses the format name itself (an unknown one fails the
     * upgrade at its extract step); here it only has to be a plain word. */
    if (format && (!*format || strlen(format) > 32 ||
                   strspn(format, "abcdefghijklmnopqrstuvwxyz0123456789+-_.") != strlen(format)))
        WHY("%s: format: not a format name", name);
    if (!url)
        WHY("%s: url: missing", name);
    if (!plain_string(url, REPLY_STRING_MAX) || strchr(url, ' ') ||
        (url[0] != '/' && strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
        WHY("%s: url: not a path or an http(s) URL", name);
    if (entrypoint && (!plain_string(entrypoint, 255) || entrypoint[0] == '/' ||
                       strstr(entrypoint, "..")))
        WHY("%s: entrypoint: unsafe path", name);
    if (policy && !policy_name_ok(policy))
        WHY("%s: policy: not a policy name", name);
    if (retry && !json_is_null(retry) &&
        (!json_is_integer(retry) || json_integer_value(retry) < 0 ||
         json_integer_value(retry) > (json_int_t)UINT32_MAX))
        WHY("%s: retry: not an integer in 0..%u", name, (unsigned)UINT32_MAX);
    if (annotations && !json_is_null(annotations) && !json_is_object(annotations))
        WHY("%s: annotations: not an object", name);
    o->is_addon = !strcmp(type, "addon");
    o->size = (uint64_t)json_integer_value(size);
    o->retry = json_is_integer(retry) ? (uint32_t)json_integer_value(retry) : 0;
    o->name = dup_checked(name, &oom);
    o->version = dup_checked(version, &oom);
    o->digest = dup_checked(digest, &oom);
    o->url = dup_checked(url, &oom);
    o->format = dup_checked(format, &oom);
    o->entrypoint = dup_checked(entrypoint, &oom);
    o->policy = dup_checked(policy, &oom);
    if (oom)
        WHY("out of memory");
    const char *args_text = member_string(annotations, "io.pkgstore.addon.args");
    const char *env_text = member_string(annotations, "io.pkgstore.addon.env");
    if (args_text) {
        if (parse_args(&o->args, args_text, why, why_len) < 0)
            goto fail;
        o->has_args = 1;
    }
    if (env_text) {
        if (parse_env(&o->env, env_text, why, why_len) < 0)
            goto fail;
        o->has_env = 1;
    }
    if (deps && !json_is_null(deps) && parse_deps(o, deps, why, why_len) < 0)
        goto fail;
    if (parse_signed(o, item) < 0)
        WHY("out of memory");
    return 0;
fail:
    agent_offer_free(o);
    return -1;
}

/* ------------------------------------------------------------------ targets */

void agent_policy_config_free(agent_policy_config *c)
{
    if (!c)
        return;
    agent_strv_free(&c->args);
    agent_kvv_free(&c->env);
    free(c->file);
    memset(c, 0, sizeof *c);
}

int agent_policy_config_copy(agent_policy_config *out, const agent_policy_config *in)
{
    memset(out, 0, sizeof *out);
    snprintf(out->digest, sizeof out->digest, "%s", in->digest);
    out->has_args = in->has_args;
    out->args.items = calloc(in->args.count + 1, sizeof *out->args.items);
    out->env.items = calloc(in->env.count + 1, sizeof *out->env.items);
    int oom = !out->args.items || !out->env.items;
    for (size_t i = 0; !oom && i < in->args.count; i++)
        oom = !(out->args.items[out->args.count++] = strdup(in->args.items[i]));
    for (size_t i = 0; !oom && i < in->env.count; i++) {
        agent_kv *kv = &out->env.items[out->env.count++];
        kv->key = strdup(in->env.items[i].key);
        kv->value = strdup(in->env.items[i].value);
        oom = !kv->key || !kv->value;
    }
    if (!oom && in->file)
        oom = !(out->file = strdup(in->file));
    if (oom) {
        agent_policy_config_free(out);
        return -1;
    }
    return 0;
}

/* "config": {"args":[...],"env":{...},"file":"..."}, as the policy holds it. */
static int config_parse(agent_policy_config *c, json_t *obj, const char *name, char *why,
                        size_t why_len)
{
    const char *key;
    json_t *value;
    size_t i;
    if (!json_is_object(obj))
        WHY("%s: config: not an object", name);
    json_object_foreach(obj, key, value) {
        if (strcmp(key, "args") && strcmp(key, "env") && strcmp(key, "file"))
            WHY("%s: config.%.64s: unknown member", name, key);
    }
    json_t *args = json_object_get(obj, "args"), *env = json_object_get(obj, "env");
    json_t *file = json_object_get(obj, "file");
    if (args) {
        if (!json_is_array(args) || json_array_size(args) > REPLY_ARGS_MAX)
            WHY("%s: config.args: not an array of at most %d strings", name, REPLY_ARGS_MAX);
        if (!(c->args.items = calloc(json_array_size(args) + 1, sizeof *c->args.items)))
            WHY("out of memory");
        c->has_args = 1;
        json_array_foreach(args, i, value) {
            const char *arg = json_string_value(value);
            if (!arg || json_string_length(value) != strlen(arg) || strlen(arg) > REPLY_STRING_MAX)
                WHY("%s: config.args[%zu]: not a string of at most %d bytes", name, i,
                    REPLY_STRING_MAX);
            if (!(c->args.items[c->args.count] = strdup(arg)))
                WHY("out of memory");
            c->args.count++;
        }
    }
    if (env) {
        if (!json_is_object(env) || json_object_size(env) > REPLY_ENV_MAX)
            WHY("%s: config.env: not an object of at most %d strings", name, REPLY_ENV_MAX);
        if (!(c->env.items = calloc(json_object_size(env) + 1, sizeof *c->env.items)))
            WHY("out of memory");
        json_object_foreach(env, key, value) {
            const char *text = json_string_value(value);
            if (!env_name_ok(key) || !strcmp(key, "PKGSTORE_AGENT_CHILD") || !text ||
                json_string_length(value) != strlen(text) || strlen(text) > REPLY_STRING_MAX)
                WHY("%s: config.env: '%.64s': not NAME: string", name, key);
            agent_kv *kv = &c->env.items[c->env.count++];
            kv->key = strdup(key);
            kv->value = strdup(text);
            if (!kv->key || !kv->value)
                WHY("out of memory");
        }
    }
    if (file) {
        const char *body = json_string_value(file);
        if (!body || json_string_length(file) != strlen(body) ||
            strlen(body) > REPLY_CONFIG_FILE_MAX)
            WHY("%s: config.file: not a string of at most %d bytes", name, REPLY_CONFIG_FILE_MAX);
        if (!(c->file = strdup(body)))
            WHY("out of memory");
    }
    return 0;
fail:
    agent_policy_config_free(c);
    return -1;
}

static void target_free(agent_target *t)
{
    agent_policy_config_free(&t->config);
    free(t->name);
    free(t->version);
    free(t->state);
    free(t->reason);
    memset(t, 0, sizeof *t);
}

static int target_parse(agent_target *t, json_t *item, char *why, size_t why_len)
{
    int oom = 0;
    memset(t, 0, sizeof *t);
    if (!json_is_object(item))
        WHY("not an object");
    const char *name = member_string(item, "name"), *type = member_string(item, "type");
    const char *version = member_string(item, "version"), *digest = member_string(item, "digest");
    const char *state = member_string(item, "state"), *reason = member_string(item, "reason");
    json_t *version_json = json_object_get(item, "version");
    if (!agent_valid_name(name))
        WHY("name: missing or invalid");
    if (!type || (strcmp(type, "primary") && strcmp(type, "addon")))
        WHY("%s: type: must be primary or addon", name);
    if ((version_json && !json_is_null(version_json) && !version) || (version && !semver_ok(version)))
        WHY("%s: version: not a SemVer version", name);
    if (json_object_get(item, "digest") && (!digest || pkgstore_digest_validate(digest) < 0))
        WHY("%s: digest: not a sha256 digest", name);
    if (state && (!plain_string(state, 32) || strspn(state, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "abcdefghijklmnopqrstuvwxyz") != strlen(state)))
        WHY("%s: state: not a state name", name);
    if (reason && !plain_string(reason, 1024))
        WHY("%s: reason: not a line of at most 1024 bytes", name);
    const char *config_digest = member_string(item, "config_digest");
    json_t *retry = json_object_get(item, "retry"), *config = json_object_get(item, "config");
    if (json_object_get(item, "config_digest") &&
        (!config_digest || pkgstore_digest_validate(config_digest) < 0))
        WHY("%s: config_digest: not a sha256 digest", name);
    if (retry && !json_is_null(retry) &&
        (!json_is_integer(retry) || json_integer_value(retry) < 0 ||
         json_integer_value(retry) > (json_int_t)UINT32_MAX))
        WHY("%s: retry: not an integer in 0..%u", name, (unsigned)UINT32_MAX);
    if (config && !json_is_null(config)) {
        if (!config_digest)
            WHY("%s: config: without config_digest", name);
        if (config_parse(&t->config, config, name, why, why_len) < 0)
            return -1; /* t holds nothing else yet */
        snprintf(t->config.digest, sizeof t->config.digest, "%s", config_digest);
        t->has_config = 1;
    }
    if (config_digest)
        snprintf(t->config_digest, sizeof t->config_digest, "%s", config_digest);
    t->retry = json_is_integer(retry) ? (uint32_t)json_integer_value(retry) : 0;
    t->is_addon = !strcmp(type, "addon");
    t->name = dup_checked(name, &oom);
    t->version = dup_checked(version, &oom);
    t->state = dup_checked(state, &oom);
    t->reason = dup_checked(reason, &oom);
    if (digest)
        snprintf(t->digest, sizeof t->digest, "%s", digest);
    if (oom)
        WHY("out of memory");
    return 0;
fail:
    target_free(t);
    return -1;
}

/* ------------------------------------------------------------------ replies */

void agent_reply_free(agent_reply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->noffers; i++)
        agent_offer_free(&r->offers[i]);
    free(r->offers);
    for (size_t i = 0; i < r->ntargets; i++)
        target_free(&r->targets[i]);
    free(r->targets);
    memset(r, 0, sizeof *r);
}

static void warnf(agent_reply_warn_fn warn, void *payload, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warnf(agent_reply_warn_fn warn, void *payload, const char *fmt, ...)
{
    if (!warn)
        return;
    char text[REPLY_WHY_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    warn(text, payload);
}

int agent_reply_parse(agent_reply *out, const char *text, size_t len, agent_reply_warn_fn warn,
                      void *payload)
{
    json_error_t jerr;
    memset(out, 0, sizeof *out);
    json_t *root = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return agent_error_set(PKGSTORE_EFORMAT, "response is not a JSON object: %s",
                               root ? "another JSON value" : jerr.text);
    }
    json_t *interval = json_object_get(root, "heartbeat_interval_s");
    out->interval_s = json_is_number(interval) ? json_number_value(interval) : 0;
    json_t *root_version = json_object_get(json_object_get(root, "trust"), "root_version");
    if (json_is_integer(root_version) && json_integer_value(root_version) > 0)
        out->trust_root_version = (uint64_t)json_integer_value(root_version);
    json_t *revocations = json_object_get(json_object_get(root, "trust"), "revocations");
    if (json_is_integer(revocations) && json_integer_value(revocations) > 0)
        out->trust_revocations = (uint64_t)json_integer_value(revocations);

    json_t *offers = json_object_get(root, "offers");
    if (offers && !json_is_array(offers)) {
        warnf(warn, payload, "offers: not an array, ignored");
    } else if (offers) {
        size_t n = json_array_size(offers);
        if (n > REPLY_OFFERS_MAX) {
            warnf(warn, payload, "offers: %zu, only the first %d are read", n, REPLY_OFFERS_MAX);
            n = REPLY_OFFERS_MAX;
        }
        out->offers = calloc(n + 1, sizeof *out->offers);
        if (!out->offers)
            goto oom;
        for (size_t i = 0; i < n; i++) {
            char why[REPLY_WHY_MAX];
            if (agent_offer_parse(&out->offers[out->noffers], json_array_get(offers, i), why,
                                  sizeof why) < 0) {
                warnf(warn, payload, "offers[%zu]: %s", i, why);
                if (!strcmp(why, "out of memory"))
                    goto oom;
                continue;
            }
            out->noffers++;
        }
    }

    json_t *targets = json_object_get(root, "targets");
    if (targets && !json_is_null(targets)) {
        size_t n = json_array_size(targets);
        if (!json_is_array(targets) || n > REPLY_TARGETS_MAX) {
            warnf(warn, payload, "targets: not an array of at most %d, ignored: nothing is removed",
                  REPLY_TARGETS_MAX);
        } else {
            out->targets = calloc(n + 1, sizeof *out->targets);
            if (!out->targets)
                goto oom;
            out->has_targets = 1;
            for (size_t i = 0; i < n; i++) {
                char why[REPLY_WHY_MAX];
                if (target_parse(&out->targets[out->ntargets], json_array_get(targets, i), why,
                                 sizeof why) < 0) {
                    warnf(warn, payload, "targets[%zu]: %s; targets ignored: nothing is removed",
                          i, why);
                    out->has_targets = 0;
                    break;
                }
                out->ntargets++;
            }
        }
    }
    json_decref(root);
    return 0;
oom:
    json_decref(root);
    agent_reply_free(out);
    return agent_error_set(PKGSTORE_ENOMEM, "heartbeat reply: out of memory");
}

int agent_reply_keeps_addon(const agent_reply *r, const char *name)
{
    if (!r->has_targets)
        return 1; /* an older server: it says nothing about what to remove */
    for (size_t i = 0; i < r->noffers; i++)
        if (r->offers[i].is_addon && !strcmp(r->offers[i].name, name))
            return 1;
    for (size_t i = 0; i < r->ntargets; i++)
        if (r->targets[i].is_addon && !strcmp(r->targets[i].name, name))
            return 1;
    return 0;
}

int agent_offer_deps_met(const agent_offer *o, agent_running_fn running, void *payload, char *why,
                         size_t why_len)
{
    for (size_t i = 0; i < o->ndeps; i++) {
        const agent_dependency *dep = &o->deps[i];
        const char *version = running ? running(dep->name, payload) : NULL;
        pkgstore_version_constraint *constraint = NULL;
        pkgstore_semver parsed;
        int met = version && pkgstore_version_parse(&parsed, version) == 0 &&
                  pkgstore_version_constraint_parse(&constraint, dep->constraint) == 0 &&
                  pkgstore_version_constraint_match(constraint, &parsed);
        pkgstore_version_constraint_free(constraint);
        if (!met) {
            if (version)
                snprintf(why, why_len, "requires %.128s %.256s; this node runs %.128s %.128s",
                         dep->name, dep->constraint, dep->name, version);
            else
                snprintf(why, why_len, "requires %.128s %.256s; this node does not run %.128s at a known version",
                         dep->name, dep->constraint, dep->name);
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ helper replies */

int agent_helper_reply_parse(json_t **reply_out, const char *text, size_t len, const char *cmd,
                             const char *how)
{
    json_error_t jerr;
    *reply_out = NULL;
    json_t *reply = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(reply)) {
        json_decref(reply);
        return agent_error_set(PKGSTORE_EIO, "pkgstore-agent-helper %s: no reply (%s)", cmd,
                               how ? how : "?");
    }
    json_t *ok = json_object_get(reply, "ok");
    if (!json_is_true(ok)) {
        json_t *code = json_object_get(reply, "code");
        const char *error = member_string(reply, "error");
        json_int_t value = json_is_integer(code) ? json_integer_value(code) : 0;
        /* only a code the library defines; anything else is an I/O error */
        int rc = value < 0 && value >= PKGSTORE_EINTERNAL ? (int)value : PKGSTORE_EIO;
        char detail[512];
        snprintf(detail, sizeof detail, "%s", error && *error ? error : json_is_false(ok)
                                                                    ? "failed"
                                                                    : "malformed reply");
        for (char *p = detail; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        json_decref(reply);
        return agent_error_set(rc, "%s", detail);
    }
    *reply_out = reply;
    return 0;
}

int agent_helper_reply_size(uint64_t *out, json_t *reply, uint64_t max, const char *cmd)
{
    json_t *size = json_object_get(reply, "size");
    *out = 0;
    if (!json_is_integer(size) || json_integer_value(size) < 0 ||
        (uint64_t)json_integer_value(size) > max)
        return agent_error_set(PKGSTORE_EIO, "%s: malformed reply: size", cmd);
    *out = (uint64_t)json_integer_value(size);
    return 0;
}

int agent_helper_reply_digest(char out[PKGSTORE_DIGEST_STR_SIZE], json_t *reply, const char *key,
                              const char *cmd)
{
    const char *digest = member_string(reply, key);
    out[0] = '\0';
    if (!digest || pkgstore_digest_validate(digest) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: malformed reply: %s", cmd, key);
    snprintf(out, PKGSTORE_DIGEST_STR_SIZE, "%s", digest);
    return 0;
}

int agent_helper_reply_path(char **out, json_t *reply, const char *key, const char *dir,
                            int optional, const char *cmd)
{
    json_t *value = json_object_get(reply, key);
    const char *path = json_is_string(value) ? json_string_value(value) : NULL;
    size_t dlen = dir ? strlen(dir) : 0;
    *out = NULL;
    if (optional && (!value || json_is_null(value)))
        return 0;
    if (!plain_string(path, REPLY_STRING_MAX) || path[0] != '/' || strstr(path, "/../") ||
        (dir && (strncmp(path, dir, dlen) || path[dlen] != '/')))
        return agent_error_set(PKGSTORE_EIO, "%s: malformed reply: %s", cmd, key);
    if (!(*out = strdup(path)))
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    return 0;
}

int agent_helper_reply_http(long *status_out, char **body_out, json_t *reply, const char *cmd)
{
    json_t *status = json_object_get(reply, "status");
    const char *body = member_string(reply, "body");
    *status_out = 0;
    *body_out = NULL;
    if (!json_is_integer(status) || json_integer_value(status) < 100 ||
        json_integer_value(status) > 599 || !body)
        return agent_error_set(PKGSTORE_EIO, "%s: malformed reply: status or body", cmd);
    *status_out = (long)json_integer_value(status);
    if (!(*body_out = strdup(body)))
        return agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    return 0;
}
