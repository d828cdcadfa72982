/*
 * server/policies.c - policies, heartbeats and the fleet view over the
 * library's policy module:
 *   PUT/GET/DELETE /v1/policies/NAME, GET /v1/policies,
 *   POST /v1/policies/NAME/retry
 *   POST /v1/agents/heartbeat, GET /v1/agents, GET /v1/agents/ID
 * The library parses and validates the JSON, computes the offers and keeps
 * the nodes; this file only moves text between HTTP and it.
 */
#include <ctype.h>
#include <string.h>

#include "server.h"

/* Answer with JSON text the library allocated (freed by MHD when sent). */
static enum MHD_Result respond_library_json(struct MHD_Connection *conn, request *req,
                                            unsigned int status, char *text)
{
    size_t len = strlen(text);
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(len, text, pkgstore_free);
    if (!response) {
        pkgstore_free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    req->response_bytes = len;
    return queue_response(conn, req, status, response);
}

/* 0 when the policy name in the path is valid, else answers 400. */
static int check_policy_name(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    if (pkgstore_policy_name_validate(req->seg[2]) == 0)
        return 0;
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "policy name: %s",
                            pkgstore_error_detail());
    return -1;
}

/* Node ids: [A-Za-z0-9][A-Za-z0-9._:-]{0,252} (as the policy module). */
static int check_node_id(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    const char *id = req->seg[2];
    size_t len = strlen(id);
    int valid = len >= 1 && len <= PKGSTORE_NODE_ID_MAX && isalnum((unsigned char)id[0]);
    for (size_t i = 1; valid && i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        valid = isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
    }
    if (valid)
        return 0;
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                            "node id: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,252}");
    return -1;
}

/* ?name=1|true|0|false; def when absent or unreadable. */
static int query_flag(struct MHD_Connection *conn, const char *key, int def)
{
    char value[8];
    if (query_arg(value, sizeof value, conn, key) <= 0)
        return def;
    if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
        return 1;
    if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
        return 0;
    return def;
}

enum MHD_Result policy_put(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    if (!req->json || req->json_len == 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body: expected a JSON object");
    char *text = NULL;
    pthread_mutex_lock(&g_server.catalog_lock);
    int error = pkgstore_policy_put_json(&text, g_server.policies, req->seg[2], req->json,
                                         req->json_len);
    pthread_mutex_unlock(&g_server.catalog_lock);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    char q[300];
    log_msg(LOG_INFO, "policy stored", "policy=%s", log_quote(q, sizeof q, req->seg[2]));
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result policy_get(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    char *text = NULL;
    int error = pkgstore_policy_get_json(&text, g_server.policies, req->seg[2],
                                         query_flag(conn, "nodes", 1));
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result policies_list(struct MHD_Connection *conn, request *req)
{
    char *text = NULL;
    int error = pkgstore_policy_list_json(&text, g_server.policies, query_flag(conn, "nodes", 0));
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result policy_delete(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    pthread_mutex_lock(&g_server.catalog_lock);
    int error = pkgstore_policy_delete(g_server.policies, req->seg[2]);
    pthread_mutex_unlock(&g_server.catalog_lock);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    char q[300];
    log_msg(LOG_INFO, "policy deleted", "policy=%s", log_quote(q, sizeof q, req->seg[2]));
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "deleted", req->seg[2]));
}

enum MHD_Result policy_retry(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_policy_name(conn, req, &result) < 0)
        return result;
    pkgstore_policy stored;
    pthread_mutex_lock(&g_server.catalog_lock);
    int error = pkgstore_policy_retry(&stored, g_server.policies, req->seg[2]);
    pthread_mutex_unlock(&g_server.catalog_lock);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    char q[300];
    log_msg(LOG_INFO, "policy retry", "policy=%s retry=%u", log_quote(q, sizeof q, req->seg[2]),
            (unsigned int)stored.retry);
    char *text = NULL;
    if ((error = pkgstore_policy_get_json(&text, g_server.policies, req->seg[2], 0)) < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result agent_heartbeat(struct MHD_Connection *conn, request *req)
{
    if (!req->json || req->json_len == 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body: expected a JSON object");
    char *text = NULL;
    int error = pkgstore_policy_heartbeat(&text, g_server.policies, req->json, req->json_len);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, "heartbeat");
    metrics_heartbeat();
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result agents_list(struct MHD_Connection *conn, request *req)
{
    char *text = NULL;
    int error = pkgstore_policy_node_list_json(&text, g_server.policies,
                                               query_flag(conn, "history", 0));
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

enum MHD_Result agent_get(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (check_node_id(conn, req, &result) < 0)
        return result;
    char *text = NULL;
    int error = pkgstore_policy_node_get_json(&text, g_server.policies, req->seg[2]);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, NULL);
    return respond_library_json(conn, req, MHD_HTTP_OK, text);
}

typedef struct node_emit {
    void (*emit)(void *ctx, const char *policy, const char *status, uint64_t count);
    void *ctx;
} node_emit;

static int emit_count(const char *policy, pkgstore_rollout_state state, uint64_t count,
                      void *payload)
{
    node_emit *emit = payload;
    const char *name = pkgstore_rollout_state_name(state);
    if (name)
        emit->emit(emit->ctx, policy, name, count);
    return 0;
}

void metrics_render_nodes(pkgstore_store *store,
                          void (*emit)(void *ctx, const char *policy, const char *status,
                                       uint64_t count),
                          void *ctx)
{
    (void)store;
    node_emit payload = {emit, ctx};
    if (g_server.policies)
        pkgstore_policy_count_foreach(g_server.policies, emit_count, &payload);
}
