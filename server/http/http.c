/*
 * server/http/http.c - request routing, authentication, body intake and JSON
 * responses on top of libmicrohttpd.
 *
 * libmicrohttpd calls http_access() several times per request: once when
 * the headers are in, once per chunk of body, and once more when the body
 * is complete. The first call routes the request, checks the token and the
 * declared size and may answer at once (the body is then never read). Body
 * chunks stream into the store writer (uploads) or a capped buffer (JSON).
 * The last call runs the route's handler. A failure found while the body is
 * still arriving is remembered and answered on the last call, because
 * libmicrohttpd cannot queue a response in the middle of an upload.
 *
 * The URL reaches us undecoded (http_unescape_none): we percent-decode each
 * path segment ourselves (parse.c), so that an encoded NUL, '/' or ".." is
 * refused before anything is routed, let alone used in a path. The request
 * is allocated in the URI callback (http_uri_log), which sees the raw
 * target: the query is kept from there, because libmicrohttpd's own
 * argument table has already turned '+' into ' ', and the target's length
 * there shows whether a raw NUL cut the request line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <time.h>

#include "../server.h"

/* Bytes of body we are willing to read and throw away after a failure so
 * that the client can still read our answer; past this we close. */
#define DISCARD_MAX (16u * 1024 * 1024)

