/*
 * The agent helper's HTTP client (libcurl): heartbeat POSTs, small GETs,
 * health probes and resumable blob downloads with a hard size cap. The
 * helper runs one request and exits; the resident agent stops it with a
 * signal when it must not wait any longer.
 */
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <curl/curl.h>

#define SMALL_BODY_MAX (4u << 20)

static const char *trusted_ca_file;
static const char *own_cert_file, *own_key_file;

int helper_http_init(const char *ca_file, const char *client_cert, const char *client_key)
{
    trusted_ca_file = ca_file && *ca_file ? ca_file : NULL;
    own_cert_file = client_cert && *client_cert ? client_cert : NULL;
    own_key_file = own_cert_file && client_key && *client_key ? client_key : NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return agent_error_set(PKGSTORE_ENET, "curl_global_init failed");
    return 0;
}

void helper_http_cleanup(void)
{
    curl_global_cleanup();
}

typedef struct membuf {
    char *data;
    size_t len;
    int too_big;
} membuf;

static size_t mem_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    membuf *buf = userdata;
    size_t n = size * nmemb;
    if (buf->len + n > SMALL_BODY_MAX) {
        buf->too_big = 1;
        return 0;
    }
    char *grown = realloc(buf->data, buf->len + n + 1);
    if (!grown)
        return 0;
    buf->data = grown;
    memcpy(buf->data + buf->len, ptr, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

static char node_header[300];

void helper_http_set_node(const char *node_id)
{
    size_t len = strlen(node_id);
    node_header[0] = '\0';
    if (len == 0 || len > 253)
        return;
    for (size_t i = 0; i < len; i++) {
        char c = node_id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return; /* never a header built from what could hold CR or LF */
    }
    snprintf(node_header, sizeof node_header, "X-Pkgstore-Node: %s", node_id);
}

static struct curl_slist *auth_headers(const char *token, struct curl_slist *list)
{
    if (token && token[0]) {
        char *line = agent_strdup_printf("Authorization: Bearer %s", token);
        if (line) {
            list = curl_slist_append(list, line);
            free(line);
        }
        if (node_header[0])
            list = curl_slist_append(list, node_header);
    }
    return list;
}

static CURL *easy_new(double timeout_s)
{
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (timeout_s > 0)
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_USERAGENT, AGENT_NAME "/" PKGSTORE_VERSION_STRING);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* The CA replaces the system's rather than adding to them. */
    if (trusted_ca_file) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, trusted_ca_file);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
    /* mutual TLS: the certificate whose CN is this node's id */
    if (own_cert_file) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, own_cert_file);
        curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(curl, CURLOPT_SSLKEY, own_key_file);
        curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
    }
    return curl;
}

/* "url: <what failed>: <libcurl's message><hint>" for a failed transfer:
 * the TLS failures an operator meets get words that say where to look. */
static int transfer_error(CURLcode res, const char *url, const char *errbuf)
{
    const char *message = errbuf[0] ? errbuf : curl_easy_strerror(res);
    switch (res) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return agent_error_set(PKGSTORE_ENET,
                               "%s: server certificate not trusted: %s (check server.ca_file and "
                               "the host name in server.url)",
                               url, message);
    case CURLE_SSL_CONNECT_ERROR:
        return agent_error_set(PKGSTORE_ENET,
                               "%s: TLS handshake failed: %s (does the server serve HTTPS on "
                               "that port?)",
                               url, message);
    case CURLE_SSL_CACERT_BADFILE:
        return agent_error_set(PKGSTORE_ENET, "%s: cannot use server.ca_file: %s", url, message);
    case CURLE_SSL_CERTPROBLEM:
        return agent_error_set(PKGSTORE_ENET,
                               "%s: cannot use server.client_cert and server.client_key: %s", url,
                               message);
    default:
        return agent_error_set(PKGSTORE_ENET, "%s: %s", url, message);
    }
}

static int perform(CURL *curl, const char *url, char *errbuf)
{
    CURLcode res = curl_easy_perform(curl);
    if (res == CURLE_OK)
        return 0;
    return transfer_error(res, url, errbuf);
}

/* One small request whose whole response body is kept in memory: a JSON
 * POST when body is not NULL, else a GET. */
