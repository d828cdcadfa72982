/*
 * server/http/console.c - the web console: its static files (the files
 * of ui/, compiled in as console_files[]) at /ui/, and the browser sessions that
 * let it call the API with a cookie instead of a bearer token.
 *
 * A session is made by POST /v1/session from an admin token. Its id is 256
 * random bits, sent only in an HttpOnly, SameSite=Strict cookie; its CSRF
 * token is 256 other random bits, given to the page in the JSON body and
 * required in X-CSRF-Token on every change the cookie authenticates.
 * Sessions live here in memory only (a restart signs everyone out), for an
 * absolute --session-ttl, at most --max-sessions of them: a sign-in past
 * the cap ends the oldest session. Ids are compared in constant time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>

#include "../server.h"
#include "console_files.h"

#define SESSION_ID_BYTES 32
#define SESSION_COOKIE "pkgstore_session"

/* ---------------------------------------------------------------- static files */

/* "\"" + 32 hex digits of the file's SHA-256 + "\"" */
#define FILE_ETAG_SIZE 35

static char (*file_etags)[FILE_ETAG_SIZE];
static pthread_once_t file_etags_once = PTHREAD_ONCE_INIT;

static void file_etags_compute(void)
{
    file_etags = calloc(console_file_count ? console_file_count : 1, sizeof *file_etags);
    if (!file_etags)
        return;
    for (size_t i = 0; i < console_file_count; i++) {
        pkgstore_digest digest;
        char hex[PKGSTORE_DIGEST_STR_SIZE];
        if (pkgstore_digest_buffer(&digest, console_files[i].data, console_files[i].size) < 0)
            continue; /* no ETag for it: served, never answered 304 */
        pkgstore_digest_format(hex, &digest);
        snprintf(file_etags[i], FILE_ETAG_SIZE, "\"%.32s\"", hex + 7);
    }
}

