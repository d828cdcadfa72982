/*
 * server/api/credentials.c - per-node credentials over the admin API:
 *   GET    /v1/credentials        every credential (never a token or hash)
 *   POST   /v1/credentials        issue one: {"node","labels","self_labels"};
 *                                 the answer holds the token, once
 *   DELETE /v1/credentials/{id}   revoke (id: 4 or more of its hex digits)
 * The set and its file are server/credentials.c's.
 */
#include <string.h>

#include "../server.h"

enum MHD_Result credentials_get(struct MHD_Connection *conn, request *req)
{
    json_t *list = credentials_list();
    if (!list)
        return respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_ENOMEM,
                             "out of memory");
    return respond_json(conn, req, MHD_HTTP_OK, list);
}

enum MHD_Result credential_issue(struct MHD_Connection *conn, request *req)
{
    json_error_t jerr;
    json_t *root = NULL, *record = NULL;
    char token[128], err[512];
    const char *key;
    json_t *value;
    enum MHD_Result result;

    if (!req->json || !(root = json_loadb(req->json, req->json_len, JSON_REJECT_DUPLICATES, &jerr)))
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body: %s", req->json ? jerr.text : "expected a JSON object");
    if (!json_is_object(root)) {
        result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                               "body: not a JSON object");
        goto out;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "node") != 0 && strcmp(key, "labels") != 0 &&
            strcmp(key, "self_labels") != 0) {
            result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                   "body: unknown member '%.64s' (node, labels, self_labels)",
                                   key);
            goto out;
        }
    }
    const char *node = json_string_value(json_object_get(root, "node"));
    if (!node) {
        result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                               "node: missing or not a string");
        goto out;
    }
    int error = credentials_issue(&record, token, sizeof token, node,
                                  json_object_get(root, "labels"),
                                  json_object_get(root, "self_labels"), err, sizeof err);
    if (error < 0) {
        result = respond_error(conn, req, http_status_for_error(error), error, "%s", err);
        goto out;
    }
    char q[300];
    log_msg(LOG_INFO, "credential issued", "node=%s credential=%s",
            log_quote(q, sizeof q, node), json_string_value(json_object_get(record, "id")));
    json_object_set_new(record, "token", json_string(token));
    explicit_bzero(token, sizeof token);
    result = respond_json(conn, req, MHD_HTTP_CREATED, record);
out:
    json_decref(root);
    return result;
}

enum MHD_Result credential_revoke(struct MHD_Connection *conn, request *req)
{
    json_t *record = NULL;
    char err[512];
    int error = credentials_revoke(&record, req->seg[2], err, sizeof err);
    if (error < 0)
        return respond_error(conn, req, http_status_for_error(error), error, "%s", err);
    char q[300];
    log_msg(LOG_INFO, "credential revoked", "node=%s credential=%s",
            log_quote(q, sizeof q, json_string_value(json_object_get(record, "node"))),
            json_string_value(json_object_get(record, "id")));
    json_object_set_new(record, "revoked", json_true());
    return respond_json(conn, req, MHD_HTTP_OK, record);
}