int helper_http_request(char **response_out, long *status_out, const char *token,
                        const char *url, const char *body, double timeout_s)
{
    *response_out = NULL;
    *status_out = 0;
    CURL *curl = easy_new(timeout_s);
    if (!curl)
        return agent_error_set(PKGSTORE_ENOMEM, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    membuf buf = {0};
    struct curl_slist *headers = NULL;
    if (body != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = auth_headers(token, headers);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (body != NULL)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    int rc = perform(curl, url, errbuf);
    if (rc == 0) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status_out);
        *response_out = buf.data;
        buf.data = NULL;
    }
    free(buf.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return rc;
}

static size_t discard_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr; (void)userdata;
    return size * nmemb;
}

int helper_http_health(const char *url, double timeout_s, long *status_out)
{
    *status_out = 0;
    CURL *curl = curl_easy_init();
    if (!curl)
        return agent_error_set(PKGSTORE_ENOMEM, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_write);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode res = curl_easy_perform(curl);
    int rc = 0;
    if (res != CURLE_OK)
        rc = agent_error_set(PKGSTORE_ENET, "%s", errbuf[0] ? errbuf : curl_easy_strerror(res));
    else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status_out);
        if (*status_out != 200)
            rc = agent_error_set(PKGSTORE_ENET, "status %ld", *status_out);
    }
    curl_easy_cleanup(curl);
    return rc;
}

typedef struct download_sink {
    int fd;
    const char *path;     /* the part, for messages */
    uint64_t written;     /* bytes in the file, including a resumed prefix */
    uint64_t resumed;     /* the offset asked for with Range (0: none) */
    uint64_t max_size;
    long status;          /* checked on the first body byte */
    CURL *curl;
    int too_big;
    int io_error;
    int truncated;
    int bad_range;        /* a 206 whose Content-Range is not what was asked */
    char encoding[32];    /* the response's Content-Encoding, "" if none */
    char range[128];      /* the response's Content-Range, "" if none */
} download_sink;

/* Copy a header's value (after "name:") when the line is that header. */
static void header_value(char *out, size_t size, const char *line, size_t n, const char *name)
{
    size_t nlen = strlen(name);
    if (n <= nlen || strncasecmp(line, name, nlen) != 0)
        return;
    const char *v = line + nlen;
    size_t vlen = n - nlen;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    snprintf(out, size, "%.*s", (int)vlen, v);
}

static size_t header_line(char *buffer, size_t size, size_t nitems, void *userdata)
{
    download_sink *sink = userdata;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buffer, "HTTP/", 5) == 0) {
        /* a new response (after a redirect): forget the last one's headers */
        sink->encoding[0] = '\0';
        sink->range[0] = '\0';
    }
    header_value(sink->encoding, sizeof sink->encoding, buffer, n, "content-encoding:");
    header_value(sink->range, sizeof sink->range, buffer, n, "content-range:");
    return n;
}

/* A 206 must be the bytes asked for: from the resume offset to the end of
 * an artifact of the offered size. */
static int range_ok(const download_sink *sink)
{
    uint64_t start, end, total;
    if (helper_content_range_parse(&start, &end, &total, sink->range, strlen(sink->range)) < 0)
        return 0;
    return start == sink->resumed && end < sink->max_size &&
           (total == UINT64_MAX || total == sink->max_size);
}

static size_t file_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    download_sink *sink = userdata;
    size_t n = size * nmemb;
    if (!sink->status) {
        curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &sink->status);
        if (sink->status == 200 && sink->written > 0) {
            /* The server ignored our Range: start over. */
            if (ftruncate(sink->fd, 0) < 0 || lseek(sink->fd, 0, SEEK_SET) < 0) {
                sink->io_error = errno;
                return 0;
            }
            sink->written = 0;
            sink->truncated = 1;
        } else if (sink->status == 206 && (!sink->resumed || !range_ok(sink))) {
            sink->bad_range = 1;
            return 0;
        } else if (sink->status != 200 && sink->status != 206) {
            return n; /* an error body: not written, reported after */
        }
    }
    if (sink->status != 200 && sink->status != 206)
        return n;
    if (sink->written + n > sink->max_size) {
        sink->too_big = 1;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(sink->fd, ptr + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            sink->io_error = errno;
            return 0;
        }
        done += (size_t)w;
    }
    sink->written += n;
    return n;
}

/* One transfer into sink->fd from sink->written on; accept_zstd asks for
 * the server's zstd transfer copy (a fresh download only: a Range
 * addresses the identity encoding). */
