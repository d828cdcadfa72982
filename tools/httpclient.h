/*
 * tools/httpclient.h - the small libcurl client shared by the operator tools
 * that talk to pkgstored (pkgstore-push, pkgstore-policy, pkgstore-token,
 * pkgstore-show --server).
 */
#ifndef PKGSTORE_TOOLS_HTTPCLIENT_H
#define PKGSTORE_TOOLS_HTTPCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct http_client {
    const char *prog;     /* for messages */
    char base_url[2048];  /* without a trailing slash */
    char auth_header[600];
    long timeout_s;       /* 0: none (uploads) */
    char ca_file[4096];   /* trust only this CA for https:// ("": the system's) */
} http_client;

typedef struct http_reply {
    long status;          /* HTTP status, 0 when the request failed */
    char *body;           /* NUL-terminated; free() */
    size_t len;
    char error[512];      /* transport error or the server's error message */
} http_reply;

/*
 * Find the token: token_file, else $PKGSTORE_TOKEN_FILE, else $PKGSTORE_TOKEN
 * (the token itself). A file holds the token on its first non-comment line
 * ("ROLE TOKEN" lines are accepted too). ca_file (--cacert), else
 * $PKGSTORE_CACERT, is the PEM CA an https:// server's certificate must
 * chain to; without one, the system's CAs. libcurl always checks the chain
 * and the host name: nothing turns that off. Prints the reason and returns
 * -1 when the server URL, the token or the CA file is unusable.
 */
/* The token in the file at path (its first non-comment line; "ROLE TOKEN"
 * lines are accepted too) into out. Prints "prog: path: reason" and returns
 * -1 when the file is missing, unreadable or holds no token. */
int http_read_token(char *out, size_t size, const char *path, const char *prog);

/* The options the admin tools (pkgstore-policy, pkgstore-token) take before
 * their COMMAND: --server (default $PKGSTORE_SERVER), --token-file, --cacert,
 * --json, --help (usage(stdout)) and --version. Parsing stops at the command,
 * left at argv[optind]. Returns -1 to go on, else the exit code: 0 after
 * --help or --version, 2 on a usage error (printed). */
typedef struct http_tool_options {
    const char *server, *token_file, *cacert;
    int json;
} http_tool_options;
int http_tool_options_parse(http_tool_options *out, int argc, char **argv,
                            void (*usage)(FILE *out));

int http_client_init(http_client *client, const char *prog, const char *server,
                     const char *token_file, const char *ca_file);

/* A request with an optional JSON body (NULL for none). Returns 0 when a
 * response arrived (any status), -1 on a transport failure. */
int http_request(http_reply *reply, const http_client *client, const char *method,
                 const char *path, const char *body);

/* Upload size bytes from file with PUT; progress on stderr when progress. The
 * digest context (may be NULL) sees every byte sent. */
struct pkgstore_digest_ctx;
int http_upload(http_reply *reply, const http_client *client, const char *path, FILE *file,
                uint64_t size, int progress, struct pkgstore_digest_ctx *digest);

/* "prog: object: <http_reply_error()>" on stderr (cli_error()) for a request
 * that failed or got an unexpected status; frees the reply and returns 1. */
int http_reply_fail(http_reply *reply, const char *object);

/* A request whose answer is a JSON document with status 200. With json_out,
 * the body is printed as it came and *out is NULL; otherwise *out receives
 * the parsed document (json_decref()). Returns 0, or 1 after printing the
 * error under object (http_reply_fail(), or a body that is not JSON). */
struct json_t;
int http_json_request(struct json_t **out, const http_client *client, const char *method,
                      const char *path, const char *body, int json_out, const char *object);

/* "CODE: message" from an error body, or the raw body. Points into a static
 * buffer. */
const char *http_reply_error(const http_reply *reply);

void http_reply_free(http_reply *reply);

/* Percent-encode s for a path segment or query value into a new string
 * (free()); NULL on failure. */
char *http_escape(const char *s);

#endif
