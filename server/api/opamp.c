/*
 * server/api/opamp.c - POST /v1/opamp, OpAMP over plain HTTP
 * (docs/opamp.md): the content type and encoding, a gzip body inflated
 * under OPAMP_BODY_MAX, the base of the download URLs (--public-url, else
 * the scheme and the request's Host), and the exchange
 * (server/opamp/opamp.c) with the caller's credential, as the JSON
 * heartbeat does.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "../server.h"

/* The media type, parameters aside, compared without case. */
static int media_type_is(const char *value, const char *type)
{
    size_t len = strlen(type);
    if (!value)
        return 0;
    while (*value == ' ' || *value == '\t')
        value++;
    if (strncasecmp(value, type, len) != 0)
        return 0;
    value += len;
    while (*value == ' ' || *value == '\t')
        value++;
    return *value == '\0' || *value == ';';
}

static int gzip_encoded(struct MHD_Connection *conn)
{
    const char *encoding = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    return encoding && strcasecmp(encoding, "gzip") == 0;
}

int opamp_check_headers(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *encoding = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    if (!media_type_is(type, "application/x-protobuf")) {
        char q[80];
        *result = respond_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, PKGSTORE_EUNSUPPORTED,
                                "opamp: Content-Type %s: the body must be "
                                "application/x-protobuf (one binary AgentToServer)",
                                type ? log_quote(q, sizeof q, type) : "(none)");
        return -1;
    }
    if (encoding && strcasecmp(encoding, "gzip") != 0 && strcasecmp(encoding, "identity") != 0) {
        char q[80];
        *result = respond_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, PKGSTORE_EUNSUPPORTED,
                                "opamp: Content-Encoding %s: only gzip (or none)",
                                log_quote(q, sizeof q, encoding));
        return -1;
    }
    return 0;
}

/* Inflate a gzip body into *out (free()), at most OPAMP_BODY_MAX bytes:
 * 0, or an HTTP status (413 past the limit, 400 not gzip) with why. */
static unsigned int gunzip(uint8_t **out, size_t *out_len, const char *in, size_t in_len,
                           char *why, size_t why_size)
{
    z_stream zs;
    size_t cap = in_len * 4 + 1024, len = 0;
    unsigned int status = 0;
    uint8_t *buf = NULL;

    *out = NULL;
    *out_len = 0;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        snprintf(why, why_size, "opamp: zlib: cannot start inflating");
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    if (cap > OPAMP_BODY_MAX + 1)
        cap = OPAMP_BODY_MAX + 1;
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)in_len; /* in_len <= OPAMP_BODY_MAX */
    for (;;) {
        if (len == cap || !buf) {
            if (buf && cap > OPAMP_BODY_MAX) {
                snprintf(why, why_size, "opamp: the gzip body inflates past the limit of %zu bytes",
                         OPAMP_BODY_MAX);
                status = MHD_HTTP_CONTENT_TOO_LARGE;
                break;
            }
            size_t grown = buf ? cap * 2 : cap;
            if (grown > OPAMP_BODY_MAX + 1)
                grown = OPAMP_BODY_MAX + 1;
            uint8_t *bigger = realloc(buf, grown);
            if (!bigger) {
                snprintf(why, why_size, "opamp: out of memory inflating the body");
                status = MHD_HTTP_SERVICE_UNAVAILABLE;
                break;
            }
            buf = bigger;
            cap = grown;
        }
        zs.next_out = buf + len;
        zs.avail_out = (uInt)(cap - len);
        int rc = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in != 0) {
                snprintf(why, why_size, "opamp: %u bytes after the end of the gzip body",
                         zs.avail_in);
                status = MHD_HTTP_BAD_REQUEST;
            }
            break;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
            snprintf(why, why_size, "opamp: the gzip body is cut short");
            status = MHD_HTTP_BAD_REQUEST;
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            snprintf(why, why_size, "opamp: the body is not gzip: %s",
                     zs.msg ? zs.msg : "inflate failed");
            status = MHD_HTTP_BAD_REQUEST;
            break;
        }
    }
    inflateEnd(&zs);
    if (status) {
        free(buf);
        return status;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* host[:port] or [v6]:port: letters, digits, '.', '-', ':', '[' and ']'. */
static int host_valid(const char *host)
{
    size_t len = host ? strlen(host) : 0;
    if (len == 0 || len > 261)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
        if (!ok)
            return 0;
    }
    return 1;
}