size_t http_unescape_none(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

/* ---------------------------------------------------------------- responses */

/* The console's security headers go on every response: a JSON answer
 * opened in a tab is as much the console's origin as ui/index.html. */
static void add_common_headers(struct MHD_Response *response)
{
    MHD_add_response_header(response, "Server", SERVER_NAME "/" PKGSTORE_VERSION_STRING);
    MHD_add_response_header(response, "Content-Security-Policy",
                            "default-src 'self'; script-src 'self'; style-src 'self'; "
                            "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(response, "X-Frame-Options", "DENY");
}

enum MHD_Result queue_response(struct MHD_Connection *conn, request *req, unsigned int status,
                               struct MHD_Response *response)
{
    if (!response)
        return MHD_NO;
    add_common_headers(response);
    if (req && req->extra_header_name)
        MHD_add_response_header(response, req->extra_header_name, req->extra_header_value);
    enum MHD_Result result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    if (req)
        req->status = status;
    return result;
}

enum MHD_Result queue_body_response(struct MHD_Connection *conn, request *req,
                                    unsigned int status, struct MHD_Response *response,
                                    const char *body, size_t len)
{
    if (!response || !req || !req->etag_route || status != MHD_HTTP_OK)
        return queue_response(conn, req, status, response);
    pkgstore_digest digest;
    char hex[PKGSTORE_DIGEST_STR_SIZE], etag[40];
    if (pkgstore_digest_buffer(&digest, body, len) < 0)
        return queue_response(conn, req, status, response); /* served without an ETag */
    pkgstore_digest_format(hex, &digest);
    snprintf(etag, sizeof etag, "\"%.32s\"", hex + 7); /* strong: a hash of the bytes */
    const char *listed = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    if (listed && http_etag_listed(listed, etag, 1, 1)) {
        MHD_destroy_response(response);
        response = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!response)
            return MHD_NO;
        MHD_add_response_header(response, "Cache-Control", "no-store");
        req->response_bytes = 0;
        status = MHD_HTTP_NOT_MODIFIED;
    }
    MHD_add_response_header(response, "ETag", etag);
    return queue_response(conn, req, status, response);
}

enum MHD_Result respond_json(struct MHD_Connection *conn, request *req, unsigned int status,
                             json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"NOMEM\",\"message\":\"out of memory\"}}";
        struct MHD_Response *response = MHD_create_response_from_buffer(
            sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (response)
            MHD_add_response_header(response, "Content-Type", "application/json");
        return queue_response(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, response);
    }
    size_t len = strlen(text);
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    if (req)
        req->response_bytes = len;
    return queue_body_response(conn, req, status, response, text, len);
}

enum MHD_Result respond_error(struct MHD_Connection *conn, request *req, unsigned int status,
                              int code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", pkgstore_error_name(code),
                             "message", message);
    if (!body) { /* the message quotes input that is not UTF-8: mask those bytes */
        for (char *p = message; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        body = json_pack("{s:{s:s,s:s}}", "error", "code", pkgstore_error_name(code), "message",
                         message);
    }
    if (req && status >= 500) {
        char quoted[600];
        log_msg(LOG_ERROR, "request failed", "route=%s status=%u code=%s detail=%s",
                route_label(req->route), status, pkgstore_error_name(code),
                log_quote(quoted, sizeof quoted, message));
    }
    return respond_json(conn, req, status, body);
}

unsigned int http_status_for_error(int error)
{
    switch (error) {
    case PKGSTORE_ENOTFOUND:
        return MHD_HTTP_NOT_FOUND;
    case PKGSTORE_EEXISTS:
    case PKGSTORE_ECONFLICT:
    case PKGSTORE_EDEPENDENCY:
        return MHD_HTTP_CONFLICT;
    case PKGSTORE_EINVALID:
    case PKGSTORE_EDIGEST_MISMATCH:
    case PKGSTORE_ESIZE_MISMATCH:
    case PKGSTORE_EFORMAT:
    case PKGSTORE_EUNSAFE:
    case PKGSTORE_EUNSUPPORTED:
        return MHD_HTTP_BAD_REQUEST;
    case PKGSTORE_EDENIED:
        return MHD_HTTP_FORBIDDEN;
    case PKGSTORE_ELIMIT:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case PKGSTORE_ENOSPC:
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    case PKGSTORE_ELOCKED:
    case PKGSTORE_ENOMEM:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case PKGSTORE_ETIMEOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case PKGSTORE_ENET:
        return MHD_HTTP_BAD_GATEWAY;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

enum MHD_Result respond_pkgstore_error(struct MHD_Connection *conn, request *req, int error,
                                       const char *context)
{
    return respond_pkgstore_error_text(conn, req, error, context, pkgstore_error_detail());
}

enum MHD_Result respond_pkgstore_error_text(struct MHD_Connection *conn, request *req, int error,
                                            const char *context, const char *detail)
{
    if (!detail || !*detail)
        detail = pkgstore_strerror(error);
    if (error == PKGSTORE_ELOCKED && !req->extra_header_name) {
        /* gc or repair has the store; it is worth trying again soon */
        req->extra_header_name = "Retry-After";
        req->extra_header_value = "1";
    }
    if (context)
        return respond_error(conn, req, http_status_for_error(error), error, "%s: %s", context,
                             detail);
    return respond_error(conn, req, http_status_for_error(error), error, "%s", detail);
}

/* Answer with JSON text the library allocated (freed by MHD when sent). */
enum MHD_Result respond_library_json(struct MHD_Connection *conn, request *req,
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
    return queue_body_response(conn, req, status, response, text, len);
}

void request_fail(request *req, unsigned int status, int code, const char *fmt, ...)
{
    if (req->fail_status)
        return; /* keep the first cause */
    req->fail_status = status;
    req->fail_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->fail_message, sizeof req->fail_message, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- query */

int query_arg(char *out, size_t size, struct MHD_Connection *conn, const char *key)
{
    /* Not MHD_GET_ARGUMENT_KIND: libmicrohttpd turns '+' into ' ' before
     * any unescape callback sees the value, and format=tar+gzip must stay
     * what the API documents. */
    request *req = guard_request(conn);
    if (!req)
        return 0;
    return http_query_value(out, size, req->query, key);
}

/* ?name=1|true|0|false; def when absent or unreadable. */
int query_flag(struct MHD_Connection *conn, const char *key, int def)
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

/* ---------------------------------------------------------------- routing */

enum {
    M_GET = 1, M_HEAD = 2, M_POST = 4, M_PUT = 8, M_DELETE = 16
};

static unsigned int method_bit(const char *method)
{
    if (strcmp(method, "GET") == 0)
        return M_GET;
    if (strcmp(method, "HEAD") == 0)
        return M_HEAD;
    if (strcmp(method, "POST") == 0)
        return M_POST;
    if (strcmp(method, "PUT") == 0)
        return M_PUT;
    if (strcmp(method, "DELETE") == 0)
        return M_DELETE;
    return 0;
}

static const char *allow_header(unsigned int methods)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    static _Thread_local char buf[64];
    buf[0] = '\0';
    for (int i = 0; i < 5; i++) {
        if (methods & (1u << i)) {
            if (buf[0])
                strcat(buf, ", ");
            strcat(buf, names[i]);
        }
    }
    return buf;
}

static int seg_is(const request *req, int i, const char *s)
{
    return i < req->nseg && strcmp(req->seg[i], s) == 0;
}

/* Which route the path names and the methods it takes. */
static enum route match_route(const request *req, unsigned int *methods)
{
    *methods = 0;
    if (req->nseg == 0) {
        *methods = M_GET | M_HEAD;
        return ROUTE_ROOT;
    }
    if ((req->nseg == 1 || req->nseg == 2) && seg_is(req, 0, "ui")) {
        *methods = M_GET | M_HEAD;
        return ROUTE_UI;
    }
    if (req->nseg == 1 && seg_is(req, 0, "healthz")) {
        *methods = M_GET | M_HEAD;
        return ROUTE_HEALTHZ;
    }
    if (req->nseg == 1 && seg_is(req, 0, "metrics")) {
        *methods = M_GET | M_HEAD;
        return ROUTE_METRICS;
    }
    if (req->nseg < 2 || !seg_is(req, 0, "v1"))
        return ROUTE_OTHER;
    if (seg_is(req, 1, "blobs")) {
        if (req->nseg == 2) {
            *methods = M_POST;
            return ROUTE_BLOBS;
        }
        if (req->nseg == 3) {
            *methods = M_GET | M_HEAD | M_PUT;
            return ROUTE_BLOB;
        }
    } else if (seg_is(req, 1, "packages")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD;
            return ROUTE_PACKAGES;
        }
        if (req->nseg == 3) {
            *methods = M_GET | M_HEAD;
            return ROUTE_PACKAGE;
        }
        if (req->nseg == 4) {
            *methods = M_GET | M_HEAD | M_PUT | M_DELETE;
            return ROUTE_PACKAGE_VERSION;
        }
        if (req->nseg == 5 && seg_is(req, 4, "signatures")) {
            *methods = M_GET | M_HEAD | M_PUT;
            return ROUTE_SIGNATURES;
        }
    } else if (seg_is(req, 1, "policies")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD;
            return ROUTE_POLICIES;
        }
        if (req->nseg == 3) {
            *methods = M_GET | M_HEAD | M_PUT | M_DELETE;
            return ROUTE_POLICY;
        }
        if (req->nseg == 4 && seg_is(req, 3, "retry")) {
            *methods = M_POST;
            return ROUTE_POLICY_RETRY;
        }
        if (req->nseg == 4 &&
            (seg_is(req, 3, "pause") || seg_is(req, 3, "resume") || seg_is(req, 3, "abort"))) {
            *methods = M_POST;
            return ROUTE_POLICY_ROLLOUT;
        }
    } else if (seg_is(req, 1, "session")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD | M_POST | M_DELETE;
            return ROUTE_SESSION;
        }
    } else if (seg_is(req, 1, "audit")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD;
            return ROUTE_AUDIT;
        }
    } else if (seg_is(req, 1, "agents")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD;
            return ROUTE_AGENTS;
        }
        if (req->nseg == 3 && seg_is(req, 2, "heartbeat")) {
            *methods = M_POST;
            return ROUTE_HEARTBEAT;
        }
        if (req->nseg == 3) {
            *methods = M_GET | M_HEAD | M_DELETE;
            return ROUTE_AGENT;
        }
    } else if (seg_is(req, 1, "trust")) {
        if ((req->nseg == 3 || req->nseg == 4) && seg_is(req, 2, "root")) {
            *methods = req->nseg == 3 ? (M_GET | M_HEAD | M_PUT) : (M_GET | M_HEAD);
            return ROUTE_TRUST_ROOT;
        }
        if (req->nseg == 3 && seg_is(req, 2, "revocations")) {
            *methods = M_GET | M_HEAD | M_PUT;
            return ROUTE_REVOCATIONS;
        }
    } else if (seg_is(req, 1, "opamp")) {
        if (req->nseg == 2) {
            *methods = M_POST;
            return ROUTE_OPAMP;
        }
    } else if (seg_is(req, 1, "credentials")) {
        if (req->nseg == 2) {
            *methods = M_GET | M_HEAD | M_POST;
            return ROUTE_CREDENTIALS;
        }
        if (req->nseg == 3) {
            *methods = M_DELETE;
            return ROUTE_CREDENTIAL;
        }
    }
    return ROUTE_OTHER;
}

