/*
 * Addon configurations carried by policies: the check of the JSON object
 * {"args","env","file"}, its canonical text (what records, the API and the
 * heartbeat reply hold) and the SHA-256 of that text, the identity an agent
 * reports for the configuration it applied.
 *
 * The bounds keep a heartbeat reply, which carries the body to the nodes
 * that do not run it yet, and an agent's journal small.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "policy.h"

/* [A-Za-z_][A-Za-z0-9_]*, as a shell (and the agent's YAML) takes it. */
static int env_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > PKGSTORE_ADDON_CONFIG_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    }
    return 1;
}

/* A string without NUL of at most max bytes; what names it goes in the
 * detail. */
static int string_ok(json_t *value, size_t max, const char *what, const char *index)
{
    if (!json_is_string(value))
        return ps_error_set(PKGSTORE_EINVALID, "config.%s%s: not a string", what, index);
    size_t len = json_string_length(value);
    if (len != strlen(json_string_value(value)))
        return ps_error_set(PKGSTORE_EINVALID, "config.%s%s: holds a NUL byte", what, index);
    if (len > max)
        return ps_error_set(PKGSTORE_EINVALID, "config.%s%s: %zu bytes, more than %zu", what, index,
                            len, max);
    return 0;
}

static int check_args(json_t *args)
{
    char index[32];
    size_t i;
    json_t *value;
    int error;
    if (!json_is_array(args))
        return ps_error_set(PKGSTORE_EINVALID, "config.args: not an array of strings");
    if (json_array_size(args) > PKGSTORE_ADDON_CONFIG_ARGS_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "config.args: %zu arguments, more than %d",
                            json_array_size(args), PKGSTORE_ADDON_CONFIG_ARGS_MAX);
    json_array_foreach(args, i, value)
    {
        snprintf(index, sizeof(index), "[%zu]", i);
        if ((error = string_ok(value, PKGSTORE_ADDON_CONFIG_STRING_MAX, "args", index)) < 0)
            return error;
    }
    return 0;
}

static int check_env(json_t *env)
{
    const char *name;
    json_t *value;
    int error;
    if (!json_is_object(env))
        return ps_error_set(PKGSTORE_EINVALID, "config.env: not an object of strings");
    if (json_object_size(env) > PKGSTORE_ADDON_CONFIG_ENV_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "config.env: %zu variables, more than %d",
                            json_object_size(env), PKGSTORE_ADDON_CONFIG_ENV_MAX);
    json_object_foreach(env, name, value)
    {
        if (!env_name_ok(name))
            return ps_error_set(PKGSTORE_EINVALID,
                                "config.env.%.64s: not a variable name ([A-Za-z_][A-Za-z0-9_]*, "
                                "at most %d bytes)",
                                name, PKGSTORE_ADDON_CONFIG_NAME_MAX);
        if (strcmp(name, "PKGSTORE_AGENT_CHILD") == 0)
            return ps_error_set(PKGSTORE_EINVALID,
                                "config.env.%s: reserved (the agent marks its children with it)",
                                name);
        char index[PKGSTORE_ADDON_CONFIG_NAME_MAX + 2];
        snprintf(index, sizeof(index), ".%s", name);
        if ((error = string_ok(value, PKGSTORE_ADDON_CONFIG_STRING_MAX, "env", index)) < 0)
            return error;
    }
    return 0;
}

int ps_policy_config_from_json(char **canonical, pkgstore_digest *digest, json_t *obj)
{
    const char *key;
    json_t *value;
    int error;

    *canonical = NULL;
    memset(digest, 0, sizeof(*digest));
    if (!json_is_object(obj))
        return ps_error_set(PKGSTORE_EINVALID, "config: not a JSON object");
    json_object_foreach(obj, key, value)
    {
        if (strcmp(key, "args") == 0)
            error = check_args(value);
        else if (strcmp(key, "env") == 0)
            error = check_env(value);
        else if (strcmp(key, "file") == 0)
            error = string_ok(value, PKGSTORE_ADDON_CONFIG_FILE_MAX, "file", "");
        else
            error =
                ps_error_set(PKGSTORE_EINVALID,
                             "config.%.64s: unknown member (args, env and file are known)", key);
        if (error < 0)
            return error;
    }
    if (json_object_size(obj) == 0)
        return 0; /* {} is no configuration */
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return ps_error_set(PKGSTORE_ENOMEM, "config: out of memory");
    if ((error = pkgstore_digest_buffer(digest, text, strlen(text))) < 0) {
        free(text);
        return error;
    }
    *canonical = text;
    return 0;
}

int pkgstore_policy_set_config(pkgstore_policy *policy, const char *json, size_t len)
{
    json_error_t jerr;
    json_t *root = NULL;
    char *canonical = NULL;
    pkgstore_digest digest;
    int error;

    if (!policy || policy->stored)
        return ps_error_set(PKGSTORE_EINVALID, "policy_set_config: %s",
                            policy ? "the policy is read-only" : "NULL policy");
    if (json) {
        if (!(root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr)))
            return ps_error_set(PKGSTORE_EINVALID, "config: line %d column %d: %s", jerr.line,
                                jerr.column, jerr.text);
        if (!json_is_null(root)) {
            error = ps_policy_config_from_json(&canonical, &digest, root);
            if (error < 0) {
                json_decref(root);
                return error;
            }
        }
        json_decref(root);
    }
    if (canonical && policy->type_given && policy->type == PKGSTORE_TYPE_PRIMARY) {
        free(canonical);
        return ps_error_set(PKGSTORE_EINVALID,
                            "config: policy %s is for a primary package; only addons take a "
                            "configuration from a policy (the collector's is the node's "
                            "collector.config)",
                            policy->name);
    }
    free(policy->config);
    policy->config = canonical;
    policy->config_digest = canonical ? digest : (pkgstore_digest){{0}};
    return 0;
}

const char *pkgstore_policy_config(const pkgstore_policy *policy)
{
    return policy ? policy->config : NULL;
}

int pkgstore_policy_config_digest(pkgstore_digest *out, const pkgstore_policy *policy)
{
    if (!out || !policy)
        return ps_error_set(PKGSTORE_EINVALID, "policy_config_digest: NULL argument");
    if (!policy->config) {
        memset(out, 0, sizeof(*out));
        return ps_error_set(PKGSTORE_ENOTFOUND, "policy %s has no addon configuration",
                            policy->name);
    }
    *out = policy->config_digest;
    return 0;
}
