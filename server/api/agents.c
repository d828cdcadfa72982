/*
 * server/api/agents.c - the agent routes over the fleet:
 *   POST   /v1/agents/heartbeat
 *   GET    /v1/agents?limit=&after=&selector=&policy=&state=&package=&version=&status=
 *                     &trust=&history=
 *   GET    /v1/agents/ID
 *   DELETE /v1/agents/ID
 * and the per-policy node gauges of /metrics.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../server.h"

/* Node ids: [A-Za-z0-9][A-Za-z0-9._:-]{0,252} (as the fleet's parser). */
static int check_node_id(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    const char *id = req->seg[2];
    size_t len = strlen(id);
    int valid = len >= 1 && len <= 253 && isalnum((unsigned char)id[0]);
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

/* Answer with text the fleet allocated with malloc(). */
static enum MHD_Result respond_text(struct MHD_Connection *conn, request *req, char *text,
                                    size_t len)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    req->response_bytes = len;
    return queue_body_response(conn, req, MHD_HTTP_OK, response, text, len);
}

/* The query arguments of a node listing into *q; the strings live in the
 * request. -1 when one is malformed (answered with 400). */
int fleet_query_from_request(fleet_query *q, struct MHD_Connection *conn, request *req,
                             int with_filters)
{
    static const char *const filters[] = {"selector", "policy",  "state",
                                          "package",  "version", "status"};
    const char **slots[] = {&q->selector, &q->policy,  &q->state,
                            &q->package,  &q->version, &q->status};
    char limit[24];
    int rc;

    memset(q, 0, sizeof(*q));
    if ((rc = query_arg(req->query_after, sizeof req->query_after, conn, "after")) < 0)
        goto bad_after;
    if (rc > 0)
        q->after = req->query_after;
    if ((rc = query_arg(limit, sizeof limit, conn, "limit")) < 0)
        goto bad_limit;
    if (rc > 0) {
        char *end = NULL;
        errno = 0;
        unsigned long n = strtoul(limit, &end, 10);
        if (errno || end == limit || *end || limit[0] == '-' || n == 0 || n > FLEET_PAGE_MAX)
            goto bad_limit;
        q->limit = n;
    }
    q->with_history = query_flag(conn, "history", 0);
    for (size_t i = 0; with_filters && i < sizeof filters / sizeof *filters; i++) {
        char *buf = req->query_filters[i];
        if ((rc = query_arg(buf, sizeof req->query_filters[i], conn, filters[i])) < 0) {
            respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                          "%s: malformed or longer than %zu bytes", filters[i],
                          sizeof req->query_filters[i] - 1);
            return -1;
        }
        if (rc > 0)
            *slots[i] = buf;
    }
    return 0;
bad_after:
    respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                  "after: malformed or longer than a node id");
    return -1;
bad_limit:
    respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                  "limit: must be 1..%d", FLEET_PAGE_MAX);
    return -1;
}

/* The fleet knows nothing of roots: tell it the server's newest root and
 * revocation generation before a view says which nodes are behind. */
static void fleet_trust_sync(void)
{
    uint64_t root_version, generation;
    trust_summary(&root_version, &generation);
    fleet_trust_server(g_server.fleet, root_version, generation);
}

/* The token behind a request, as a number that names it without keeping
 * it (the fleet's per-credential rate). */
static uint64_t credential_of(const request *req)
{
    return req->credential;
}