/* Roles allowed on a route and method. */
static int role_allowed(enum route route, unsigned int method, enum role role)
{
    switch (route) {
    case ROUTE_HEALTHZ:
    case ROUTE_ROOT:
    case ROUTE_UI:
        return 1;
    case ROUTE_METRICS:
        return role == ROLE_ADMIN || role == ROLE_METRICS;
    case ROUTE_BLOB:
        if (method & (M_GET | M_HEAD))
            return role == ROLE_ADMIN || role == ROLE_AGENT || role == ROLE_NODE;
        return role == ROLE_ADMIN;
    case ROUTE_HEARTBEAT:
    case ROUTE_OPAMP:
        return role == ROLE_ADMIN || role == ROLE_AGENT || role == ROLE_NODE;
    case ROUTE_TRUST_ROOT:
    case ROUTE_REVOCATIONS: /* nodes fetch what they verify; only admins add */
        if (method & (M_GET | M_HEAD))
            return role == ROLE_ADMIN || role == ROLE_AGENT || role == ROLE_NODE;
        return role == ROLE_ADMIN;
    default:
        return role == ROLE_ADMIN;
    }
}

/* {"status":"ok"}, or "degraded" with the problems when the fleet cannot
 * write its node records (200 either way: the server still serves; with
 * ?strict=1 a degraded server answers 503, for probes that read only the
 * status code). */
