/*
 * tools/httpclient.c - libcurl requests to pkgstored with a bearer token,
 * JSON error bodies turned into one-line messages, and a progress bar for
 * uploads on a terminal.
 */
#include "httpclient.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pkgstore/digest.h"
#include "../common/tokenfile.h"
#include "cli.h"

int http_read_token(char *out, size_t size, const char *path, const char *prog)
{
    char err[600];
    int rc = token_file_first(out, size, path, err, sizeof err);
    if (rc == 1)
        snprintf(err, sizeof err, "%s: %s", path, strerror(ENOENT));
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    return 0;
}

int http_tool_options_parse(http_tool_options *out, int argc, char **argv,
                            void (*usage)(FILE *out))
{
    enum { O_SERVER = 256, O_TOKEN, O_CACERT, O_JSON, O_HELP, O_VERSION };
    static const struct option options[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"cacert", required_argument, NULL, O_CACERT},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    int opt;
    memset(out, 0, sizeof *out);
    out->server = getenv("PKGSTORE_SERVER");
    opterr = 0;
    /* '+': stop at the command; its own options follow it */
    while ((opt = getopt_long(argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
        case O_SERVER: out->server = optarg; break;
        case O_TOKEN: out->token_file = optarg; break;
        case O_CACERT: out->cacert = optarg; break;
        case O_JSON: out->json = 1; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION: return cli_version();
        default: return cli_option_error(opt, argv);
        }
    }
    return -1;
}

int http_client_init(http_client *client, const char *prog, const char *server,
                     const char *token_file, const char *ca_file)
{
    memset(client, 0, sizeof *client);
    client->prog = prog;
    client->timeout_s = 60;
    if (!server || !*server) {
        fprintf(stderr, "%s: --server URL is required (or set PKGSTORE_SERVER)\n", prog);
        return -1;
    }
    snprintf(client->base_url, sizeof client->base_url, "%s", server);
    size_t len = strlen(client->base_url);
    while (len > 0 && client->base_url[len - 1] == '/')
        client->base_url[--len] = '\0';
    if (strncmp(client->base_url, "http://", 7) && strncmp(client->base_url, "https://", 8)) {
        fprintf(stderr, "%s: %s: the server URL must start with https:// or http://\n", prog,
                client->base_url);
        return -1;
    }
    if (!ca_file || !*ca_file)
        ca_file = getenv("PKGSTORE_CACERT");
    if (ca_file && *ca_file) {
        if (access(ca_file, R_OK) < 0) {
            fprintf(stderr, "%s: %s: cannot read the CA file: %s\n", prog, ca_file,
                    strerror(errno));
            return -1;
        }
        snprintf(client->ca_file, sizeof client->ca_file, "%s", ca_file);
    }

    char token[520] = "";
    if (!token_file || !*token_file)
        token_file = getenv("PKGSTORE_TOKEN_FILE");
    if (token_file && *token_file) {
        if (http_read_token(token, sizeof token, token_file, prog) < 0)
            return -1;
    } else if (getenv("PKGSTORE_TOKEN") && *getenv("PKGSTORE_TOKEN")) {
        snprintf(token, sizeof token, "%s", getenv("PKGSTORE_TOKEN"));
    } else {
        fprintf(stderr,
                "%s: no token: pass --token-file FILE or set PKGSTORE_TOKEN_FILE "
                "(pkgstored writes STORE.admin-token on first start)\n",
                prog);
        return -1;
    }
    snprintf(client->auth_header, sizeof client->auth_header, "Authorization: Bearer %s", token);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

typedef struct sink {
    char *data;
    size_t len, cap;
} sink;

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *data = realloc(s->data, cap);
        if (!data)
            return 0;
        s->data = data;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

static CURL *new_handle(const http_client *client, const char *path, struct curl_slist **headers,
                        sink *body_sink)
{
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    char url[4096];
    snprintf(url, sizeof url, "%s%s", client->base_url, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    *headers = curl_slist_append(*headers, client->auth_header);
    *headers = curl_slist_append(*headers, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body_sink);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* libcurl verifies the peer and its host name by default; --cacert
     * replaces the system's CAs rather than adding to them. */
    if (client->ca_file[0]) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, client->ca_file);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "pkgstore-tools/" PKGSTORE_VERSION_STRING);
    if (client->timeout_s > 0)
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, client->timeout_s);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    return curl;
}

/* Words around libcurl's message for the TLS failures an operator meets:
 * an untrusted certificate and a server that does not speak TLS. */
static const char *tls_hint_prefix(CURLcode code)
{
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION: return "server certificate not trusted: ";
    case CURLE_SSL_CONNECT_ERROR: return "TLS handshake failed: ";
    case CURLE_SSL_CACERT_BADFILE: return "cannot use the CA file: ";
    default: return "";
    }
}

static const char *tls_hint_suffix(CURLcode code)
{
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return " (check --cacert or PKGSTORE_CACERT, and the host name in --server)";
    case CURLE_SSL_CONNECT_ERROR: return " (does the server serve HTTPS on that port?)";
    default: return "";
    }
}

