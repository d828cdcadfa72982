/*
 * server/api/policies.c - the policy routes:
 *   PUT/GET/DELETE /v1/policies/NAME, GET /v1/policies
 */
#include <string.h>

#include "../server.h"

/* 0 when the policy name in the path is valid, else answers 400. */
static int check_policy_name(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    if (pkgstore_policy_name_validate(req->seg[2]) == 0)
        return 0;
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "policy name: %s",
                            pkgstore_error_detail());
    return -1;
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