static enum MHD_Result healthz(struct MHD_Connection *conn, request *req)
{
    fleet_stats stats;
    if (!g_server.fleet)
        return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    fleet_stats_get(g_server.fleet, &stats);
    if (!stats.degraded)
        return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    json_t *body = json_pack("{s:s, s:[{s:s, s:s, s:I}]}", "status", "degraded", "problems",
                             "component", "fleet", "detail", stats.last_error, "unsaved_nodes",
                             (json_int_t)stats.unsaved);
    return respond_json(conn, req,
                        query_flag(conn, "strict", 0) ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                        body);
}

static enum MHD_Result metrics(struct MHD_Connection *conn, request *req)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    if (!text)
        return respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_ENOMEM,
                             "metrics: out of memory");
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    req->response_bytes = len;
    return queue_response(conn, req, MHD_HTTP_OK, response);
}

/* Pick the handler and the body kind for a routed request. */
static void select_handler(request *req, unsigned int method)
{
    req->body_kind = BODY_NONE;
    switch (req->route) {
    case ROUTE_HEALTHZ:
        req->handler = healthz;
        break;
    case ROUTE_ROOT:
        req->handler = console_redirect;
        break;
    case ROUTE_UI:
        req->handler = console_file_get;
        break;
    case ROUTE_SESSION:
        if (method == M_POST) {
            req->handler = session_create;
            req->body_kind = BODY_JSON;
        } else if (method == M_DELETE) {
            req->handler = session_delete;
        } else {
            req->handler = session_get;
        }
        break;
    case ROUTE_METRICS:
        req->handler = metrics;
        break;
    case ROUTE_BLOBS:
        req->handler = blob_upload_finish;
        req->body_kind = BODY_BLOB;
        break;
    case ROUTE_BLOB:
        if (method == M_PUT) {
            req->handler = blob_upload_finish;
            req->body_kind = BODY_BLOB;
        } else {
            req->handler = blob_download;
        }
        break;
    case ROUTE_PACKAGES:
        req->handler = packages_list;
        break;
    case ROUTE_PACKAGE:
        req->handler = package_versions;
        break;
    case ROUTE_PACKAGE_VERSION:
        if (method == M_PUT) {
            req->handler = package_upload_finish;
            req->body_kind = BODY_BLOB;
        } else if (method == M_DELETE) {
            req->handler = package_delete;
        } else {
            req->handler = package_manifest;
        }
        break;
    case ROUTE_POLICIES:
        req->handler = policies_list;
        break;
    case ROUTE_POLICY:
        if (method == M_PUT) {
            req->handler = policy_put;
            req->body_kind = BODY_JSON;
        } else if (method == M_DELETE) {
            req->handler = policy_delete;
        } else {
            req->handler = policy_get;
        }
        break;
    case ROUTE_POLICY_RETRY:
        req->handler = policy_retry;
        break;
    case ROUTE_POLICY_ROLLOUT:
        req->handler = policy_rollout_action;
        req->body_kind = BODY_JSON;
        break;
    case ROUTE_AUDIT:
        req->handler = audit_list;
        break;
    case ROUTE_HEARTBEAT:
        req->handler = agent_heartbeat;
        req->body_kind = BODY_JSON;
        break;
    case ROUTE_OPAMP:
        req->handler = agent_opamp;
        req->body_kind = BODY_OPAMP;
        break;
    case ROUTE_AGENTS:
        req->handler = agents_list;
        break;
    case ROUTE_AGENT:
        req->handler = method == M_DELETE ? agent_delete : agent_get;
        break;
    case ROUTE_CREDENTIALS:
        if (method == M_POST) {
            req->handler = credential_issue;
            req->body_kind = BODY_JSON;
        } else {
            req->handler = credentials_get;
        }
        break;
    case ROUTE_CREDENTIAL:
        req->handler = credential_revoke;
        break;
    case ROUTE_SIGNATURES:
        if (method == M_PUT) {
            req->handler = package_signature_put;
            req->body_kind = BODY_JSON;
        } else {
            req->handler = package_signatures_get;
        }
        break;
    case ROUTE_TRUST_ROOT:
        if (method == M_PUT) {
            req->handler = trust_root_put_route;
            req->body_kind = BODY_JSON;
        } else {
            req->handler = trust_root_get_route;
        }
        break;
    case ROUTE_REVOCATIONS:
        if (method == M_PUT) {
            req->handler = trust_revocation_put_route;
            req->body_kind = BODY_JSON;
        } else {
            req->handler = trust_revocations_get_route;
        }
        break;
    default:
        req->handler = NULL;
        break;
    }
}

