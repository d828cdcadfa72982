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

#include "fleet/fleet.h"
#include "http/parse.h"
#include "opamp/opamp.h"

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

/* ROLE_NODE: a per-node credential (credentials.c); ROLE_AGENT: the
 * fleet-wide agent token, accepted only with --allow-shared-agent-token. */
enum role { ROLE_NONE = 0, ROLE_AGENT = 1, ROLE_METRICS = 2, ROLE_ADMIN = 3, ROLE_NODE = 4 };

typedef struct token_set token_set;

/* Load "ROLE TOKEN" lines from path (roles: admin, agent, metrics). */
int tokens_load_file(token_set **out, const char *path, char *err, size_t err_size);

/* Load <store>.admin-token and, with with_agent, <store>.agent-token,
 * creating each (mode 0600, random) that does not exist. *created is set
 * to 1 when one was created. Each file must be private
 * (tokens_file_private()). */
int tokens_load_default(token_set **out, const char *store_path, int with_agent, int *created,
                        char *admin_path, char *agent_path, size_t path_size, char *err,
                        size_t err_size);

/* The role of a presented token, compared in constant time against every
 * known token; ROLE_NONE when it matches none. */
enum role tokens_check(const token_set *set, const char *token, size_t len);

size_t tokens_count(const token_set *set);
void tokens_free(token_set *set);
/* ---------------------------------------------------------------- start-up */

struct server_config;
/* Load the token files and the node credentials that cfg names into
 * g_server.tokens and the credential set, and log what is in use. -1 with
 * the reason in err (a file not private, unreadable or malformed; agent
 * lines in --tokens without --allow-shared-agent-token). */
int tokens_open(const struct server_config *cfg, char *err, size_t err_size);

/* Drop the tokens of role from set; returns how many were dropped. */
size_t tokens_drop_role(token_set *set, enum role role);

/* Is the token file at path private to this process's user: owned by the
 * effective uid, with no permission bits for group or others? 0 yes, 1
 * when it does not exist, -1 with the reason and the fix in err. */
int tokens_file_private(const char *path, char *err, size_t err_size);

/* ---------------------------------------------------------------- node credentials */

/* A per-node credential (credentials.c): reference-counted, so a request
 * keeps its own while a revoke removes it from the set. */
typedef struct node_credential node_credential;

#define CREDENTIAL_ID_LEN 16 /* hex digits of the hash that name a credential */

/* Load the credentials file at path (absent: none yet; it is created on the
 * first issue). It must be private (tokens_file_private()). */
int credentials_load(const char *path, size_t *count_out, char *err, size_t err_size);
void credentials_unload(void);
/* The credential whose token this is, with a reference (release it), or
 * NULL. */
node_credential *credentials_check(const char *token, size_t len);
void credentials_release(node_credential *cred);
/* The newest credential issued for node, with a reference, or NULL: what a
 * verified client certificate for node speaks with (tls_client_node()). */
node_credential *credentials_for_node(const char *node);
/* The node a connection's client certificate names (tls.c): 1 with its
 * common name in node once the chain verifies against --tls-client-ca
 * (dates and purpose included); 0 when no certificate was presented or no
 * client CA is loaded; -1 with the reason in why for a certificate refused. */
int tls_client_node(struct MHD_Connection *conn, char *node, size_t node_size, char *why,
                    size_t why_size);
const char *credentials_node(const node_credential *cred);
const char *credentials_id(const node_credential *cred);
/* The fleet's view of cred; borrows from cred. */
void credentials_identity(fleet_identity *out, const node_credential *cred);
/* {"credentials":[{"id","node","created","labels","self_labels"}]}, no
 * hashes; NULL when out of memory. */
json_t *credentials_list(void);
/* Issue a credential for node with pinned labels (object or NULL) and the
 * reported label keys kept (array of keys or "*", or NULL); the token goes
 * to token_out (shown once, never stored), the record to *record_out.
 * PKGSTORE_EINVALID, EIO or ENOMEM with err. */
int credentials_issue(json_t **record_out, char *token_out, size_t token_size, const char *node,
                      json_t *labels, json_t *self_labels, char *err, size_t err_size);
/* Revoke the credential whose id starts with id (4 or more hex digits):
 * PKGSTORE_ENOTFOUND, EINVALID (ambiguous) or EIO with err. */