static int transfer(download_sink *sink, const char *token, const char *url, int accept_zstd,
                    double stall_timeout_s, CURLcode *res_out)
{
    CURL *curl = easy_new(0);
    if (!curl)
        return agent_error_set(PKGSTORE_ENOMEM, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = auth_headers(token, NULL);
    char range[64];
    sink->curl = curl;
    sink->status = 0;
    sink->resumed = sink->written;
    sink->encoding[0] = sink->range[0] = '\0';
    if (sink->written > 0) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)sink->written);
        curl_easy_setopt(curl, CURLOPT_RANGE, range);
        curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "identity");
        agent_log("info", "msg=\"resuming download\" url=%s offset=%llu", url,
                  (unsigned long long)sink->written);
    } else {
        /* libcurl decodes zstd itself, so the file holds the real bytes. */
        curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, accept_zstd ? "zstd" : "identity");
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, file_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_line);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, sink);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    /* a redirect never leaves HTTPS for plain HTTP */
    if (!strncasecmp(url, "https://", 8))
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)(stall_timeout_s + 0.999));
    CURLcode res = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    *res_out = res;
    int rc = 0;
    if (sink->too_big)
        rc = agent_error_set(PKGSTORE_ELIMIT, "body grows past the offered size of %llu bytes",
                             (unsigned long long)sink->max_size);
    else if (sink->io_error)
        rc = agent_error_set(sink->io_error == ENOSPC || sink->io_error == EDQUOT ? PKGSTORE_ENOSPC
                                                                                  : PKGSTORE_EIO,
                             "%s: write: %s", sink->path, strerror(sink->io_error));
    else if (sink->bad_range)
        rc = agent_error_set(PKGSTORE_ENET, "%s: 206 with Content-Range '%s' for bytes %llu- of %llu",
                             url, sink->range, (unsigned long long)sink->resumed,
                             (unsigned long long)sink->max_size);
    else if (res != CURLE_OK)
        rc = transfer_error(res, url, errbuf);
    else if (status == 416 && sink->resumed > 0)
        rc = agent_error_set(PKGSTORE_ENET, "%s: range not satisfiable at offset %llu", url,
                             (unsigned long long)sink->resumed);
    else if (status != 200 && status != 206)
        rc = agent_error_set(PKGSTORE_ENET, "%s: HTTP status %ld", url, status);
    sink->status = status;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    sink->curl = NULL;
    return rc;
}

static int start_over(download_sink *sink, const char *part_path)
{
    if (ftruncate(sink->fd, 0) < 0 || lseek(sink->fd, 0, SEEK_SET) < 0)
        return agent_error_set(PKGSTORE_EIO, "%s: truncate: %s", part_path, strerror(errno));
    sink->written = 0;
    return 0;
}

/* Room for what is still to come (plus a margin for the journal), checked
 * before any byte is fetched: a download must not fill state_dir. A part
 * too big to finish is dropped, which may make room. */
#define SPACE_MARGIN (1u << 20)
static int check_space(download_sink *sink, const char *part_path)
{
    struct statvfs vfs;
    if (fstatvfs(sink->fd, &vfs) < 0)
        return 0; /* cannot tell: the write's ENOSPC will say */
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (avail >= sink->max_size - sink->written + SPACE_MARGIN)
        return 0;
    if (sink->written > 0) {
        avail += sink->written;
        if (start_over(sink, part_path) < 0)
            return PKGSTORE_EIO;
        if (avail >= sink->max_size + SPACE_MARGIN)
            return 0;
    }
    return agent_error_set(PKGSTORE_ENOSPC,
                           "%s: %llu bytes needed (and %u of margin), %llu available", part_path,
                           (unsigned long long)sink->max_size, SPACE_MARGIN,
                           (unsigned long long)avail);
}

