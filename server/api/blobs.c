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
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h> /* EVP_EncodeBlock: base64 for Repr-Digest */

#include "../server.h"

/* The declared size is not passed to the writer: it would fallocate() it
 * at once, and a client that declares 2 GiB and sends nothing would hold
 * 2 GiB of disk for as long as the connection lives. The file grows as the
 * bytes come; first_call() refused a declared size over the free space, and
 * libmicrohttpd delivers exactly Content-Length bytes or ends the request
 * (upload_check_size() checks it once more). */
int upload_open_writer(request *req)
{
    return pkgstore_store_writer_open(&req->writer, g_server.store,
                                      req->have_expected ? &req->expected : NULL, -1);
}

int upload_check_size(struct MHD_Connection *conn, request *req, enum MHD_Result *result)
{
    if (req->content_length < 0 || req->body_bytes == (uint64_t)req->content_length)
        return 0;
    pkgstore_store_writer_abort(req->writer);
    req->writer = NULL;
    metrics_upload(0, 0);
    *result = respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_ESIZE_MISMATCH,
                            "upload: Content-Length is %" PRId64 " but %" PRIu64
                            " bytes arrived",
                            req->content_length, req->body_bytes);
    return -1;
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
    enum MHD_Result result;
    if (upload_check_size(conn, req, &result) < 0)
        return result;
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


/* Over HTTPS a file response cannot use sendfile(): libmicrohttpd reads it
 * through a buffer and hands it to GnuTLS, and its fd responses read 4 KiB
 * at a time, each a TLS record and an event loop turn of its own. A blob
 * then comes from this reader, TLS_READ_BLOCK bytes at a time. */
#define TLS_READ_BLOCK ((size_t)64 << 10)

typedef struct blob_reader {
    int fd;
    uint64_t start;
} blob_reader;

static ssize_t blob_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    blob_reader *reader = cls;
    ssize_t n;
    do
        n = pread(reader->fd, buf, max, (off_t)(reader->start + pos));
    while (n < 0 && errno == EINTR);
    /* a blob shorter than its size (it never is) ends the connection */
    return n > 0 ? n : (ssize_t)MHD_CONTENT_READER_END_WITH_ERROR;
}

static void blob_reader_free(void *cls)
{
    blob_reader *reader = cls;
    close(reader->fd);
    free(reader);
}

/* The response for length bytes of fd from start; it owns fd once made
 * (NULL: fd is still the caller's). Over plain HTTP libmicrohttpd sends
 * from the fd with sendfile(). */
static struct MHD_Response *blob_response(uint64_t length, int fd, uint64_t start)
{
    if (!g_server.config.tls_cert)
        return MHD_create_response_from_fd_at_offset64(length, fd, (int64_t)start);
    blob_reader *reader = malloc(sizeof *reader);
    if (!reader)
        return NULL;
    reader->fd = fd;
    reader->start = start;
    struct MHD_Response *response = MHD_create_response_from_callback(
        length, length < TLS_READ_BLOCK ? (size_t)(length ? length : 1) : TLS_READ_BLOCK,
        blob_read, reader, blob_reader_free);
    if (!response)
        free(reader);
    return response;
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
    if (http_accepts_zstd(accept) && pkgstore_store_zstd_open(&fd, &size, g_server.store, &digest) == 0)
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
    if (http_etag_listed(if_none_match, etag, 1, 1) ||
        http_etag_listed(if_none_match, other_etag, 0, 1)) {
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
    if (range && if_range && !http_etag_listed(if_range, etag, 0, 0))
        range = NULL; /* the client's copy is another representation: send it all */
    enum http_range range_result = http_parse_range(range, size, &start, &length);
    if (range_result == HTTP_RANGE_UNSATISFIABLE) {
        close(fd);
        snprintf(req->extra_header_buf, sizeof req->extra_header_buf, "bytes */%" PRIu64, size);
        req->extra_header_name = "Content-Range";
        req->extra_header_value = req->extra_header_buf;
        return respond_error(conn, req, MHD_HTTP_RANGE_NOT_SATISFIABLE, PKGSTORE_EINVALID,
                             "range '%.64s' is outside the %" PRIu64 " bytes of %s", range, size,
                             digest_str);
    }

    struct MHD_Response *response = blob_response(length, fd, start);
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
    if (range_result == HTTP_RANGE_OK) {
        char content_range[96];
        snprintf(content_range, sizeof content_range, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                 start, start + length - 1, size);
        MHD_add_response_header(response, "Content-Range", content_range);
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    req->response_bytes = length;
    return queue_response(conn, req, status, response);
}