int credentials_revoke(json_t **record_out, const char *id, char *err, size_t err_size);

/* ---------------------------------------------------------------- trust */

/* Roots and revocations kept in dir (trust.c; docs/trust.md). pinned_path:
 * --trust-root (may be NULL); require: --require-signatures. -1 with err. */
int trust_open(const char *dir, const char *pinned_path, int require, char *err,
               size_t err_size);
void trust_close(void);
/* A whole file of at most max bytes into *out, NUL-terminated (free()),
 * its length in *len_out (trust.c). -1 with errno (EFBIG past max). */
int read_whole_file(char **out, size_t *len_out, const char *path, size_t max);
/* The newest root's version (0: none) and the revocation generation. */
void trust_summary(uint64_t *root_version, uint64_t *generation);
/* A copy (free()) of root.json version (0: the newest): PKGSTORE_ENOTFOUND,
 * PKGSTORE_ENOMEM. */
int trust_root_get(char **out, size_t *len_out, uint64_t version);
/* Add a root (first: self-signed; then a valid rotation of the newest):
 * PKGSTORE_EINVALID and the parsers' codes, PKGSTORE_ECONFLICT, EIO, ENOSPC,
 * with the reason in err. *untrusted_out is 1 when the ECONFLICT is a
 * root whose signatures do not count (not a valid rotation), else 0. */
int trust_root_put(uint64_t *version_out, int *untrusted_out, const char *body, size_t len,
                   char *err, size_t err_size);
/* Add a revocation (signed to threshold by the newest root, if any):
 * *record_out {"name","version","generation"}, *changed_out 0 when the same
 * statement was held. PKGSTORE_EDENIED, ECONFLICT (older than the one held),
 * EINVALID, EIO, ENOSPC with err. */
int trust_revocation_put(json_t **record_out, int *changed_out, const char *body, size_t len,
                         char *err, size_t err_size);
/* {"generation":G,"revocations":[...]}, NULL when out of memory. */
json_t *trust_revocations_json(void);
/* --require-signatures given? */
int trust_require_signatures(void);
/* With --require-signatures: a policy PUT takes trust_policy_lock() from
 * trust_check_signed() to its write, an upload trust_upload_lock() from
 * its trust_version_targeted() to its registry write; each ends with
 * trust_signed_unlock(). No-ops without --require-signatures. */
void trust_policy_lock(void);
void trust_upload_lock(void);
void trust_signed_unlock(void);
/* 0 when name version is signed to threshold by the enforcing root (the
 * pinned root, moved along valid rotations); else PKGSTORE_ECONFLICT (or
 * the registry's error, e.g. ENOTFOUND) with the reason in err. */
int trust_check_signed(const char *name, const char *version, char *err, size_t err_size);
/* For the console: how the count stored signatures (list) of the manifest
 * text stand against the root the server judges by (the enforcing root when
 * --trust-root is given, else the newest stored root, unverified), as
 * {"root_version":N|null,"root_pinned":B,"threshold":T|null,"valid":K,
 *  "signed":B,"revoked":B,"states":[...]}: one state per entry of list, in
 * its order ("valid", "bad signature", "unknown key", "malformed", or
 * "unchecked" without a root). NULL when out of memory. */
json_t *trust_signatures_check(const char *name, const char *version, const char *text,
                               size_t len, const pkgstore_trust_stored_signature *list,
                               size_t count);
/* 1 when a policy targets name version (its name into policy_out), 0 when
 * none does, < 0 with the reason in policy_out. */
int trust_version_targeted(char *policy_out, size_t policy_size, const char *name,
                           const char *version);

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
    ROUTE_CREDENTIALS,     /* /v1/credentials */
    ROUTE_CREDENTIAL,      /* /v1/credentials/{id} */
    ROUTE_SIGNATURES,      /* /v1/packages/{name}/{version}/signatures */
    ROUTE_TRUST_ROOT,      /* /v1/trust/root, /v1/trust/root/{version} */
    ROUTE_REVOCATIONS,     /* /v1/trust/revocations */
    ROUTE_POLICY_ROLLOUT,  /* /v1/policies/{name}/pause|resume|abort */
    ROUTE_AUDIT,           /* /v1/audit */
    ROUTE_ROOT,            /* / (redirects to /ui/) */
    ROUTE_UI,              /* /ui, /ui/ and /ui/{file}: the web console */
    ROUTE_SESSION,         /* /v1/session: the console's sign-in */
    ROUTE_OPAMP,           /* /v1/opamp: OpAMP over HTTP (api/opamp.c) */
    ROUTE_COUNT
};