int helper_http_download(const char *token, const char *url, const char *part_path,
                         uint64_t max_size, int exact_size, double stall_timeout_s,
                         uint64_t *size_out)
{
    *size_out = 0;
    int fd = open(part_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return agent_error_set(errno == ENOSPC ? PKGSTORE_ENOSPC : PKGSTORE_EIO, "%s: %s",
                               part_path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_END) < 0) {
        int err = errno;
        close(fd);
        return agent_error_set(PKGSTORE_EIO, "%s: %s", part_path, strerror(err));
    }
    download_sink sink = {.fd = fd, .path = part_path, .written = (uint64_t)st.st_size,
                          .max_size = max_size};
    int rc = 0;
    if (sink.written > max_size) /* a stale part of something else: start over */
        rc = start_over(&sink, part_path);
    if (rc == 0 && sink.written == max_size && max_size > 0) {
        close(fd);
        *size_out = max_size;
        return 0; /* complete already; verify decides */
    }
    if (rc == 0)
        rc = check_space(&sink, part_path);
    CURLcode res = CURLE_OK;
    int fresh = sink.written == 0;
    if (rc == 0)
        rc = transfer(&sink, token, url, exact_size, stall_timeout_s, &res);
    /* A damaged zstd transfer copy on the server (cut short, say) would
     * fail every attempt the same way: fetch the identity bytes at once. */
    if (fresh && !strcasecmp(sink.encoding, "zstd") && !sink.too_big && !sink.io_error &&
        (rc < 0 || sink.written != max_size)) {
        agent_log("warn", "msg=\"zstd transfer failed, downloading without encoding\" url=%s "
                          "bytes=%llu of=%llu error=\"%s\"",
                  url, (unsigned long long)sink.written, (unsigned long long)max_size,
                  rc < 0 ? agent_error() : "short body");
        sink.bad_range = 0;
        rc = start_over(&sink, part_path);
        if (rc == 0)
            rc = transfer(&sink, token, url, 0, stall_timeout_s, &res);
    }
    /* No fsync: a part torn by a power cut fails verification and is
     * fetched again; the installed copy is fsynced by the install module. */
    close(fd);
    if (rc == PKGSTORE_ENOSPC || sink.bad_range || (sink.status == 416 && sink.resumed > 0))
        unlink(part_path); /* what fills the disk, or useless: the next attempt starts over */
    *size_out = sink.written;
    if (rc == 0)
        agent_log("info", "msg=\"download finished\" url=%s status=%ld encoding=%s bytes=%llu",
                  url, sink.status, sink.encoding[0] ? sink.encoding : "identity",
                  (unsigned long long)sink.written);
    return rc;
}

/* ------------------------------------------------------------------ OpAMP */

typedef struct exchange_headers {
    char content_type[128];
    char retry_after[64];
} exchange_headers;

static size_t exchange_header_line(char *buffer, size_t size, size_t nitems, void *userdata)
{
    exchange_headers *h = userdata;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buffer, "HTTP/", 5) == 0) {
        h->content_type[0] = '\0';
        h->retry_after[0] = '\0';
    }
    header_value(h->content_type, sizeof h->content_type, buffer, n, "content-type:");
    header_value(h->retry_after, sizeof h->retry_after, buffer, n, "retry-after:");
    return n;
}

/* Retry-After in its delta-seconds form; an HTTP date (or nothing) is -1:
 * the caller's own backoff applies then. */
static double retry_after_seconds(const char *value)
{
    if (!value[0] || strspn(value, "0123456789") != strlen(value) || strlen(value) > 9)
        return -1;
    return (double)strtol(value, NULL, 10);
}

int helper_http_exchange(helper_exchange *out, const char *token, const char *url,
                         const void *body, size_t body_len, const char *content_type,
                         double timeout_s)
{
    memset(out, 0, sizeof *out);
    out->retry_after_s = -1;
    CURL *curl = easy_new(timeout_s);
    if (!curl)
        return agent_error_set(PKGSTORE_ENOMEM, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    membuf buf = {0};
    exchange_headers got = {{0}, {0}};
    char type_line[160];
    snprintf(type_line, sizeof type_line, "Content-Type: %s", content_type);
    struct curl_slist *headers = curl_slist_append(NULL, type_line);
    headers = auth_headers(token, headers);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body_len ? body : "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, exchange_header_line);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &got);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    int rc = perform(curl, url, errbuf);
    if (rc < 0 && buf.too_big)
        rc = agent_error_set(PKGSTORE_ELIMIT, "%s: response body over %u bytes", url,
                             SMALL_BODY_MAX);
    if (rc == 0) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
        out->body = buf.data;
        out->len = buf.len;
        buf.data = NULL;
        snprintf(out->content_type, sizeof out->content_type, "%s", got.content_type);
        out->retry_after_s = retry_after_seconds(got.retry_after);
    }
    free(buf.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return rc;
}

int helper_http_content_length(uint64_t *size_out, const char *token, const char *url,
                               double timeout_s)
{
    *size_out = 0;
    CURL *curl = easy_new(timeout_s);
    if (!curl)
        return agent_error_set(PKGSTORE_ENOMEM, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = auth_headers(token, NULL);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    int rc = perform(curl, url, errbuf);
    long status = 0;
    curl_off_t length = -1;
    if (rc == 0) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        if (status != 200)
            rc = agent_error_set(PKGSTORE_ENET, "%s: HEAD: HTTP %ld", url, status);
        else if (length <= 0)
            rc = agent_error_set(PKGSTORE_ENET, "%s: HEAD: no Content-Length", url);
        else
            *size_out = (uint64_t)length;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return rc;
}