static const char *content_type(const char *name)
{
    static const struct {
        const char *suffix, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t n = strlen(types[i].suffix);
        if (len > n && strcmp(name + len - n, types[i].suffix) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

enum MHD_Result console_file_get(struct MHD_Connection *conn, request *req)
{
    if (req->nseg == 1) /* "/ui": the page's relative links need "/ui/" */
        return console_redirect(conn, req);
    const char *name = req->seg[1];
    size_t index = console_file_count;
    for (size_t i = 0; i < console_file_count; i++)
        if (strcmp(console_files[i].name, name) == 0)
            index = i;
    if (index == console_file_count)
        return respond_error(conn, req, MHD_HTTP_NOT_FOUND, PKGSTORE_ENOTFOUND,
                             "no console file %s", name);
    pthread_once(&file_etags_once, file_etags_compute);
    const char *etag = file_etags && file_etags[index][0] ? file_etags[index] : NULL;
    const char *listed = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    int not_modified = etag && listed && http_etag_listed(listed, etag, 1, 1);
    const console_file *file = &console_files[index];
    struct MHD_Response *response = MHD_create_response_from_buffer(
        not_modified ? 0 : file->size, (void *)file->data, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    if (!not_modified)
        MHD_add_response_header(response, "Content-Type", content_type(name));
    if (etag)
        MHD_add_response_header(response, "ETag", etag);
    /* kept, but asked about again each time: a new build shows at once */
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    if (!not_modified)
        req->response_bytes = file->size;
    return queue_response(conn, req, not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK,
                          response);
}

enum MHD_Result console_redirect(struct MHD_Connection *conn, request *req)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, "Location", "/ui/");
    MHD_add_response_header(response, "Cache-Control", "no-store");
    return queue_response(conn, req, MHD_HTTP_FOUND, response);
}

/* ---------------------------------------------------------------- sessions */

typedef struct session {
    int used;
    unsigned char id[SESSION_ID_BYTES];
    unsigned char csrf[SESSION_ID_BYTES];
    char token_id[24];        /* the signing-in token's id, for the audit log */
    struct timespec created;  /* CLOCK_BOOTTIME: the oldest goes first at the cap */
    struct timespec expires;  /* CLOCK_BOOTTIME: absolute, however busy */
    time_t expires_wall;      /* the same instant, told to the browser */
} session;

static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;
static session *sessions; /* g_server.config.max_sessions slots, made at the first sign-in */

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void session_clear(session *s)
{
    explicit_bzero(s, sizeof *s);
}

/* The live session whose id this is, or NULL; drops it when it expired.
 * Every slot is compared, in constant time. Called with the lock held. */
static session *session_find(const unsigned char id[SESSION_ID_BYTES])
{
    if (!sessions)
        return NULL;
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    session *found = NULL;
    for (unsigned int i = 0; i < g_server.config.max_sessions; i++) {
        session *s = &sessions[i];
        if (!s->used)
            continue;
        if (CRYPTO_memcmp(s->id, id, SESSION_ID_BYTES) == 0)
            found = s;
    }
    if (found && !ts_before(&now, &found->expires)) {
        session_clear(found);
        return NULL;
    }
    return found;
}

static void hex_encode(char *out, const unsigned char *bytes, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = '\0';
}

/* {"csrf","expires"} of a session. Called with the lock held. */
static json_t *session_json(const session *s)
{
    char csrf[2 * SESSION_ID_BYTES + 1], expires[32];
    struct tm tm;
    hex_encode(csrf, s->csrf, sizeof s->csrf);
    gmtime_r(&s->expires_wall, &tm);
    strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *body = json_pack("{s:s,s:s}", "csrf", csrf, "expires", expires);
    explicit_bzero(csrf, sizeof csrf);
    return body;
}

typedef struct cookie_scan {
    int seen;                             /* a pkgstore_session cookie was sent */
    unsigned char ids[4][SESSION_ID_BYTES]; /* the first four well-formed values */
    int nids;
} cookie_scan;

static enum MHD_Result cookie_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    cookie_scan *scan = cls;
    if (!key || strcmp(key, SESSION_COOKIE) != 0)
        return MHD_YES;
    scan->seen = 1;
    if (scan->nids < 4 && http_hex_id_parse(scan->ids[scan->nids], SESSION_ID_BYTES, value) == 0)
        scan->nids++;
    return MHD_YES;
}

int session_authenticate(struct MHD_Connection *conn, request *req)
{
    /* Every pkgstore_session cookie is tried, not only the first: a
     * sibling site may plant one beside ours (cookie tossing). */
    cookie_scan scan = {0};
    MHD_get_connection_values(conn, MHD_COOKIE_KIND, cookie_visit, &scan);
    if (!scan.seen)
        return 0;
    int found = -1;
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < scan.nids && found < 0; i++) {
        session *s = session_find(scan.ids[i]);
        if (s) {
            memcpy(req->session_id, s->id, SESSION_ID_BYTES);
            memcpy(req->session_csrf, s->csrf, SESSION_ID_BYTES);
            snprintf(req->token_id, sizeof req->token_id, "%s", s->token_id);
            found = 1;
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    explicit_bzero(&scan, sizeof scan);
    if (found < 0)
        return -1;
    req->by_session = 1;
    req->role = ROLE_ADMIN;
    return 1;
}

int session_csrf_ok(struct MHD_Connection *conn, const request *req)
{
    unsigned char presented[SESSION_ID_BYTES];
    const char *value = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
    int ok = http_hex_id_parse(presented, sizeof presented, value) == 0 &&
             CRYPTO_memcmp(presented, req->session_csrf, SESSION_ID_BYTES) == 0;
    explicit_bzero(presented, sizeof presented);
    return ok;
}

static void set_cookie(request *req, const char *id_hex, unsigned int max_age)
{
    snprintf(req->cookie_header, sizeof req->cookie_header,
             SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%u%s", id_hex,
             max_age, g_server.config.tls_cert ? "; Secure" : "");
    req->extra_header_name = "Set-Cookie";
    req->extra_header_value = req->cookie_header;
}

enum MHD_Result session_create(struct MHD_Connection *conn, request *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->json ? req->json : "", req->json_len, 0, &jerr);
    const char *token = NULL;
    if (!body || json_unpack(body, "{s:s}", "token", &token) < 0 || !*token) {
        json_decref(body);
        if (req->json)
            explicit_bzero(req->json, req->json_len);
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, PKGSTORE_EINVALID,
                             "body must be {\"token\":\"<admin token>\"}");
    }
    size_t token_len = strlen(token);
    enum role role = tokens_check(g_server.tokens, token, token_len);
    char token_id[24] = "";
    if (role == ROLE_ADMIN) {
        token_id_of(token_id, sizeof token_id, token, token_len);
    } else if (role == ROLE_NONE) {
        node_credential *node = credentials_check(token, token_len);
        if (node)
            role = ROLE_NODE;
        credentials_release(node);
    }
    json_decref(body); /* the token goes with it */
    explicit_bzero(req->json, req->json_len);
    if (role == ROLE_NONE)
        return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED, "unknown token");
    if (role != ROLE_ADMIN)
        return respond_error(conn, req, MHD_HTTP_FORBIDDEN, PKGSTORE_EDENIED,
                             "only an admin token may sign in to the console");

    session fresh = {.used = 1};
    if (getrandom(fresh.id, sizeof fresh.id, 0) != (ssize_t)sizeof fresh.id ||
        getrandom(fresh.csrf, sizeof fresh.csrf, 0) != (ssize_t)sizeof fresh.csrf) {
        session_clear(&fresh);
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_EIO,
                             "getrandom: %s", strerror(errno));
    }
    snprintf(fresh.token_id, sizeof fresh.token_id, "%s", token_id);
    clock_gettime(CLOCK_BOOTTIME, &fresh.created);
    fresh.expires = fresh.created;
    fresh.expires.tv_sec += g_server.config.session_ttl_s;
    fresh.expires_wall = time(NULL) + g_server.config.session_ttl_s;

    /* A session this browser already had ends: the new cookie replaces
     * it anyway, and it must not stay usable beside the new one. */
    cookie_scan scan = {0};
    MHD_get_connection_values(conn, MHD_COOKIE_KIND, cookie_visit, &scan);

    unsigned int max = g_server.config.max_sessions;
    json_t *reply = NULL;
    int evicted = 0;
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < scan.nids; i++) {
        session *old = session_find(scan.ids[i]);
        if (old)
            session_clear(old);
    }
    explicit_bzero(&scan, sizeof scan);
    if (!sessions)
        sessions = calloc(max, sizeof *sessions);
    if (sessions) {
        struct timespec now;
        clock_gettime(CLOCK_BOOTTIME, &now);
        session *slot = NULL, *oldest = NULL;
        for (unsigned int i = 0; i < max; i++) {
            session *s = &sessions[i];
            if (s->used && !ts_before(&now, &s->expires))
                session_clear(s);
            if (!s->used) {
                if (!slot)
                    slot = s;
            } else if (!oldest || ts_before(&s->created, &oldest->created)) {
                oldest = s;
            }
        }
        if (!slot) { /* at the cap: the oldest session ends */
            slot = oldest;
            session_clear(slot);
            evicted = 1;
        }
        *slot = fresh;
        reply = session_json(slot);
        if (!reply)
            session_clear(slot);
    }
    pthread_mutex_unlock(&sessions_lock);
    char id_hex[2 * SESSION_ID_BYTES + 1];
    hex_encode(id_hex, fresh.id, sizeof fresh.id);
    session_clear(&fresh);
    if (!reply) {
        explicit_bzero(id_hex, sizeof id_hex);
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, PKGSTORE_ENOMEM,
                             "out of memory");
    }
    if (evicted)
        log_msg(LOG_INFO, "console session evicted", "reason=max-sessions max=%u", max);
    log_msg(LOG_INFO, "console sign-in", "token=%s ttl_s=%u", token_id,
            g_server.config.session_ttl_s);
    set_cookie(req, id_hex, g_server.config.session_ttl_s);
    explicit_bzero(id_hex, sizeof id_hex);
    return respond_json(conn, req, MHD_HTTP_CREATED, reply);
}