static int finish(http_reply *reply, CURL *curl, struct curl_slist *headers, sink *body_sink,
                  char *errbuf)
{
    CURLcode code = curl_easy_perform(curl);
    int result = 0;
    if (code != CURLE_OK) {
        snprintf(reply->error, sizeof reply->error, "%s%s%s", tls_hint_prefix(code),
                 *errbuf ? errbuf : curl_easy_strerror(code), tls_hint_suffix(code));
        result = -1;
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    }
    reply->body = body_sink->data ? body_sink->data : calloc(1, 1);
    reply->len = body_sink->len;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return result;
}

int http_request(http_reply *reply, const http_client *client, const char *method,
                 const char *path, const char *body)
{
    memset(reply, 0, sizeof *reply);
    struct curl_slist *headers = NULL;
    sink body_sink = {0};
    CURL *curl = new_handle(client, path, &headers, &body_sink);
    if (!curl) {
        snprintf(reply->error, sizeof reply->error, "cannot create a curl handle");
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    return finish(reply, curl, headers, &body_sink, errbuf);
}

typedef struct upload_state {
    FILE *file;
    struct pkgstore_digest_ctx *digest;
    int read_error;
    int progress;
    struct timespec last;
    struct timespec start;
} upload_state;

static size_t upload_read(char *buffer, size_t size, size_t nitems, void *userdata)
{
    upload_state *state = userdata;
    size_t n = fread(buffer, 1, size * nitems, state->file);
    if (n == 0 && ferror(state->file)) {
        state->read_error = errno ? errno : EIO;
        return CURL_READFUNC_ABORT;
    }
    if (n && state->digest)
        pkgstore_digest_ctx_update((pkgstore_digest_ctx *)state->digest, buffer, n);
    return n;
}

static void human(char *out, size_t size, double bytes)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

static int upload_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                           curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    upload_state *state = userdata;
    if (!state->progress || ultotal <= 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double since = (double)(now.tv_sec - state->last.tv_sec) +
                   (double)(now.tv_nsec - state->last.tv_nsec) / 1e9;
    if (since < 0.1 && ulnow < ultotal)
        return 0;
    state->last = now;
    double elapsed = (double)(now.tv_sec - state->start.tv_sec) +
                     (double)(now.tv_nsec - state->start.tv_nsec) / 1e9;
    double fraction = (double)ulnow / (double)ultotal;
    int width = 30, filled = (int)(fraction * width);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    char done[32], total[32], rate[32];
    human(done, sizeof done, (double)ulnow);
    human(total, sizeof total, (double)ultotal);
    human(rate, sizeof rate, elapsed > 0 ? (double)ulnow / elapsed : 0);
    fprintf(stderr, "\r[%s] %3.0f%% %s / %s  %s/s ", bar, fraction * 100, done, total, rate);
    return 0;
}

int http_upload(http_reply *reply, const http_client *client, const char *path, FILE *file,
                uint64_t size, int progress, struct pkgstore_digest_ctx *digest)
{
    memset(reply, 0, sizeof *reply);
    struct curl_slist *headers = NULL;
    sink body_sink = {0};
    CURL *curl = new_handle(client, path, &headers, &body_sink);
    if (!curl) {
        snprintf(reply->error, sizeof reply->error, "cannot create a curl handle");
        return -1;
    }
    upload_state state = {file, digest, 0, progress, {0, 0}, {0, 0}};
    clock_gettime(CLOCK_MONOTONIC, &state.start);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &state);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 0L);
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (progress) {
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, upload_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &state);
    }
    int result = finish(reply, curl, headers, &body_sink, errbuf);
    if (progress)
        fputc('\n', stderr);
    if (state.read_error) {
        snprintf(reply->error, sizeof reply->error, "read: %s", strerror(state.read_error));
        return -1;
    }
    return result;
}

int http_reply_fail(http_reply *reply, const char *object)
{
    cli_error(object, "%s", http_reply_error(reply));
    http_reply_free(reply);
    return 1;
}

int http_json_request(json_t **out, const http_client *client, const char *method,
                      const char *path, const char *body, int json_out, const char *object)
{
    http_reply reply;
    *out = NULL;
    if (http_request(&reply, client, method, path, body) < 0 || reply.status != 200)
        return http_reply_fail(&reply, object);
    if (json_out) {
        printf("%s\n", reply.body);
        http_reply_free(&reply);
        return 0;
    }
    json_error_t error;
    *out = json_loads(reply.body, 0, &error);
    http_reply_free(&reply);
    if (!*out) {
        cli_error(object, "the server's answer is not JSON: %s", error.text);
        return 1;
    }
    return 0;
}

const char *http_reply_error(const http_reply *reply)
{
    static char message[1024];
    if (reply->status == 0)
        return reply->error;
    json_t *root = reply->body ? json_loads(reply->body, 0, NULL) : NULL;
    json_t *error = root ? json_object_get(root, "error") : NULL;
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *text = json_string_value(json_object_get(error, "message"));
    if (code && text)
        snprintf(message, sizeof message, "%s (HTTP %ld %s)", text, reply->status, code);
    else
        snprintf(message, sizeof message, "HTTP %ld: %.200s", reply->status,
                 reply->body ? reply->body : "");
    json_decref(root);
    return message;
}

void http_reply_free(http_reply *reply)
{
    free(reply->body);
    reply->body = NULL;
}

char *http_escape(const char *s)
{
    char *escaped = curl_easy_escape(NULL, s, 0);
    if (!escaped)
        return NULL;
    char *copy = strdup(escaped);
    curl_free(escaped);
    return copy;
}