void token_id_of(char *out, size_t size, const char *token, size_t len)
{
    pkgstore_digest digest;
    char hex[PKGSTORE_DIGEST_STR_SIZE];
    if (size)
        out[0] = '\0';
    if (pkgstore_digest_buffer(&digest, token, len) == 0) {
        pkgstore_digest_format(hex, &digest);
        snprintf(out, size, "token:%.16s", hex + 7);
    }
}

/* Whether the route's GET answers carry an ETag (the console polls them). */
static int is_etag_route(enum route route)
{
    switch (route) {
    case ROUTE_AGENTS:
    case ROUTE_AGENT:
    case ROUTE_POLICIES:
    case ROUTE_POLICY:
    case ROUTE_PACKAGES:
    case ROUTE_PACKAGE:
    case ROUTE_AUDIT:
        return 1;
    default:
        return 0;
    }
}

/* A token's name for per-credential limits: FNV-1a of its bytes (the token
 * itself is not kept). */
static uint64_t credential_hash(const char *token, size_t len)
{
    uint64_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char)token[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

/* A node's client certificate (tls.c verifies it against --tls-client-ca)
 * stands for the newest credential issued for its node: the credential
 * holds the node's pinned labels, and revoking it shuts the certificate
 * out too. 1: req->role is ROLE_NODE; 0: no certificate; -1: refused,
 * with the reason in why. */
static int client_certificate(struct MHD_Connection *conn, request *req, char *why,
                              size_t why_size)
{
    char node[256], detail[512];
    int verified = tls_client_node(conn, node, sizeof node, detail, sizeof detail);
    if (verified < 0) {
        snprintf(why, why_size, "client certificate refused: %s", detail);
        return -1;
    }
    if (verified == 0)
        return 0;
    if (!(req->node = credentials_for_node(node))) {
        snprintf(why, why_size,
                 "client certificate for node %s: no credential is issued for that node "
                 "(pkgstore-token issue --node %s), or it was revoked",
                 node, node);
        return -1;
    }
    req->role = ROLE_NODE;
    /* the new-node rate is counted per credential, as for its token */
    req->credential = credential_hash(credentials_id(req->node), strlen(credentials_id(req->node)));
    return 1;
}

/* Content-Length and Transfer-Encoding, read from every header line: a
 * request that frames its body two ways is refused (RFC 9112 6.3), since a
 * proxy in front may pick the other framing and smuggle a request past it.
 * libmicrohttpd itself reads only the first Content-Length. */
typedef struct framing {
    int content_lengths;  /* Content-Length lines seen */
    int differing;        /* one differs from the first */
    int malformed;        /* one is not 1*DIGIT */
    int transfer_encoding;
    int64_t content_length;
} framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    framing *f = cls;
    if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->transfer_encoding = 1;
    } else if (strcasecmp(key, "Content-Length") == 0) {
        int64_t n = -1;
        if (http_parse_content_length(&n, value ? value : "") < 0)
            f->malformed = 1;
        else if (f->content_lengths > 0 && n != f->content_length)
            f->differing = 1;
        if (f->content_lengths++ == 0)
            f->content_length = n;
    }
    return MHD_YES;
}

/* A framing error: 400, and the connection is closed after the answer
 * because where this request's body ends is not known. */
static enum MHD_Result refuse_framing(struct MHD_Connection *conn, request *req,
                                      const char *message)
{
    req->extra_header_name = "Connection";
    req->extra_header_value = "close";
    return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "%s", message);
}

/* The first call for a request: route, authenticate, check sizes, open the
 * upload. Returns MHD_YES to go on reading, or the result of an answer. */
