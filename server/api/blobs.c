/*
 * server/api/blobs.c - blob uploads (streamed into the store writer, which
 * hashes as it writes) and downloads (sendfile from the store's fd).
 *
 * Downloads pick a representation first - the .zst transfer copy when the
 * client accepts zstd and one exists, else the blob itself - and then apply
 * conditionals (If-None-Match, If-Range) and a single byte Range to that
 * representation. Each representation has its own strong ETag:
 * "sha256:HEX" for the bytes, "sha256:HEX+zstd" for the zstd copy.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h> /* EVP_EncodeBlock: base64 for Repr-Digest */

#include "../server.h"

int upload_open_writer(request *req)
{
    return pkgstore_store_writer_open(&req->writer, g_server.store,
                                      req->have_expected ? &req->expected : NULL,
                                      req->content_length);
}

void upload_feed(request *req, const char *data, size_t size)
{
    if (!req->writer)
        return;
    int error = pkgstore_store_writer_write(req->writer, data, size);
    if (error < 0) {
        const char *detail = pkgstore_error_detail();
        request_fail(req, http_status_for_error(error), error, "upload: %s",
                     *detail ? detail : pkgstore_strerror(error));
        pkgstore_store_writer_abort(req->writer);
        req->writer = NULL;
        metrics_upload(0, 0);
    }
}

enum MHD_Result blob_upload_begin(struct MHD_Connection *conn, request *req)
{
    if (req->route == ROUTE_BLOB) {
        if (pkgstore_digest_parse(&req->expected, req->seg[2]) < 0)
            return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                                 "path: %s", pkgstore_error_detail());
        req->have_expected = 1;
    }
    int error = upload_open_writer(req);
    if (error < 0)
        return respond_pkgstore_error(conn, req, error, "upload");
    return MHD_YES;
}

enum MHD_Result blob_upload_finish(struct MHD_Connection *conn, request *req)
{
    if (!req->writer)
        return respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_EINTERNAL,
                             "upload: no writer");
    pkgstore_digest digest;
    uint64_t size = 0;
    pkgstore_store_writer *writer = req->writer;
    req->writer = NULL; /* now owned by commit, which always frees it */
    int error = pkgstore_store_writer_commit(&digest, &size, writer);
    if (error < 0) {
        metrics_upload(0, 0);
        return respond_pkgstore_error(conn, req, error, "upload");
    }
    metrics_upload(1, size);
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest_str, &digest);
    log_msg(LOG_INFO, "blob stored", "digest=%s size=%" PRIu64, digest_str, size);
    snprintf(req->extra_header_buf, sizeof req->extra_header_buf, "/v1/blobs/%s", digest_str);
    req->extra_header_name = "Location";
    req->extra_header_value = req->extra_header_buf;
    return respond_json(conn, req, MHD_HTTP_CREATED,
                        json_pack("{s:s,s:I}", "digest", digest_str, "size", (json_int_t)size));
}

/* ---------------------------------------------------------------- downloads */

/* 1 when the Accept-Encoding list names zstd with a non-zero q. */
static int accepts_zstd(const char *value)
{
    if (!value)
        return 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *token = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - token);
        double q = 1.0;
        while (*p && *p != ',') {
            if (*p == ';') {
                p++;
                while (*p == ' ')
                    p++;
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
                    q = strtod(p + 2, NULL);
            } else {
                p++;
            }
        }
        if (len == 4 && strncasecmp(token, "zstd", 4) == 0 && q > 0.0)
            return 1;
    }
    return 0;
}

/* 1 when an entity-tag list (If-None-Match / If-Range) names etag or '*'.
 * weak_ok: If-None-Match compares weakly (W/"x" matches "x"); If-Range
 * must compare strongly, so there a weak tag never matches (RFC 9110 13.1.5). */
static int etag_listed(const char *list, const char *etag, int allow_star, int weak_ok)
{
    if (!list)
        return 0;
    size_t etag_len = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (*p == '*') {
            if (allow_star)
                return 1;
            p++;
            continue;
        }
        int weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        const char *start = p;
        if (*p == '"') {
            const char *end = strchr(p + 1, '"');
            if (!end)
                return 0;
            p = end + 1;
        } else {
            while (*p && *p != ',')
                p++;
        }
        if ((!weak || weak_ok) && (size_t)(p - start) == etag_len &&
            strncmp(start, etag, etag_len) == 0)
            return 1;
    }
    return 0;
}