const char *route_label(enum route route);

/* ---------------------------------------------------------------- metrics */

void metrics_request(enum route route, unsigned int status);
void metrics_bytes_served(uint64_t bytes);
void metrics_upload(int ok, uint64_t bytes);
void metrics_heartbeat(void);
/* A node credential spoke for another node (403). */
void metrics_node_mismatch(void);
/* A request without a token whose client certificate was refused (401). */
void metrics_client_certificate_refused(void);
/* Trust documents refused on PUT (api/trust.c), by document and reason
 * class (docs/api.md, "GET /metrics"). */
enum trust_document { TRUST_DOC_ROOT, TRUST_DOC_REVOCATION, TRUST_DOC_SIGNATURE, TRUST_DOC_COUNT };
enum trust_refusal {
    TRUST_REFUSED_MALFORMED, /* not a document of that kind, not canonical, too large */
    TRUST_REFUSED_UNTRUSTED, /* its signatures do not reach the threshold (a rotation too) */
    TRUST_REFUSED_CONFLICT,  /* version held or older; another manifest than the version's */
    TRUST_REFUSED_NOT_FOUND, /* a signature for a version that does not exist */
    TRUST_REFUSED_ERROR,     /* the server's own failure: disk, memory, lock */
    TRUST_REFUSED_COUNT
};
/* The class of a refusal's error code (an untrusted root is ECONFLICT
 * over HTTP: trust_root_put() tells that one apart). */
enum trust_refusal trust_refusal_of(int error);
void metrics_trust_refused(enum trust_document document, enum trust_refusal reason);
/* --require-signatures refused a policy (version not signed to threshold)
 * or an upload (to a version a policy targets). */
enum unsigned_refusal { UNSIGNED_REFUSED_POLICY, UNSIGNED_REFUSED_UPLOAD, UNSIGNED_REFUSED_COUNT };
void metrics_unsigned_refused(enum unsigned_refusal what);
/* Walk (policy, status, count) for the node gauges (api/agents.c). */
void metrics_render_nodes(void (*emit)(void *ctx, const char *policy, const char *status,
                                       uint64_t count),
                          void *ctx);
/* The fleet's trust gauges against the server's roots and revocations
 * (api/agents.c); -1 without a fleet. */
int metrics_trust_stats(fleet_trust_stats *out);
/* Render the Prometheus text exposition into a new string (free()). */
char *metrics_render(size_t *len_out);

/* ---------------------------------------------------------------- server state */

typedef struct server_config {
    const char *listen;      /* host:port */
    const char *store_path;
    const char *tokens_path; /* NULL: the default token files */
    const char *credentials_path; /* NULL: STORE.node-credentials */
    int allow_shared_agent_token; /* accept the fleet-wide agent role */
    const char *port_file;   /* write the bound port here once listening */
    const char *tls_cert;    /* PEM chain: HTTPS (tls.c); NULL: plain HTTP */
    const char *tls_key;     /* its PEM private key */
    const char *tls_client_ca; /* PEM CAs of node client certificates, or NULL */
    const char *trust_dir;   /* NULL: STORE.trust */
    const char *trust_root;  /* --trust-root FILE, or NULL */
    int require_signatures;  /* --require-signatures */
    uint64_t max_upload;     /* bytes; body cap for uploads */
    size_t max_json;         /* bytes; body cap for JSON requests */
    size_t max_header;       /* bytes; total request header cap */
    unsigned int header_timeout_s; /* whole header block, absolute */
    unsigned int idle_timeout_s;   /* no traffic; and next request line on keep-alive */
    unsigned int body_timeout_s;   /* grace before --min-body-rate applies */
    uint64_t min_body_rate;        /* bytes/s averaged over the body; 0: no check */
    unsigned int max_connections;  /* 0: derived from RLIMIT_NOFILE */
    unsigned int max_connections_per_ip; /* 0: no per-address cap */
    int per_ip_set;                /* --max-connections-per-ip given */
    unsigned int threads;    /* 0: one per core */
    unsigned int heartbeat_interval_s;
    unsigned int shutdown_timeout_s;
    int zstd_copies;
    int no_fsync;
    unsigned int lock_timeout_ms;  /* store lock wait before 503 LOCKED */
    unsigned int session_ttl_s;    /* console sessions' absolute lifetime */
    unsigned int max_sessions;     /* console sessions held at most */
    /* OpAMP (server/opamp/, docs/opamp.md) */
    const char *public_url;  /* --public-url, validated, without a trailing '/'; or NULL */
    int opamp_primary_empty_name; /* --opamp-primary-empty-name */
    /* the fleet (server/fleet/fleet.h) */
    const char *fleet_dir;   /* NULL: STORE.fleet */
    fleet_options fleet;
} server_config;