int opamp_public_url_check(char *out, size_t size, const char *url, char *why, size_t why_size)
{
    const char *rest = NULL;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    if (!rest) {
        snprintf(why, why_size, "must start with http:// or https://");
        return -1;
    }
    size_t host_len = strcspn(rest, "/");
    char host[300];
    if (host_len == 0 || host_len >= sizeof host) {
        snprintf(why, why_size, "no host, or a host longer than %zu bytes", sizeof host - 1);
        return -1;
    }
    memcpy(host, rest, host_len);
    host[host_len] = '\0';
    if (!host_valid(host)) {
        snprintf(why, why_size, "host %s: only letters, digits, '.', '-', ':', '[' and ']'",
                 host);
        return -1;
    }
    for (const char *p = rest + host_len; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '"' || c == '\\') {
            snprintf(why, why_size, "the path holds a space, '?', '#', a quote, a backslash or "
                                    "a byte outside printable ASCII");
            return -1;
        }
    }
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len >= size) {
        snprintf(why, why_size, "longer than %zu bytes", size - 1);
        return -1;
    }
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}

enum MHD_Result agent_opamp(struct MHD_Connection *conn, request *req)
{
    char base[400], why[200];
    if (g_server.config.public_url) {
        snprintf(base, sizeof base, "%s", g_server.config.public_url);
    } else {
        const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
        if (!host_valid(host)) {
            char q[300];
            return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                 "opamp: Host %s: not HOST[:PORT], and download URLs are made "
                                 "from it (or start pkgstored with --public-url)",
                                 host ? log_quote(q, sizeof q, host) : "(none)");
        }
        snprintf(base, sizeof base, "%s://%s", g_server.config.tls_cert ? "https" : "http", host);
    }

    const uint8_t *body = (const uint8_t *)(req->json ? req->json : "");
    size_t len = req->json_len;
    uint8_t *inflated = NULL;
    if (gzip_encoded(conn)) {
        unsigned int status = gunzip(&inflated, &len, req->json ? req->json : "", req->json_len,
                                     why, sizeof why);
        if (status)
            return respond_error(conn, req, status,
                                 status == MHD_HTTP_CONTENT_TOO_LARGE ? PKGSTORE_ELIMIT
                                 : status == MHD_HTTP_BAD_REQUEST     ? PKGSTORE_EINVALID
                                                                      : PKGSTORE_ENOMEM,
                                 "%s", why);
        body = inflated;
    }

    fleet_identity who;
    if (req->node)
        credentials_identity(&who, req->node);
    opamp_request rq = {
        .fleet = g_server.fleet,
        .agents = g_server.opamp,
        .base_url = base,
        .credential = req->credential,
        .who = req->node ? &who : NULL,
        .primary_empty_name = g_server.config.opamp_primary_empty_name,
    };
    uint8_t *out = NULL;
    size_t out_len = 0;
    fleet_error err;
    int rc = opamp_exchange(&out, &out_len, &rq, body, len, &err);
    free(inflated);
    if (rc < 0) {
        if (err.code == PKGSTORE_EDENIED && req->node) {
            char q[600];
            metrics_node_mismatch();
            log_msg(LOG_WARN, "opamp: credential spoke for another node", "credential=%s detail=%s",
                    credentials_id(req->node), log_quote(q, sizeof q, err.message));
        } else if (err.code != PKGSTORE_EINVALID) {
            char q[600];
            log_msg(err.http_status == 429 || err.http_status == 503 ? LOG_WARN : LOG_ERROR,
                    "opamp refused", "detail=%s", log_quote(q, sizeof q, err.message));
        }
        return respond_fleet_error(conn, req, &err);
    }
    metrics_heartbeat();
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(out_len, out, free);
    if (!response) {
        free(out);
        return MHD_NO;
    }
    /* exactly this type: strict clients ignore any other */
    MHD_add_response_header(response, "Content-Type", "application/x-protobuf");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    req->response_bytes = out_len;
    return queue_response(conn, req, MHD_HTTP_OK, response);
}
