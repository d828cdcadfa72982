/*
 * server/api/policies.c - the policy routes:
 *   PUT/GET/DELETE /v1/policies/NAME, GET /v1/policies,
 *   POST /v1/policies/NAME/retry
 *
 * The JSON of a request body is read by policy_body.c; the library
 * validates and stores the policy (pkgstore_policy_put()), and the fleet
 * adds the rollout status.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../server.h"
#include "policy_body.h"

/* 0 when the policy name in the path is valid, else answers 400. */
static int check_policy_name(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    if (pkgstore_policy_name_validate(req->seg[2]) == 0)
        return 0;
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "policy name: %s",
                            pkgstore_error_detail());
    return -1;
}

/* The API form of a policy, without its status. */
static json_t *policy_json(const pkgstore_policy *policy)
{
    char created[32], updated[32];
    fleet_time_format(created, pkgstore_policy_created(policy));
    fleet_time_format(updated, pkgstore_policy_updated(policy));
    char *strategy_text = NULL;
    json_t *strategy = NULL;
    if (pkgstore_rollout_strategy_format(&strategy_text, pkgstore_policy_strategy(policy)) == 0)
        strategy = json_loads(strategy_text, 0, NULL);
    free(strategy_text);
    if (!strategy)
        return NULL;
    json_t *obj = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:o}", "name", pkgstore_policy_name(policy),
        "selector", pkgstore_policy_selector_text(policy), "package",
        pkgstore_policy_package(policy), "version", pkgstore_policy_version(policy), "type",
        pkgstore_package_type_name(pkgstore_policy_type(policy)), "priority",
        pkgstore_policy_priority(policy), "retry",
        (json_int_t)pkgstore_policy_retry_generation(policy), "created", created, "updated",
        updated, "strategy", strategy);
    /* an addon's configuration, and its digest: what agents report applied */
    const char *config = pkgstore_policy_config(policy);
    pkgstore_digest digest;
    if (obj && config && pkgstore_policy_config_digest(&digest, policy) == 0) {
        char digest_text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(digest_text, &digest);
        json_t *parsed = json_loads(config, 0, NULL);
        if (!parsed || json_object_set_new(obj, "config", parsed) < 0 ||
            json_object_set_new(obj, "config_digest", json_string(digest_text)) < 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* An audit entry for an operator's change of a policy. The change is made
 * already: a failure to record it is logged, not answered. */
static void audit(request *req, const char *policy, const char *action, const char *version,
                  const char *why)
{
    fleet_error err;
    if (fleet_audit_append(g_server.fleet, req->token_id[0] ? req->token_id : "token:unknown",
                           policy, action, version, why, &err) < 0)
    {
        char q[300], e[1100];
        log_msg(LOG_ERROR, "audit entry not written", "policy=%s action=%s error=%s",
                log_quote(q, sizeof q, policy), action, log_quote(e, sizeof e, err.message));
    }
}

/* Answer with a fleet error (its status, Retry-After, message). */
enum MHD_Result respond_fleet_error(struct MHD_Connection *conn, request *req,
                                    const fleet_error *err)
{
    if (err->retry_after_s) {
        snprintf(req->extra_header_buf, sizeof req->extra_header_buf, "%u", err->retry_after_s);
        req->extra_header_name = "Retry-After";
        req->extra_header_value = req->extra_header_buf;
    }
    unsigned int status = err->http_status ? err->http_status : http_status_for_error(err->code);
    return respond_error(conn, req, status, err->code, "%s", err->message);
}

/* The stored policy with its rollout status (and a page of its nodes). */
static enum MHD_Result respond_policy(struct MHD_Connection *conn, request *req,
                                      unsigned int status, const pkgstore_policy *policy,
                                      int with_nodes)
{
    fleet_query nodes;
    fleet_error err;
    json_t *rollout = NULL, *obj = policy_json(policy);
    if (!obj)
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "policy: out of memory");
    if (with_nodes && fleet_query_from_request(&nodes, conn, req, 0) < 0) {
        json_decref(obj);
        return MHD_YES; /* answered */
    }
    if (fleet_policy_status(&rollout, g_server.fleet, pkgstore_policy_name(policy),
                            with_nodes ? &nodes : NULL, &err) < 0) {
        json_decref(obj);
        return respond_fleet_error(conn, req, &err);
    }
    json_object_set_new(obj, "status", rollout);
    return respond_json(conn, req, status, obj);
}

enum MHD_Result policy_put(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    pkgstore_policy *policy = NULL, *stored = NULL;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    if (!req->json || req->json_len == 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body: expected a JSON object");
    fleet_error err;
    if (policy_body_parse(&policy, req->seg[2], req->json, req->json_len, &err) < 0) {
        if (!err.http_status && err.code != PKGSTORE_EINVALID)
            return respond_pkgstore_error(conn, req, err.code, NULL);
        return respond_fleet_error(conn, req, &err);
    }
    trust_policy_lock(); /* no upload changes the version from check to write */
    if (trust_require_signatures()) {
        /* a version cannot be targeted until signed to threshold
         * (uploads can only be signed once they exist) */
        char why[2048];
        int refused = trust_check_signed(pkgstore_policy_package(policy),
                                         pkgstore_policy_version(policy), why, sizeof why);
        if (refused < 0) {
            trust_signed_unlock();
            if (refused == PKGSTORE_ECONFLICT)
                metrics_unsigned_refused(UNSIGNED_REFUSED_POLICY);
            pkgstore_policy_free(policy);
            return respond_error(conn, req, http_status_for_error(refused), refused,
                                 "policy %s: %s", req->seg[2], why);
        }
    }
    int error = pkgstore_policy_put(&stored, g_server.registry, policy);
    trust_signed_unlock();
    pkgstore_policy_free(policy);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    /* the entry before the driver hears of the change: it comes before "start" */
    audit(req, pkgstore_policy_name(stored), "policy-put", pkgstore_policy_version(stored),
          pkgstore_policy_selector_text(stored));
    fleet_policies_changed(g_server.fleet);
    char q[300], s[1100];
    log_msg(LOG_INFO, "policy stored", "policy=%s package=%s version=%s selector=%s",
            log_quote(q, sizeof q, req->seg[2]), pkgstore_policy_package(stored),
            pkgstore_policy_version(stored),
            log_quote(s, sizeof s, pkgstore_policy_selector_text(stored)));
    json_t *obj = policy_json(stored);
    pkgstore_policy_free(stored);
    return respond_json(conn, req, MHD_HTTP_OK, obj);
}

enum MHD_Result policy_retry(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    pkgstore_policy *stored = NULL;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    int error = pkgstore_policy_retry(&stored, g_server.registry, req->seg[2]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    audit(req, req->seg[2], "policy-retry", pkgstore_policy_version(stored), "");
    fleet_policies_changed(g_server.fleet);
    char q[300];
    log_msg(LOG_INFO, "policy retry requested", "policy=%s retry=%" PRIu64,
            log_quote(q, sizeof q, req->seg[2]), pkgstore_policy_retry_generation(stored));
    json_t *obj = policy_json(stored);
    pkgstore_policy_free(stored);
    return respond_json(conn, req, MHD_HTTP_OK, obj);
}

enum MHD_Result policy_get(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    pkgstore_policy *policy = NULL;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    int error = pkgstore_policy_get(&policy, g_server.registry, req->seg[2]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    result = respond_policy(conn, req, MHD_HTTP_OK, policy, query_flag(conn, "nodes", 1));
    pkgstore_policy_free(policy);
    return result;
}

enum MHD_Result policies_list(struct MHD_Connection *conn, request *req)
{
    pkgstore_policies *set = NULL;
    json_t *statuses = NULL, *list = NULL;
    fleet_error err;

    if (query_flag(conn, "nodes", 0))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "nodes: a listing of every policy carries counts only; page the "
                             "nodes of one with GET /v1/policies/NAME?nodes=1 or "
                             "GET /v1/agents?policy=NAME");
    int error = pkgstore_policies_load(&set, g_server.registry);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    if (fleet_policies_status(&statuses, g_server.fleet, &err) < 0) {
        pkgstore_policies_free(set);
        return respond_fleet_error(conn, req, &err);
    }
    list = json_array();
    for (size_t i = 0; list && i < pkgstore_policies_count(set); i++) {
        const pkgstore_policy *policy = pkgstore_policies_by_name(set, i, NULL);
        json_t *obj = policy_json(policy);
        json_t *status = json_object_get(statuses, pkgstore_policy_name(policy));
        if (!obj || json_object_set(obj, "status", status ? status : json_null()) < 0 ||
            json_array_append_new(list, obj) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_decref(statuses);
    pkgstore_policies_free(set);
    if (!list)
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "policies: out of memory");
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:o}", "policies", list));
}

enum MHD_Result policy_delete(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    int error = pkgstore_policy_delete(g_server.registry, req->seg[2]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    audit(req, req->seg[2], "policy-delete", NULL, "");
    fleet_policies_changed(g_server.fleet);
    char q[300];
    log_msg(LOG_INFO, "policy deleted", "policy=%s", log_quote(q, sizeof q, req->seg[2]));
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "deleted", req->seg[2]));
}

/* POST /v1/policies/NAME/pause|resume|abort, with an optional body
 * {"revert":true} (abort only). The fleet writes the transition and its
 * audit entry before answering; the answer is the policy with its status. */
enum MHD_Result policy_rollout_action(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    const char *action = req->seg[3];
    int revert = 0;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    if (req->json && req->json_len > 0) {
        json_error_t jerr;
        json_t *body = json_loadb(req->json, req->json_len, JSON_REJECT_DUPLICATES, &jerr);
        const char *key;
        json_t *value;
        if (!body || !json_is_object(body)) {
            json_decref(body);
            return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                 "body: expected a JSON object such as {\"revert\":true}");
        }
        json_object_foreach(body, key, value) {
            if (strcmp(key, "revert") == 0 && json_is_boolean(value) &&
                strcmp(action, "abort") == 0) {
                revert = json_is_true(value);
            } else {
                char quoted[80];
                snprintf(quoted, sizeof quoted, "%.64s", key);
                json_decref(body);
                return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                     "%s: %s", quoted,
                                     strcmp(key, "revert") == 0
                                         ? (strcmp(action, "abort") == 0 ? "not true or false"
                                                                         : "only abort reverts")
                                         : "unknown field");
            }
        }
        json_decref(body);
    }
    fleet_error err;
    const char *who = req->token_id[0] ? req->token_id : "token:unknown";
    if (fleet_rollout_action(g_server.fleet, req->seg[2], action, revert, who, &err) < 0) {
        if (err.code == PKGSTORE_ENOTFOUND || err.code == PKGSTORE_EINVALID)
            err.http_status = err.code == PKGSTORE_ENOTFOUND ? 404 : 400;
        return respond_fleet_error(conn, req, &err);
    }
    pkgstore_policy *policy = NULL;
    int error = pkgstore_policy_get(&policy, g_server.registry, req->seg[2]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    result = respond_policy(conn, req, MHD_HTTP_OK, policy, 0);
    pkgstore_policy_free(policy);
    return result;
}

/* GET /v1/audit[?policy=NAME][&limit=N]: the last N entries (default 100,
 * at most 1000), oldest first. */
enum MHD_Result audit_list(struct MHD_Connection *conn, request *req)
{
    char policy[PKGSTORE_POLICY_NAME_MAX + 2], limit_text[24];
    size_t limit = 100;
    int rc = query_arg(policy, sizeof policy, conn, "policy");
    if (rc < 0 || (rc > 0 && pkgstore_policy_name_validate(policy) < 0))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "policy: not a policy name");
    int has_policy = rc > 0;
    if ((rc = query_arg(limit_text, sizeof limit_text, conn, "limit")) != 0) {
        char *end = NULL;
        unsigned long n = rc > 0 ? strtoul(limit_text, &end, 10) : 0;
        if (rc < 0 || end == limit_text || *end || limit_text[0] == '-' || n == 0 || n > 1000)
            return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                 "limit: not an integer in 1..1000");
        limit = n;
    }
    json_t *out = NULL;
    fleet_error err;
    if (fleet_audit_json(&out, g_server.fleet, has_policy ? policy : NULL, limit, &err) < 0)
        return respond_fleet_error(conn, req, &err);
    return respond_json(conn, req, MHD_HTTP_OK, out);
}