static enum MHD_Result first_call(struct MHD_Connection *conn, request *req, const char *url,
                                  const char *method, const char *version)
{
    const char *reason = NULL;

    /* libmicrohttpd cuts the request line at a raw NUL and serves what is
     * left ("GET /healthz\0junk HTTP/1.1" as /healthz). It NUL-terminates
     * the target in place, right before the version, so a target whose
     * string ends early was cut; the same holds for the method, which ends
     * at the first space. Compared as pointers only. */
    if (req->raw_uri) {
        const char *method_end = method + strlen(method);
        int cut = version != req->raw_uri + req->raw_uri_len + 1 || method_end >= req->raw_uri;
        for (const char *p = method_end + 1; !cut && p < req->raw_uri; p++)
            if (*p != ' ')
                cut = 1;
        if (cut)
            return refuse_framing(conn, req, "the request line holds a NUL byte");
    }

    framing frame = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_header, &frame);
    if (frame.malformed)
        return refuse_framing(conn, req, "malformed Content-Length");
    if (frame.differing)
        return refuse_framing(conn, req, "differing Content-Length headers");
    if (frame.transfer_encoding && frame.content_lengths)
        return refuse_framing(conn, req, "both Transfer-Encoding and Content-Length");
    req->content_length = frame.content_lengths ? frame.content_length : -1;

    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (info && info->header_size > g_server.config.max_header)
        return respond_error(conn, req, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, PKGSTORE_ELIMIT,
                             "request header is %zu bytes; the limit is %zu", info->header_size,
                             g_server.config.max_header);

    int split = 0;
    if (strcmp(url, "/ui/") == 0) {
        /* the console's page; a trailing '/' names no other route */
        snprintf(req->seg[0], sizeof req->seg[0], "ui");
        snprintf(req->seg[1], sizeof req->seg[1], "index.html");
        req->nseg = 2;
    } else {
        split = http_split_path(req->seg, &req->nseg, url, &reason);
    }
    if (split == -1)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "%s", reason);

    unsigned int methods = 0;
    req->route = split == -2 ? ROUTE_OTHER : match_route(req, &methods);
    if (req->route == ROUTE_OTHER)
        return respond_error(conn, req, MHD_HTTP_NOT_FOUND, PKGSTORE_ENOTFOUND, "no such route");
    unsigned int method_flag = method_bit(method);
    if (!(methods & method_flag)) {
        req->extra_header_name = "Allow";
        req->extra_header_value = allow_header(methods);
        return respond_error(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, PKGSTORE_EUNSUPPORTED,
                             "method %.16s not allowed; allowed: %s", method,
                             req->extra_header_value);
    }

    /* No credential for: health, the console's files and its redirect,
     * and the sign-in, whose token is in the body (and whose session
     * cookies are ignored: a new session is always issued). */
    int open_route = req->route == ROUTE_HEALTHZ || req->route == ROUTE_ROOT ||
                     req->route == ROUTE_UI ||
                     (req->route == ROUTE_SESSION && method_flag == M_POST);
    int by_session = 0;
    if (!open_route) {
        size_t token_len = 0;
        const char *token = http_bearer_token(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"), &token_len);
        /* No Authorization: a console session cookie stands for an admin */
        if (!token && (by_session = session_authenticate(conn, req)) < 0)
            return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED,
                                 "the console session is unknown, expired or signed out");
        if (by_session > 0) {
            /* the new-node rate counts it as the token that signed in */
            req->credential = credential_hash(req->token_id, strlen(req->token_id));
            /* A cookie goes with every request the browser makes, a
             * forged cross-site one included: a change needs the CSRF
             * token too, which only the console's page can read. */
            if (!(method_flag & (M_GET | M_HEAD)) && !session_csrf_ok(conn, req))
                return respond_error(conn, req, MHD_HTTP_FORBIDDEN, PKGSTORE_EDENIED,
                                     "missing or wrong X-CSRF-Token");
        } else if (req->route == ROUTE_SESSION) {
            return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED,
                                 "no console session: sign in with POST /v1/session");
        } else if (token) {
            req->role = tokens_check(g_server.tokens, token, token_len);
            req->credential = credential_hash(token, token_len);
            if (req->role == ROLE_ADMIN)
                token_id_of(req->token_id, sizeof req->token_id, token, token_len);
            if (req->role == ROLE_NONE && (req->node = credentials_check(token, token_len)))
                req->role = ROLE_NODE;
            if (req->role == ROLE_NONE) {
                req->extra_header_name = "WWW-Authenticate";
                req->extra_header_value = "Bearer realm=\"pkgstored\", error=\"invalid_token\"";
                return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED,
                                     "unknown token");
            }
        } else {
            /* No token: a client certificate may name the node (mutual
             * TLS, --tls-client-ca); it speaks with that node's credential. */
            char why[700];
            int by_certificate = client_certificate(conn, req, why, sizeof why);
            if (by_certificate <= 0) {
                req->extra_header_name = "WWW-Authenticate";
                req->extra_header_value = "Bearer realm=\"pkgstored\"";
                if (by_certificate < 0)
                    metrics_client_certificate_refused();
                return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED, "%s",
                                     by_certificate < 0
                                         ? why
                                         : "missing 'Authorization: Bearer <token>'");
            }
        }
        if (!role_allowed(req->route, method_flag, req->role))
            return respond_error(conn, req, MHD_HTTP_FORBIDDEN, PKGSTORE_EDENIED,
                                 "this token's role may not %s %s", method,
                                 route_label(req->route));
        /* A node credential speaks for its node only, whatever it asks. */
        const char *claimed = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                          "X-Pkgstore-Node");
        if (req->node && claimed && strcmp(claimed, credentials_node(req->node)) != 0) {
            metrics_node_mismatch();
            return respond_error(conn, req, MHD_HTTP_FORBIDDEN, PKGSTORE_EDENIED,
                                 "X-Pkgstore-Node %.253s: this credential speaks for node %s "
                                 "only", claimed, credentials_node(req->node));
        }
    }
    req->etag_route = is_etag_route(req->route) && (method_flag & (M_GET | M_HEAD));

    select_handler(req, method_flag);
    switch (req->body_kind) {
    case BODY_BLOB:
        if (req->content_length >= 0 && (uint64_t)req->content_length > g_server.config.max_upload)
            return respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, PKGSTORE_ELIMIT,
                                 "body of %" PRId64 " bytes is over the upload limit of %" PRIu64
                                 " bytes",
                                 req->content_length, g_server.config.max_upload);
        if (req->content_length > 0) {
            /* Nothing is reserved for the body (upload_open_writer), so a
             * body that cannot fit is refused here, before it is sent. */
            struct statvfs fs;
            if (statvfs(pkgstore_store_path(g_server.store), &fs) == 0 &&
                (uint64_t)req->content_length / fs.f_frsize >= fs.f_bavail)
                return respond_error(conn, req, MHD_HTTP_INSUFFICIENT_STORAGE, PKGSTORE_ENOSPC,
                                     "body of %" PRId64 " bytes does not fit: %" PRIu64
                                     " bytes free in the store",
                                     req->content_length,
                                     (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize);
        }
        if (req->route == ROUTE_PACKAGE_VERSION)
            return package_upload_begin(conn, req);
        return blob_upload_begin(conn, req);
    case BODY_JSON:
        if (req->content_length >= 0 && (uint64_t)req->content_length > g_server.config.max_json)
            return respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, PKGSTORE_ELIMIT,
                                 "JSON body of %" PRId64 " bytes is over the limit of %zu bytes",
                                 req->content_length, g_server.config.max_json);
        break;
    case BODY_OPAMP: {
        enum MHD_Result result;
        if (opamp_check_headers(conn, req, &result) < 0)
            return result;
        if (req->content_length >= 0 && (uint64_t)req->content_length > OPAMP_BODY_MAX)
            return respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, PKGSTORE_ELIMIT,
                                 "opamp: body of %" PRId64 " bytes is over the limit of %zu bytes",
                                 req->content_length, OPAMP_BODY_MAX);
        break;
    }
    case BODY_NONE:
        break;
    }
    return MHD_YES;
}

