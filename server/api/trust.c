/*
 * server/api/trust.c - the trust routes (docs/api.md, "Trust"):
 *   GET  /v1/trust/root, /v1/trust/root/VERSION    (admin, agent, node)
 *   PUT  /v1/trust/root                            (admin)
 *   GET  /v1/trust/revocations                     (admin, agent, node)
 *   PUT  /v1/trust/revocations                     (admin)
 *   GET  /v1/packages/NAME/VERSION/signatures      (admin)
 *   PUT  /v1/packages/NAME/VERSION/signatures      (admin)
 *
 * Bodies are checked by the library's strict parsers; the server keeps
 * what passes (server/trust.c for roots and revocations, the store's
 * signature records for envelopes) and never signs anything.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../server.h"

static enum MHD_Result respond_trust_error(struct MHD_Connection *conn, request *req, int error,
                                           const char *message)
{
    return respond_error(conn, req, http_status_for_error(error), error, "%s", message);
}

static int body_present(struct MHD_Connection *conn, request *req, const char *what,
                        enum MHD_Result *result)
{
    if (req->json && req->json_len > 0)
        return 0;
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                            "body: expected %s", what);
    return -1;
}

enum MHD_Result trust_root_get_route(struct MHD_Connection *conn, request *req)
{
    uint64_t version = 0;
    if (req->nseg == 4) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(req->seg[3], &end, 10);
        if (errno || end == req->seg[3] || *end || req->seg[3][0] == '0' || v == 0)
            return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                 "root version: expected a positive integer, not '%s'",
                                 req->seg[3]);
        version = v;
    }
    char *text = NULL;
    size_t len = 0;
    int error = trust_root_get(&text, &len, version);
    if (error == PKGSTORE_ENOTFOUND)
        return version ? respond_error(conn, req, MHD_HTTP_NOT_FOUND, error,
                                       "root.json version %" PRIu64 ": not held", version)
                       : respond_error(conn, req, MHD_HTTP_NOT_FOUND, error,
                                       "no root.json yet (PUT /v1/trust/root)");
    if (error < 0)
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, error, "out of memory");
    struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback(len, text,
                                                                                        free);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    req->response_bytes = len;
    return queue_response(conn, req, MHD_HTTP_OK, response);
}

enum MHD_Result trust_root_put_route(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (body_present(conn, req, "a signed root.json", &result) < 0) {
        metrics_trust_refused(TRUST_DOC_ROOT, TRUST_REFUSED_MALFORMED);
        return result;
    }
    char err[2048];
    uint64_t version = 0;
    int untrusted = 0;
    int error = trust_root_put(&version, &untrusted, req->json, req->json_len, err, sizeof err);
    if (error < 0) {
        metrics_trust_refused(TRUST_DOC_ROOT,
                              untrusted ? TRUST_REFUSED_UNTRUSTED : trust_refusal_of(error));
        return respond_trust_error(conn, req, error, err);
    }
    log_msg(LOG_INFO, "root of trust added", "version=%" PRIu64, version);
    return respond_json(conn, req, MHD_HTTP_CREATED,
                        json_pack("{s:I}", "version", (json_int_t)version));
}

enum MHD_Result trust_revocations_get_route(struct MHD_Connection *conn, request *req)
{
    json_t *body = trust_revocations_json();
    if (!body)
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "revocations: out of memory");
    return respond_json(conn, req, MHD_HTTP_OK, body);
}

enum MHD_Result trust_revocation_put_route(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (body_present(conn, req, "a signed revocation", &result) < 0) {
        metrics_trust_refused(TRUST_DOC_REVOCATION, TRUST_REFUSED_MALFORMED);
        return result;
    }
    char err[2048];
    json_t *record = NULL;
    int changed = 0;
    int error = trust_revocation_put(&record, &changed, req->json, req->json_len, err, sizeof err);
    if (error < 0) {
        metrics_trust_refused(TRUST_DOC_REVOCATION, trust_refusal_of(error));
        return respond_trust_error(conn, req, error, err);
    }
    if (!record)
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "revocation: out of memory");
    char q[300];
    log_msg(LOG_WARN, changed ? "release revoked" : "revocation already held",
            "name=%s version=%s generation=%" PRIu64,
            json_string_value(json_object_get(record, "name")),
            log_quote(q, sizeof q, json_string_value(json_object_get(record, "version"))),
            (uint64_t)json_integer_value(json_object_get(record, "generation")));
    return respond_json(conn, req, changed ? MHD_HTTP_CREATED : MHD_HTTP_OK, record);
}

/* ---------------------------------------------------------------- signatures */