enum MHD_Result agent_heartbeat(struct MHD_Connection *conn, request *req)
{
    fleet_error err;
    char *text = NULL;
    size_t len = 0;
    if (!req->json || req->json_len == 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body: expected a JSON object");
    fleet_identity who;
    if (req->node)
        credentials_identity(&who, req->node);
    if (fleet_heartbeat(&text, &len, g_server.fleet, req->json, req->json_len,
                        credential_of(req), req->node ? &who : NULL, &err) < 0) {
        if (err.code == PKGSTORE_EDENIED && req->node) {
            char q[600];
            metrics_node_mismatch();
            log_msg(LOG_WARN, "heartbeat: credential spoke for another node",
                    "credential=%s detail=%s", credentials_id(req->node),
                    log_quote(q, sizeof q, err.message));
        } else if (err.code != PKGSTORE_EINVALID) {
            char q[600];
            log_msg(err.http_status == 429 || err.http_status == 503 ? LOG_WARN : LOG_ERROR,
                    "heartbeat refused", "detail=%s", log_quote(q, sizeof q, err.message));
        }
        fleet_error prefixed = err; /* "heartbeat: body: ..." */
        snprintf(prefixed.message, sizeof prefixed.message, "heartbeat: %.500s", err.message);
        return respond_fleet_error(conn, req, &prefixed);
    }
    metrics_heartbeat();
    /* "trust" goes last, spliced in here: the fleet knows nothing of roots
     * and revocations, and its reply text is an object ending in '}' */
    uint64_t root_version, generation;
    trust_summary(&root_version, &generation);
    char trust[96];
    int trust_len = root_version
                        ? snprintf(trust, sizeof trust,
                                   ",\"trust\":{\"revocations\":%" PRIu64 ",\"root_version\":%" PRIu64
                                   "}}",
                                   generation, root_version)
                        : snprintf(trust, sizeof trust,
                                   ",\"trust\":{\"revocations\":%" PRIu64 ",\"root_version\":null}}",
                                   generation);
    char *spliced = len > 0 && text[len - 1] == '}' ? realloc(text, len + (size_t)trust_len) : NULL;
    if (!spliced) {
        free(text);
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "heartbeat: out of memory");
    }
    memcpy(spliced + len - 1, trust, (size_t)trust_len + 1);
    return respond_text(conn, req, spliced, len - 1 + (size_t)trust_len);
}

enum MHD_Result agents_list(struct MHD_Connection *conn, request *req)
{
    fleet_query q;
    fleet_error err;
    char *text = NULL;
    size_t len = 0;
    if (fleet_query_from_request(&q, conn, req, 1) < 0)
        return MHD_YES; /* answered */
    char trust[16];
    int rc = query_arg(trust, sizeof trust, conn, "trust");
    if (rc < 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "trust: must be behind, current or none");
    if (rc > 0)
        q.trust = trust;
    fleet_trust_sync();
    if (fleet_node_page(&text, &len, g_server.fleet, &q, &err) < 0)
        return respond_fleet_error(conn, req, &err);
    return respond_text(conn, req, text, len);
}

enum MHD_Result agent_get(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    fleet_error err;
    char *text = NULL;
    size_t len = 0;
    if (check_node_id(conn, req, &result) < 0)
        return result;
    fleet_trust_sync();
    if (fleet_node_json(&text, &len, g_server.fleet, req->seg[2], &err) < 0)
        return respond_fleet_error(conn, req, &err);
    return respond_text(conn, req, text, len);
}

enum MHD_Result agent_delete(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    fleet_error err;
    if (check_node_id(conn, req, &result) < 0)
        return result;
    if (fleet_node_delete(g_server.fleet, req->seg[2], &err) < 0)
        return respond_fleet_error(conn, req, &err);
    char q[300];
    log_msg(LOG_INFO, "node forgotten", "node=%s", log_quote(q, sizeof q, req->seg[2]));
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "deleted", req->seg[2]));
}

void metrics_render_nodes(void (*emit)(void *ctx, const char *policy, const char *status,
                                       uint64_t count),
                          void *ctx)
{
    fleet_error err;
    if (g_server.fleet && fleet_count_foreach(g_server.fleet, emit, ctx, &err) < 0) {
        char q[600];
        log_msg(LOG_WARN, "metrics: no node gauges", "detail=%s",
                log_quote(q, sizeof q, err.message));
    }
}

int metrics_trust_stats(fleet_trust_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!g_server.fleet)
        return -1;
    fleet_trust_sync();
    fleet_trust_stats_get(g_server.fleet, out);
    return 0;
}