static void body_chunk(request *req, const char *data, size_t size)
{
    req->body_bytes += size;
    if (req->fail_status) {
        req->discarded += size;
        return;
    }
    switch (req->body_kind) {
    case BODY_BLOB:
        if (req->body_bytes > g_server.config.max_upload) {
            request_fail(req, MHD_HTTP_CONTENT_TOO_LARGE, PKGSTORE_ELIMIT,
                         "body is over the upload limit of %" PRIu64 " bytes",
                         g_server.config.max_upload);
            pkgstore_store_writer_abort(req->writer);
            req->writer = NULL;
            metrics_upload(0, 0);
            return;
        }
        upload_feed(req, data, size);
        break;
    case BODY_JSON:
    case BODY_OPAMP: {
        size_t limit = req->body_kind == BODY_OPAMP ? OPAMP_BODY_MAX : g_server.config.max_json;
        if (req->json_len + size > limit) {
            request_fail(req, MHD_HTTP_CONTENT_TOO_LARGE, PKGSTORE_ELIMIT,
                         "%s body is over the limit of %zu bytes",
                         req->body_kind == BODY_OPAMP ? "opamp:" : "JSON", limit);
            return;
        }
        if (req->json_len + size + 1 > req->json_cap) {
            size_t cap = req->json_cap ? req->json_cap : 1024;
            while (cap < req->json_len + size + 1)
                cap *= 2;
            if (cap > limit + 1)
                cap = limit + 1;
            char *json = realloc(req->json, cap);
            if (!json) {
                request_fail(req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "out of memory reading the body");
                return;
            }
            req->json = json;
            req->json_cap = cap;
        }
        memcpy(req->json + req->json_len, data, size);
        req->json_len += size;
        req->json[req->json_len] = '\0';
        break;
    }
    case BODY_NONE:
        req->discarded += size;
        break;
    }
}