enum range_result { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/* A single "bytes=" range against size. Malformed or multiple ranges are
 * ignored (RANGE_NONE), as RFC 9110 allows. */
static enum range_result parse_range(const char *value, uint64_t size, uint64_t *start_out,
                                     uint64_t *length_out)
{
    if (!value)
        return RANGE_NONE;
    while (*value == ' ')
        value++;
    if (strncasecmp(value, "bytes=", 6) != 0)
        return RANGE_NONE;
    const char *p = value + 6;
    if (strchr(p, ','))
        return RANGE_NONE;
    while (*p == ' ')
        p++;
    char *end = NULL;
    uint64_t first = 0, last = 0;
    int has_first = 0, has_last = 0;
    if (*p >= '0' && *p <= '9') {
        first = strtoull(p, &end, 10);
        p = end;
        has_first = 1;
    }
    if (*p != '-')
        return RANGE_NONE;
    p++;
    if (*p >= '0' && *p <= '9') {
        last = strtoull(p, &end, 10);
        p = end;
        has_last = 1;
    }
    while (*p == ' ')
        p++;
    if (*p || (!has_first && !has_last))
        return RANGE_NONE;
    if (!has_first) { /* suffix: the last N bytes */
        if (last == 0)
            return RANGE_UNSATISFIABLE;
        if (size == 0) /* satisfiable (RFC 9110 14.1.1) but no byte to name: send it all */
            return RANGE_NONE;
        uint64_t n = last > size ? size : last;
        *start_out = size - n;
        *length_out = n;
        return RANGE_OK;
    }
    if (has_last && last < first)
        return RANGE_NONE;
    if (first >= size)
        return RANGE_UNSATISFIABLE;
    if (!has_last || last >= size)
        last = size - 1;
    *start_out = first;
    *length_out = last - first + 1;
    return RANGE_OK;
}

static void add_cache_headers(struct MHD_Response *response, const char *etag)
{
    MHD_add_response_header(response, "ETag", etag);
    MHD_add_response_header(response, "Cache-Control", "public, max-age=31536000, immutable");
    MHD_add_response_header(response, "Vary", "Accept-Encoding");
}

enum MHD_Result blob_download(struct MHD_Connection *conn, request *req)
{
    pkgstore_digest digest;
    if (pkgstore_digest_parse(&digest, req->seg[2]) < 0)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID, "path: %s",
                             pkgstore_error_detail());
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest_str, &digest);

    int fd = -1, zstd = 0;
    uint64_t size = 0;
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");
    if (accepts_zstd(accept) && pkgstore_store_zstd_open(&fd, &size, g_server.store, &digest) == 0)
        zstd = 1;
    if (!zstd) {
        int error = pkgstore_store_blob_open(&fd, &size, g_server.store, &digest);
        if (error < 0)
            return respond_pkgstore_error(conn, req, error, digest_str);
    }

    char etag[PKGSTORE_DIGEST_STR_SIZE + 8], other_etag[PKGSTORE_DIGEST_STR_SIZE + 8];
    snprintf(etag, sizeof etag, "\"%s%s\"", digest_str, zstd ? "+zstd" : "");
    snprintf(other_etag, sizeof other_etag, "\"%s%s\"", digest_str, zstd ? "" : "+zstd");

    /* Blobs are immutable: a client holding either representation is current. */
    const char *if_none_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    if (etag_listed(if_none_match, etag, 1, 1) ||
        etag_listed(if_none_match, other_etag, 0, 1)) {
        close(fd);
        struct MHD_Response *response =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!response)
            return MHD_NO;
        add_cache_headers(response, etag);
        return queue_response(conn, req, MHD_HTTP_NOT_MODIFIED, response);
    }

    uint64_t start = 0, length = size;
    const char *range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range");
    const char *if_range = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-Range");
    if (range && if_range && !etag_listed(if_range, etag, 0, 0))
        range = NULL; /* the client's copy is another representation: send it all */
    enum range_result range_result = parse_range(range, size, &start, &length);
    if (range_result == RANGE_UNSATISFIABLE) {
        close(fd);
        snprintf(req->extra_header_buf, sizeof req->extra_header_buf, "bytes */%" PRIu64, size);
        req->extra_header_name = "Content-Range";
        req->extra_header_value = req->extra_header_buf;
        return respond_error(conn, req, MHD_HTTP_RANGE_NOT_SATISFIABLE, PKGSTORE_EINVALID,
                             "range '%.64s' is outside the %" PRIu64 " bytes of %s", range, size,
                             digest_str);
    }

    /* MHD sends from the fd with sendfile() and closes it when done. */
    struct MHD_Response *response = MHD_create_response_from_fd_at_offset64(length, fd,
                                                                            (int64_t)start);
    if (!response) {
        close(fd);
        return respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, PKGSTORE_ENOMEM,
                             "cannot create the response");
    }
    add_cache_headers(response, etag);
    MHD_add_response_header(response, "Content-Type", "application/octet-stream");
    MHD_add_response_header(response, "Accept-Ranges", "bytes");
    if (zstd) {
        MHD_add_response_header(response, "Content-Encoding", "zstd");
    } else {
        /* Repr-Digest is the digest of the representation: the blob's own
         * bytes; for the zstd representation we would have to hash the copy. */
        char b64[48], repr[64]; /* 32 bytes: 44 characters and a NUL */
        EVP_EncodeBlock((unsigned char *)b64, digest.bytes, (int)sizeof digest.bytes);
        snprintf(repr, sizeof repr, "sha-256=:%s:", b64);
        MHD_add_response_header(response, "Repr-Digest", repr);
    }
    MHD_add_response_header(response, "X-Pkgstore-Digest", digest_str);
    unsigned int status = MHD_HTTP_OK;
    if (range_result == RANGE_OK) {
        char content_range[96];
        snprintf(content_range, sizeof content_range, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                 start, start + length - 1, size);
        MHD_add_response_header(response, "Content-Range", content_range);
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    req->response_bytes = length;
    return queue_response(conn, req, status, response);
}