enum MHD_Result package_signature_put(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    if (package_path_check(conn, req, 1, &result) < 0 ||
        body_present(conn, req, "a signature envelope", &result) < 0) {
        metrics_trust_refused(TRUST_DOC_SIGNATURE, TRUST_REFUSED_MALFORMED);
        return result;
    }
    pkgstore_digest envelope_digest;
    int error = pkgstore_trust_signature_add(&envelope_digest, g_server.store, req->seg[2],
                                             req->seg[3], req->json, req->json_len);
    if (error < 0) {
        metrics_trust_refused(TRUST_DOC_SIGNATURE, trust_refusal_of(error));
        return respond_pkgstore_error(conn, req, error, "signature");
    }
    pkgstore_trust_envelope *env = NULL;
    if (pkgstore_trust_envelope_parse(&env, req->json, req->json_len) < 0)
        return respond_pkgstore_error(conn, req, PKGSTORE_EINTERNAL, "signature");
    char envelope_str[PKGSTORE_DIGEST_STR_SIZE], manifest_str[PKGSTORE_DIGEST_STR_SIZE], q[300];
    pkgstore_digest_format(envelope_str, &envelope_digest);
    pkgstore_digest_format(manifest_str, pkgstore_trust_envelope_payload_digest(env));
    log_msg(LOG_INFO, error == 1 ? "signature already held" : "signature added",
            "name=%s version=%s keyid=%s manifest=%s envelope=%s", req->seg[2],
            log_quote(q, sizeof q, req->seg[3]), pkgstore_trust_envelope_keyid(env), manifest_str,
            envelope_str);
    json_t *body = json_pack("{s:s, s:s, s:s}", "keyid", pkgstore_trust_envelope_keyid(env),
                             "envelope", envelope_str, "manifest", manifest_str);
    pkgstore_trust_envelope_free(env);
    return respond_json(conn, req, error == 1 ? MHD_HTTP_OK : MHD_HTTP_CREATED, body);
}

enum MHD_Result package_signatures_get(struct MHD_Connection *conn, request *req)
{
    enum MHD_Result result;
    pkgstore_digest digest;
    pkgstore_manifest *manifest = NULL;
    if (package_path_get(&manifest, &digest, conn, req, &result) < 0)
        return result;
    char *text = NULL;
    size_t len = 0;
    pkgstore_trust_stored_signature *list = NULL;
    size_t count = 0;
    int error = pkgstore_manifest_serialize(&text, &len, manifest, 0);
    if (error == 0)
        error = pkgstore_trust_signatures_list(&list, &count, g_server.store, &digest);
    if (error < 0) {
        pkgstore_manifest_free(manifest);
        pkgstore_free(text);
        return respond_pkgstore_error(conn, req, error, "signatures");
    }
    json_t *signatures = json_array();
    for (size_t i = 0; signatures && i < count; i++) {
        json_t *env = json_loadb(list[i].data, list[i].len, 0, NULL);
        json_array_append_new(signatures, env ? env : json_null()); /* null: out of memory */
    }
    /* a stored envelope is canonical JSON (checked on PUT): every one
     * parses, so "check.states" lines up with "signatures" */
    json_t *check = trust_signatures_check(pkgstore_manifest_name(manifest),
                                           pkgstore_manifest_version(manifest), text, len, list,
                                           count);
    pkgstore_manifest_free(manifest);
    pkgstore_trust_signatures_free(list, count);
    pkgstore_free(text);
    if (!signatures || !check) {
        json_decref(signatures);
        json_decref(check);
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "signatures: out of memory");
    }
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest_str, &digest);
    return respond_json(conn, req, MHD_HTTP_OK,
                        json_pack("{s:s, s:o, s:o}", "manifest", digest_str, "signatures",
                                  signatures, "check", check));
}