enum MHD_Result session_get(struct MHD_Connection *conn, request *req)
{
    json_t *reply = NULL;
    pthread_mutex_lock(&sessions_lock);
    session *s = session_find(req->session_id);
    if (s)
        reply = session_json(s);
    pthread_mutex_unlock(&sessions_lock);
    if (!s)
        return respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, PKGSTORE_EDENIED,
                             "the console session ended");
    return respond_json(conn, req, MHD_HTTP_OK, reply);
}

enum MHD_Result session_delete(struct MHD_Connection *conn, request *req)
{
    pthread_mutex_lock(&sessions_lock);
    session *s = session_find(req->session_id);
    if (s)
        session_clear(s);
    pthread_mutex_unlock(&sessions_lock);
    log_msg(LOG_INFO, "console sign-out", "token=%s", req->token_id);
    set_cookie(req, "", 0);
    return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:b}", "deleted", 1));
}

unsigned int session_count(void)
{
    unsigned int live = 0;
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    pthread_mutex_lock(&sessions_lock);
    for (unsigned int i = 0; sessions && i < g_server.config.max_sessions; i++)
        live += sessions[i].used && ts_before(&now, &sessions[i].expires);
    pthread_mutex_unlock(&sessions_lock);
    return live;
}

void console_free(void)
{
    pthread_mutex_lock(&sessions_lock);
    if (sessions)
        explicit_bzero(sessions, (size_t)g_server.config.max_sessions * sizeof *sessions);
    free(sessions);
    sessions = NULL;
    pthread_mutex_unlock(&sessions_lock);
    free(file_etags);
    file_etags = NULL;
}