static request *request_new(struct MHD_Connection *conn)
{
    request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->content_length = -1;
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    req->guard = guard_record(conn);
    guard_set_request(req->guard, req);
    return req;
}

void *http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    request *req = request_new(conn);
    if (!req)
        return NULL; /* http_access tries again and refuses the request */
    guard_request_line(req->guard);
    if (uri) {
        req->raw_uri = uri;
        req->raw_uri_len = strlen(uri);
        const char *query = strchr(uri, '?');
        if (query && !(req->query = strdup(query + 1))) {
            req->fail_status = MHD_HTTP_SERVICE_UNAVAILABLE;
            req->fail_code = PKGSTORE_ENOMEM;
            snprintf(req->fail_message, sizeof req->fail_message, "out of memory");
        }
    }
    return req;
}

/* Whether the request announces a body: Content-Length over 0, or chunked. */
static int has_body(const request *req, struct MHD_Connection *conn)
{
    if (req->content_length > 0)
        return 1;
    return req->content_length < 0 &&
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    request *req = *con_cls;
    if (!req) { /* the URI callback could not allocate it */
        req = request_new(conn);
        if (!req)
            return MHD_NO;
        *con_cls = req;
    }
    if (!req->access_begun) {
        req->access_begun = 1;
        req->counted = 1;
        atomic_fetch_add(&g_server.in_flight, 1);
        snprintf(req->method, sizeof req->method, "%s", method);
        if (log_threshold <= LOG_DEBUG)
            log_quote(req->path_for_log, sizeof req->path_for_log, url);
        if (req->fail_status) /* found by the URI callback */
            return respond_error(conn, req, req->fail_status, req->fail_code, "%s",
                                 req->fail_message);
        enum MHD_Result result = first_call(conn, req, url, method, version);
        if (result == MHD_YES && !req->status && has_body(req, conn))
            guard_body_begin(req->guard);
        else
            guard_responding(req->guard);
        return result;
    }
    if (*upload_data_size > 0) {
        body_chunk(req, upload_data, *upload_data_size);
        guard_body_bytes(req->guard, req->body_bytes);
        *upload_data_size = 0;
        if (req->discarded > DISCARD_MAX)
            return MHD_NO; /* stop reading an unwanted body: close */
        return MHD_YES;
    }
    guard_responding(req->guard);
    if (req->fail_status) {
        pkgstore_store_writer_abort(req->writer);
        req->writer = NULL;
        return respond_error(conn, req, req->fail_status, req->fail_code, "%s",
                             req->fail_message);
    }
    if (!req->handler)
        return MHD_NO;
    return req->handler(conn, req);
}

void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    guard_request_done(req->guard);
    if (req->writer) { /* the client went away mid-upload: leave nothing */
        pkgstore_store_writer_abort(req->writer);
        req->writer = NULL;
        metrics_upload(0, 0);
        log_msg(LOG_WARN, "upload aborted", "route=%s received=%" PRIu64 " reason=%d",
                route_label(req->route), req->body_bytes, (int)toe);
    }
    if (req->status)
        metrics_request(req->route, req->status);
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && strcmp(req->method, "HEAD") != 0)
        metrics_bytes_served(req->response_bytes);
    if (log_threshold <= LOG_DEBUG) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double ms = (double)(now.tv_sec - req->started.tv_sec) * 1e3 +
                    (double)(now.tv_nsec - req->started.tv_nsec) / 1e6;
        log_msg(LOG_DEBUG, "request",
                "method=%s path=%s route=%s status=%u bytes_in=%" PRIu64 " bytes_out=%" PRIu64
                " ms=%.3f end=%d",
                req->method, req->path_for_log, route_label(req->route), req->status,
                req->body_bytes, req->response_bytes, ms, (int)toe);
    }
    if (req->route_data_free)
        req->route_data_free(req->route_data);
    credentials_release(req->node);
    int counted = req->counted;
    explicit_bzero(req->session_id, sizeof req->session_id);
    explicit_bzero(req->session_csrf, sizeof req->session_csrf);
    free(req->json);
    free(req->query);
    free(req);
    if (counted)
        atomic_fetch_sub(&g_server.in_flight, 1);
}
