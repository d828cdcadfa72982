/*
 * server/api/agents.c - the agent routes over the fleet:
 *   POST /v1/agents/heartbeat, GET /v1/agents, GET /v1/agents/ID
 * and the per-policy node gauges of /metrics.
 */
#include <ctype.h>
#include <string.h>

#include "../server.h"

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