typedef struct server {
    server_config config;
    pkgstore_store *store;
    pkgstore_registry *registry;
    fleet *fleet;
    opamp_agents *opamp;   /* OpAMP's per-instance_uid state */
    token_set *tokens;
    atomic_long in_flight; /* requests between their first call and completion */
} server;

extern server g_server;

/* ---------------------------------------------------------------- requests */

#define PATH_SEGMENTS_MAX HTTP_PATH_SEGMENTS_MAX
#define PATH_SEGMENT_MAX HTTP_PATH_SEGMENT_MAX

/* BODY_OPAMP: a protobuf body into the json buffer, up to OPAMP_BODY_MAX */
enum body_kind { BODY_NONE = 0, BODY_JSON, BODY_BLOB, BODY_OPAMP };

typedef struct request request;

/* ---------------------------------------------------------------- connection guard */

/* Per-connection deadlines libmicrohttpd lacks (guard.c). */
typedef struct conn_record conn_record;

typedef struct guard_config {
    unsigned int header_timeout_s;
    unsigned int idle_timeout_s;
    unsigned int body_timeout_s;
    uint64_t min_body_rate;
} guard_config;

enum guard_cut { GUARD_CUT_HEADER = 0, GUARD_CUT_IDLE, GUARD_CUT_SLOW_BODY, GUARD_CUT_COUNT };

/* Start the watchdog thread (before the daemon) and stop it (before
 * MHD_stop_daemon). */
int guard_start(const guard_config *cfg);
void guard_stop(void);
/* MHD_OPTION_NOTIFY_CONNECTION callback. */
void guard_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code);
/* The connection's record (NULL if it could not be tracked). */
conn_record *guard_record(struct MHD_Connection *conn);
/* The request in progress on conn (set by http.c), or NULL. */
request *guard_request(struct MHD_Connection *conn);
void guard_set_request(conn_record *rec, request *req);
/* Phase changes, called by the connection's worker thread. */
void guard_request_line(conn_record *rec);
void guard_body_begin(conn_record *rec);
void guard_body_bytes(conn_record *rec, uint64_t total);
void guard_responding(conn_record *rec);
void guard_request_done(conn_record *rec);
/* Counters for logs and metrics. */
const char *guard_cut_name(enum guard_cut cut);
unsigned long guard_cut_count(enum guard_cut cut);
long guard_open_connections(void);

/* A handler runs once the whole body is in (JSON routes) or consumed (blob
 * uploads) and must queue exactly one response. */
typedef enum MHD_Result (*route_handler)(struct MHD_Connection *conn, request *req);

struct request {
    conn_record *guard;        /* the connection's deadlines */
    int access_begun;          /* the first access call has run */
    int counted;               /* counted in g_server.in_flight */
    /* the raw request target as libmicrohttpd read it (for the NUL check;
     * compared as a pointer only) and its query, undecoded */
    const char *raw_uri;
    size_t raw_uri_len;
    char *query;
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

    /* who sent it: a hash of the token (the fleet's new-node rate) */
    uint64_t credential;
    /* an admin's token id for the audit log: "token:" and the first 16 hex
     * digits of its SHA-256 (the token itself is not kept) */
    char token_id[24];
    /* with ROLE_NODE, the node credential (a reference, released at the end) */
    node_credential *node;
    /* authenticated by a console session cookie (console.c): its id and
     * CSRF token, copied */
    int by_session;
    unsigned char session_id[32];
    unsigned char session_csrf[32];
    char cookie_header[160]; /* a Set-Cookie value (extra_header_value) */
    /* a GET whose 200 carries an ETag and honours If-None-Match */
    int etag_route;

