/*
 * server/api/policy_body.c - the JSON body of PUT /v1/policies/NAME into a
 * pkgstore_policy. No libmicrohttpd here, so fuzz/fuzz_policy_body.c can
 * reach it.
 *
 *   {"selector":"env=dev","package":"otelcol-contrib","version":"0.98.0",
 *    "type":"primary","priority":10,
 *    "strategy":{"batches":[1,"5%","100%"],"soak_s":600,"max_failures":"10%"},
 *    "config":{"args":["--config","{config_file}"],"env":{"K":"V"},"file":"..."}}
 *
 * selector defaults to "" (every node), type to the package's own, priority
 * to 0; unknown fields are refused; the read-only fields of a GET (name,
 * created, updated, retry, status) are accepted so that a GET can be PUT
 * back (and "config_digest", which the server computes). The library checks
 * the values (pkgstore_policy_new() and setters).
 */
#include <stdlib.h>
#include <string.h>

#include "policy_body.h"

/* A string member: 0, or a failure naming the key. */
static int body_string(const char **out, json_t *value, const char *key, size_t max,
                       int too_long_code, fleet_error *err)
{
    *out = json_string_value(value);
    if (!*out)
        return fl_body_fail(err, PKGSTORE_EINVALID, 0, "%s: not a string", key);
    if (strlen(*out) > max) {
        if (too_long_code == PKGSTORE_ELIMIT)
            return fl_body_fail(err, PKGSTORE_ELIMIT, 413, "%s: longer than %zu bytes", key, max);
        return fl_body_fail(err, PKGSTORE_EINVALID, 0, "%s: too long", key);
    }
    return 0;
}

int fl_body_fail(fleet_error *err, int code, unsigned int status, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->http_status = status;
    err->retry_after_s = 0;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

int policy_body_parse(pkgstore_policy **out, const char *name, const char *body, size_t len,
                      fleet_error *err)
{
    const char *selector = "", *package = NULL, *version = NULL, *type = NULL, *key;
    json_t *priority = NULL, *strategy = NULL, *config = NULL, *value, *root;
    json_error_t jerr;
    pkgstore_policy *policy = NULL;
    pkgstore_package_type parsed_type = PKGSTORE_TYPE_PRIMARY;
    int error = 0;

    *out = NULL;
    if (!body || len == 0)
        return fl_body_fail(err, PKGSTORE_EINVALID, 0, "body: expected a JSON object");
    if (!(root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)))
        return fl_body_fail(err, PKGSTORE_EINVALID, 0, "body: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!json_is_object(root)) {
        error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "body: not a JSON object");
        goto out;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "selector") == 0)
            error = body_string(&selector, value, key, PKGSTORE_SELECTOR_MAX, PKGSTORE_ELIMIT, err);
        else if (strcmp(key, "package") == 0)
            error = body_string(&package, value, key, PKGSTORE_NAME_MAX, 0, err);
        else if (strcmp(key, "version") == 0)
            error = body_string(&version, value, key, PKGSTORE_VERSION_MAX, 0, err);
        else if (strcmp(key, "type") == 0)
            error = body_string(&type, value, key, 16, 0, err);
        else if (strcmp(key, "priority") == 0) {
            if (!json_is_integer(value))
                error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "priority: not an integer");
            priority = value;
        } else if (strcmp(key, "strategy") == 0) {
            if (!json_is_object(value) && !json_is_null(value))
                error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "strategy: not an object");
            strategy = json_is_null(value) ? NULL : value;
        } else if (strcmp(key, "config") == 0) {
            if (!json_is_object(value) && !json_is_null(value))
                error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "config: not an object");
            config = json_is_null(value) ? NULL : value;
        } else if (strcmp(key, "name") == 0) {
            if (!json_is_string(value) || strcmp(json_string_value(value), name) != 0)
                error = fl_body_fail(err, PKGSTORE_EINVALID, 0,
                                     "name: does not match the policy name in the path");
        } else if (strcmp(key, "created") != 0 && strcmp(key, "updated") != 0 &&
                   strcmp(key, "status") != 0 && strcmp(key, "retry") != 0 &&
                   strcmp(key, "config_digest") != 0) {
            /* a key may hold any UTF-8: quote at most 64 bytes of it */
            error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "%.64s: unknown field", key);
        }
        if (error < 0)
            goto out;
    }
    if (!package || !version) {
        error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "%s: missing",
                             package ? "version" : "package");
        goto out;
    }
    if (type && pkgstore_package_type_parse(&parsed_type, type) < 0) {
        error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "type: must be primary or addon");
        goto out;
    }
    json_int_t prio = priority ? json_integer_value(priority) : 0;
    if (prio < PKGSTORE_POLICY_PRIORITY_MIN || prio > PKGSTORE_POLICY_PRIORITY_MAX) {
        error = fl_body_fail(err, PKGSTORE_EINVALID, 0, "priority: %lld is outside %d..%d",
                             (long long)prio, PKGSTORE_POLICY_PRIORITY_MIN,
                             PKGSTORE_POLICY_PRIORITY_MAX);
        goto out;
    }
    if ((error = pkgstore_policy_new(&policy, name, package, version)) < 0 ||
        (error = pkgstore_policy_set_selector(policy, selector)) < 0 ||
        (error = pkgstore_policy_set_priority(policy, (int)prio)) < 0 ||
        (type && (error = pkgstore_policy_set_type(policy, parsed_type)) < 0)) {
        const char *detail = pkgstore_error_detail();
        fl_body_fail(err, error, error == PKGSTORE_ELIMIT ? 413 : 0, "%s",
                     *detail ? detail : pkgstore_strerror(error));
        goto out;
    }
    if (strategy) {
        pkgstore_rollout_strategy parsed;
        char *text = json_dumps(strategy, JSON_COMPACT);
        error = text ? pkgstore_rollout_strategy_parse(&parsed, text, strlen(text))
                     : PKGSTORE_ENOMEM;
        free(text);
        if (error == 0)
            error = pkgstore_policy_set_strategy(policy, &parsed);
        if (error < 0) {
            const char *detail = pkgstore_error_detail();
            fl_body_fail(err, error, 0, "strategy: %s",
                         *detail ? detail : pkgstore_strerror(error));
            goto out;
        }
    }
    if (config) {
        char *text = json_dumps(config, JSON_COMPACT);
        error = text ? pkgstore_policy_set_config(policy, text, strlen(text)) : PKGSTORE_ENOMEM;
        free(text);
        if (error < 0) {
            const char *detail = pkgstore_error_detail();
            fl_body_fail(err, error, 0, "%s", *detail ? detail : pkgstore_strerror(error));
            goto out;
        }
    }
    *out = policy;
    policy = NULL; /* now owned by the caller */
out:
    pkgstore_policy_free(policy);
    json_decref(root);
    return error;
}
