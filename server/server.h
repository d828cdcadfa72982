/*
 * server/server.h - private declarations shared by pkgstored's files.
 *
 * pkgstored is an HTTP adapter: libmicrohttpd parses requests, these files
 * route them, check tokens and translate between JSON and libpkgstore
 * calls. Nothing here decides what a package, a policy or an offer is.
 */
#ifndef PKGSTORED_SERVER_H
#define PKGSTORED_SERVER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <microhttpd.h>

#include "pkgstore.h"
#include "pkgstore/manifest.h"
#include "pkgstore/platform.h"
#include "pkgstore/policy.h"
#include "pkgstore/registry.h"
#include "pkgstore/store.h"
#include "pkgstore/version.h"

#define SERVER_NAME "pkgstored"

/* ---------------------------------------------------------------- logging */

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern enum log_level log_threshold;

/* One structured line on stderr: "ts=... level=... msg=... <kv>".
 * kv_fmt builds the key=value part; pass strings that come from clients
 * through log_quote() first. */
void log_msg(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quote s for a log value (escapes quotes, backslashes and control bytes;
 * truncates to fit). Returns buf. */
const char *log_quote(char *buf, size_t size, const char *s);

int log_level_parse(enum log_level *out, const char *str);

/* ---------------------------------------------------------------- tokens */

enum role { ROLE_NONE = 0, ROLE_AGENT = 1, ROLE_METRICS = 2, ROLE_ADMIN = 3 };

typedef struct token_set token_set;

/* Load "ROLE TOKEN" lines from path (roles: admin, agent, metrics). */
int tokens_load_file(token_set **out, const char *path, char *err, size_t err_size);

/* Load <store>.admin-token and <store>.agent-token, creating them (mode
 * 0600, random) when neither exists. *created is set to 1 when created. */
int tokens_load_default(token_set **out, const char *store_path, int *created,
                        char *admin_path, char *agent_path, size_t path_size, char *err,
                        size_t err_size);

/* The role of a presented token, compared in constant time against every
 * known token; ROLE_NONE when it matches none. */
enum role tokens_check(const token_set *set, const char *token, size_t len);

size_t tokens_count(const token_set *set);
void tokens_free(token_set *set);

/* ---------------------------------------------------------------- routes */

enum route {
    ROUTE_OTHER = 0,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_BLOBS,           /* /v1/blobs */
    ROUTE_BLOB,            /* /v1/blobs/{digest} */
    ROUTE_PACKAGES,        /* /v1/packages */
    ROUTE_PACKAGE,         /* /v1/packages/{name} */
    ROUTE_PACKAGE_VERSION, /* /v1/packages/{name}/{version} */
    ROUTE_POLICIES,        /* /v1/policies */
    ROUTE_POLICY,          /* /v1/policies/{name} */
    ROUTE_POLICY_RETRY,    /* /v1/policies/{name}/retry */
    ROUTE_HEARTBEAT,       /* /v1/agents/heartbeat */
    ROUTE_AGENTS,          /* /v1/agents */
    ROUTE_AGENT,           /* /v1/agents/{id} */
    ROUTE_COUNT
};

const char *route_label(enum route route);

/* ---------------------------------------------------------------- metrics */

void metrics_request(enum route route, unsigned int status);
void metrics_bytes_served(uint64_t bytes);
void metrics_upload(int ok, uint64_t bytes);
void metrics_heartbeat(void);
/* Walk (policy, status, count) for the node gauges (policies.c). */
void metrics_render_nodes(pkgstore_store *store,
                          void (*emit)(void *ctx, const char *policy, const char *status,
                                       uint64_t count),
                          void *ctx);
/* Render the Prometheus text exposition into a new string (free()). */
char *metrics_render(pkgstore_store *store, size_t *len_out);

/* ---------------------------------------------------------------- server state */

typedef struct server_config {
    const char *listen;      /* host:port */
    const char *store_path;
    const char *tokens_path; /* NULL: the default token files */
    const char *port_file;   /* write the bound port here once listening */
    uint64_t max_upload;     /* bytes; body cap for uploads */
    size_t max_json;         /* bytes; body cap for JSON requests */
    size_t max_header;       /* bytes; total request header cap */
    unsigned int threads;    /* 0: one per core */
    unsigned int heartbeat_interval_s;
    unsigned int shutdown_timeout_s;
    int zstd_copies;
    int no_fsync;
} server_config;

typedef struct server {
    server_config config;
    pkgstore_store *store;
    pkgstore_registry *registry;
    pkgstore_policy_db *policies;
    /* held by policy writes and package deletes: a delete's "no policy
     * references it" check stays true until the version is gone */
    pthread_mutex_t catalog_lock;
    token_set *tokens;
    atomic_long in_flight; /* requests between their first call and completion */
} server;

extern server g_server;

/* ---------------------------------------------------------------- requests */

#define PATH_SEGMENTS_MAX 5
#define PATH_SEGMENT_MAX 256

enum body_kind { BODY_NONE = 0, BODY_JSON, BODY_BLOB };

typedef struct request request;

/* A handler runs once the whole body is in (JSON routes) or consumed (blob
 * uploads) and must queue exactly one response. */
typedef enum MHD_Result (*route_handler)(struct MHD_Connection *conn, request *req);

struct request {
    enum route route;
    enum role role;
    char method[16];
    unsigned int status;       /* queued status, for metrics and the access log */
    uint64_t response_bytes;   /* body bytes planned for the response */
    uint64_t body_bytes;       /* body bytes received */
    int64_t content_length;    /* -1 when absent (chunked) */
    enum body_kind body_kind;
    route_handler handler;
    struct timespec started;

    /* decoded path segments; nseg of them */
    char seg[PATH_SEGMENTS_MAX][PATH_SEGMENT_MAX];
    int nseg;
    char path_for_log[160];

    /* JSON bodies */
    char *json;
    size_t json_len, json_cap;

    /* streaming blob bodies */
    pkgstore_store_writer *writer;
    int have_expected;
    pkgstore_digest expected;

    /* a failure found while the body was arriving: answered at the end */
    unsigned int fail_status;
    int fail_code;
    char fail_message[512];
    uint64_t discarded;

    /* one extra response header (WWW-Authenticate, Location) */
    const char *extra_header_name;
    const char *extra_header_value;
    char extra_header_buf[160];

    /* route-specific data (package upload parameters) */
    void *route_data;
    void (*route_data_free)(void *);
};

/* Responses. Each queues exactly one response and records the status. */
enum MHD_Result respond_json(struct MHD_Connection *conn, request *req, unsigned int status,
                             json_t *body /* stolen */);
enum MHD_Result respond_error(struct MHD_Connection *conn, request *req, unsigned int status,
                              int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Map a libpkgstore error code to its HTTP status, using the thread's
 * detail message (prefixed with context when given). */
enum MHD_Result respond_pkgstore_error(struct MHD_Connection *conn, request *req, int error,
                                       const char *context);
unsigned int http_status_for_error(int error);
enum MHD_Result queue_response(struct MHD_Connection *conn, request *req, unsigned int status,
                               struct MHD_Response *response);

/* Record a failure while a body is still arriving; it is answered once the
 * body is consumed (libmicrohttpd cannot answer mid-upload). */
void request_fail(request *req, unsigned int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Percent-decode a query argument into out (NUL and bad escapes refused).
 * Returns 1 if present and valid, 0 if absent, -1 if invalid. */
int query_arg(char *out, size_t size, struct MHD_Connection *conn, const char *key);

/* Handlers (blobs.c, packages.c, policies.c, agents.c, main.c) */
enum MHD_Result blob_upload_begin(struct MHD_Connection *conn, request *req);
enum MHD_Result blob_upload_finish(struct MHD_Connection *conn, request *req);
enum MHD_Result blob_download(struct MHD_Connection *conn, request *req);
/* Start a streaming write for req (used by blob and package uploads). */
int upload_open_writer(request *req);
/* Feed one chunk to the writer; records failures in req. */
void upload_feed(request *req, const char *data, size_t size);

enum MHD_Result package_upload_begin(struct MHD_Connection *conn, request *req);
enum MHD_Result package_upload_finish(struct MHD_Connection *conn, request *req);
enum MHD_Result packages_list(struct MHD_Connection *conn, request *req);
enum MHD_Result package_versions(struct MHD_Connection *conn, request *req);
enum MHD_Result package_manifest(struct MHD_Connection *conn, request *req);
enum MHD_Result package_delete(struct MHD_Connection *conn, request *req);

enum MHD_Result policy_put(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_get(struct MHD_Connection *conn, request *req);
enum MHD_Result policies_list(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_delete(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_retry(struct MHD_Connection *conn, request *req);
enum MHD_Result agent_heartbeat(struct MHD_Connection *conn, request *req);
enum MHD_Result agents_list(struct MHD_Connection *conn, request *req);
enum MHD_Result agent_get(struct MHD_Connection *conn, request *req);

/* The access-handler callback and its completion notice (http.c). */
enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe);
size_t http_unescape_none(void *cls, struct MHD_Connection *conn, char *uri);

#endif