    /* query arguments of node listings, decoded (api/agents.c) */
    char query_after[256];
    char query_filters[6][1040]; /* selector, policy, state, package, version, status */

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
 * detail message (prefixed with context when given). PKGSTORE_ELOCKED (gc
 * or repair has the store) is 503 with Retry-After. */
enum MHD_Result respond_pkgstore_error(struct MHD_Connection *conn, request *req, int error,
                                       const char *context);
/* The same with a detail saved earlier (NULL or "": the code's text). */
enum MHD_Result respond_pkgstore_error_text(struct MHD_Connection *conn, request *req, int error,
                                            const char *context, const char *detail);
unsigned int http_status_for_error(int error);
/* Queue a 200 response whose body is body (len bytes): on an ETag route
 * (req->etag_route) with an ETag made from the body, or a 304 without the
 * body when If-None-Match names it. Takes response in every case. */
enum MHD_Result queue_body_response(struct MHD_Connection *conn, request *req,
                                    unsigned int status, struct MHD_Response *response,
                                    const char *body, size_t len);
/* An admin token's id for the audit log: "token:" and the first 16 hex
 * digits of its SHA-256; "" if it cannot be hashed. */
void token_id_of(char *out, size_t size, const char *token, size_t len);

/* ---------------------------------------------------------------- console (http/console.c) */

/* GET /ui/, /ui/{file} (the files of ui/, compiled in) and GET / (302 to /ui/). */
enum MHD_Result console_file_get(struct MHD_Connection *conn, request *req);
enum MHD_Result console_redirect(struct MHD_Connection *conn, request *req);
/* POST, GET and DELETE /v1/session. */
enum MHD_Result session_create(struct MHD_Connection *conn, request *req);
enum MHD_Result session_get(struct MHD_Connection *conn, request *req);
enum MHD_Result session_delete(struct MHD_Connection *conn, request *req);
/* The request's session cookies: 1 when one names a live session
 * (req->role is then ROLE_ADMIN, req->by_session set, the session's id,
 * CSRF token and token id copied into req), 0 when none was sent, -1
 * when none names a live session. */
int session_authenticate(struct MHD_Connection *conn, request *req);
/* 1 when X-CSRF-Token holds the CSRF token of req's session. */
int session_csrf_ok(struct MHD_Connection *conn, const request *req);
/* Live (not expired) sessions, for /metrics. */
unsigned int session_count(void);
/* Forget every session and the files' ETags (at exit). */
void console_free(void);
enum MHD_Result queue_response(struct MHD_Connection *conn, request *req, unsigned int status,
                               struct MHD_Response *response);

/* Answer with JSON text the library allocated (freed with pkgstore_free()
 * once sent). */
enum MHD_Result respond_library_json(struct MHD_Connection *conn, request *req,
                                     unsigned int status, char *text);

/* Record a failure while a body is still arriving; it is answered once the
 * body is consumed (libmicrohttpd cannot answer mid-upload). */
void request_fail(request *req, unsigned int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Percent-decode a query argument into out (NUL and bad escapes refused;
 * '+' is a literal plus, see docs/api.md). The first occurrence of key
 * wins. Returns 1 if present and valid, 0 if absent, -1 if invalid. */
int query_arg(char *out, size_t size, struct MHD_Connection *conn, const char *key);

/* ?key=1|true|0|false; def when absent or unreadable. */
int query_flag(struct MHD_Connection *conn, const char *key, int def);

/* Handlers (blobs.c, packages.c, policies.c, agents.c, main.c) */
enum MHD_Result blob_upload_begin(struct MHD_Connection *conn, request *req);
enum MHD_Result blob_upload_finish(struct MHD_Connection *conn, request *req);
enum MHD_Result blob_download(struct MHD_Connection *conn, request *req);
/* Start a streaming write for req (used by blob and package uploads). */
int upload_open_writer(request *req);
/* 0 when the body that arrived matches a declared Content-Length; else
 * aborts the writer, answers 400 into *result and returns -1. */
int upload_check_size(struct MHD_Connection *conn, request *req, enum MHD_Result *result);
/* Feed one chunk to the writer; records failures in req. */
void upload_feed(request *req, const char *data, size_t size);

enum MHD_Result package_upload_begin(struct MHD_Connection *conn, request *req);
enum MHD_Result package_upload_finish(struct MHD_Connection *conn, request *req);
enum MHD_Result packages_list(struct MHD_Connection *conn, request *req);
enum MHD_Result package_versions(struct MHD_Connection *conn, request *req);
enum MHD_Result package_manifest(struct MHD_Connection *conn, request *req);
enum MHD_Result package_delete(struct MHD_Connection *conn, request *req);
/* The package name (seg[2]) and, with_version, the version (seg[3]) of
 * the path: 0 when valid, else answers 400 into *result and returns -1. */
int package_path_check(struct MHD_Connection *conn, request *req, int with_version,
                       enum MHD_Result *result);
/* The version the path names (package_path_check(), then the registry):
 * 0 with its manifest (free it; manifest_out may be NULL) and digest, else
 * answers (400, 404, ...) into *result and returns -1. */
int package_path_get(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                     struct MHD_Connection *conn, request *req, enum MHD_Result *result);

enum MHD_Result policy_put(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_get(struct MHD_Connection *conn, request *req);
enum MHD_Result policies_list(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_delete(struct MHD_Connection *conn, request *req);
enum MHD_Result policy_retry(struct MHD_Connection *conn, request *req);
/* POST /v1/policies/NAME/pause|resume|abort and GET /v1/audit (policies.c) */
enum MHD_Result policy_rollout_action(struct MHD_Connection *conn, request *req);
enum MHD_Result audit_list(struct MHD_Connection *conn, request *req);
enum MHD_Result agent_heartbeat(struct MHD_Connection *conn, request *req);
/* POST /v1/opamp (api/opamp.c): its headers checked on the first call
 * (0, or -1 with the answer in *result), the exchange once the body is in. */
int opamp_check_headers(struct MHD_Connection *conn, request *req, enum MHD_Result *result);
enum MHD_Result agent_opamp(struct MHD_Connection *conn, request *req);
/* --public-url: 0 when url is http(s)://HOST[:PORT][/PREFIX] (a trailing
 * '/' is cut from the copy in out), else -1 with the reason in why. */
int opamp_public_url_check(char *out, size_t size, const char *url, char *why, size_t why_size);
enum MHD_Result agent_delete(struct MHD_Connection *conn, request *req);
/* Answer with a fleet error (its HTTP status, Retry-After and message). */
enum MHD_Result respond_fleet_error(struct MHD_Connection *conn, request *req,
                                    const fleet_error *err);
/* The query arguments of a node listing (limit, after, history and, with
 * with_filters, selector, policy, state); -1 when one is malformed, with
 * the 400 answered. */
int fleet_query_from_request(fleet_query *q, struct MHD_Connection *conn, request *req,
                             int with_filters);
enum MHD_Result credentials_get(struct MHD_Connection *conn, request *req);
enum MHD_Result credential_issue(struct MHD_Connection *conn, request *req);
enum MHD_Result credential_revoke(struct MHD_Connection *conn, request *req);
enum MHD_Result agents_list(struct MHD_Connection *conn, request *req);
enum MHD_Result trust_root_get_route(struct MHD_Connection *conn, request *req);
enum MHD_Result trust_root_put_route(struct MHD_Connection *conn, request *req);
enum MHD_Result trust_revocations_get_route(struct MHD_Connection *conn, request *req);
enum MHD_Result trust_revocation_put_route(struct MHD_Connection *conn, request *req);
enum MHD_Result package_signature_put(struct MHD_Connection *conn, request *req);
enum MHD_Result package_signatures_get(struct MHD_Connection *conn, request *req);
enum MHD_Result agent_get(struct MHD_Connection *conn, request *req);

/* The access-handler callback and its completion notice (http.c). */
enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe);
size_t http_unescape_none(void *cls, struct MHD_Connection *conn, char *uri);
/* MHD_OPTION_URI_LOG_CALLBACK: the raw request target, before
 * libmicrohttpd splits and unescapes it; allocates the request. */
void *http_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);

#endif
