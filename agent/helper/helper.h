/*
 * pkgstore-agent-helper private header: the HTTP client (libcurl) of the
 * agent's short-lived worker process. See main.c for the protocol.
 */
#ifndef PKGSTORE_AGENT_HELPER_H
#define PKGSTORE_AGENT_HELPER_H

#include "../agent.h"

#include <stdint.h>

#include <jansson.h>

#define HELPER_NAME "pkgstore-agent-helper"

/* The node the agent runs as: sent as X-Pkgstore-Node with every request
 * that carries the token, so a per-node credential can be checked against
 * it (docs/api.md). Ignored unless it is a plain node id. */
void helper_http_set_node(const char *node_id);
/* ca_file (may be NULL: the system's CAs) is the only CA an https://
 * server's certificate may chain to; libcurl checks chain and host name on
 * every request, and nothing here turns that off. client_cert and
 * client_key: the node's certificate for mutual TLS (NULL: none). */
int helper_http_init(const char *ca_file, const char *client_cert, const char *client_key);
void helper_http_cleanup(void);
/* One request whose whole response body is kept in memory (at most
 * 4 MiB): a JSON POST when body is not NULL, else a GET. token may be NULL.
 * *response_out (free()) and *status_out are set on success. */
int helper_http_request(char **response_out, long *status_out, const char *token,
                        const char *url, const char *body, double timeout_s);
/* 0 if url answers 200 within timeout_s; *status_out gets the status. */
int helper_http_health(const char *url, double timeout_s, long *status_out);
/* Download url into part_path, resuming from its current size with Range.
 * Fails (PKGSTORE_ELIMIT) as soon as the body would exceed max_size, and
 * (PKGSTORE_ENET) when no byte arrives for stall_timeout_s. exact_size:
 * max_size is the size the body must have (an artifact), and a fresh
 * download asks for zstd; else it is only a bound, and no encoding is
 * asked for. */
int helper_http_download(const char *token, const char *url, const char *part_path,
                         uint64_t max_size, int exact_size, double stall_timeout_s,
                         uint64_t *size_out);

/* One binary POST (OpAMP): the response's status, body (free()), its
 * Content-Type and Retry-After (delta seconds; -1 when absent or a date). */
typedef struct helper_exchange {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    double retry_after_s;
} helper_exchange;
int helper_http_exchange(helper_exchange *out, const char *token, const char *url,
                         const void *body, size_t body_len, const char *content_type,
                         double timeout_s);
/* The size of url's body from a HEAD request's Content-Length (200 only). */
int helper_http_content_length(uint64_t *size_out, const char *token, const char *url,
                               double timeout_s);

/* OpAMP (opamp.c, docs/opamp.md): heartbeat is the agent's JSON heartbeat
 * (docs/api.md); sent as an AgentToServer to server_url + path, the
 * ServerToAgent becomes the JSON reply the agent reads. state_dir/opamp/
 * keeps the instance_uid and what must outlive one helper run. The reply
 * gets "status", "body" (a JSON text) and "retry_after_s" when the server
 * asked for a pause; 0, or a code with the reason in detail. */
int helper_opamp_exchange(json_t *reply, const char *server_url, const char *path,
                          const char *state_dir, const char *token, const char *heartbeat,
                          size_t len, double timeout_s, char *detail, size_t dlen);

/* A Content-Range header's value of len bytes, "bytes START-END/TOTAL":
 * 0 with START <= END (< TOTAL when TOTAL is known; UINT64_MAX for "*"),
 * or -1. Pure: no libcurl (range.c). */
int helper_content_range_parse(uint64_t *start_out, uint64_t *end_out, uint64_t *total_out,
                               const char *value, size_t len);

/* The trust commands (trust.c): 0 with the reply filled, or a PKGSTORE_E*
 * code with the reason in detail. args of verify-offer: ROOT MANIFEST
 * MANIFEST_DIGEST NAME VERSION TYPE PLATFORM; signatures is the offer's
 * "signatures" JSON array as the server sent it. */
int helper_root_check(json_t *reply, const char *path, char *detail, size_t dlen);
int helper_root_rotate(json_t *reply, const char *new_path, const char *current_path,
                       char *detail, size_t dlen);
int helper_verify_offer(json_t *reply, char **args, const char *signatures, size_t sig_len,
                        char *detail, size_t dlen);
/* body: GET /v1/trust/revocations; the reply lists those signed to
 * threshold by ROOT ("revoked") and why the others do not count. */
int helper_verify_revocations(json_t *reply, const char *root_path, const char *body, size_t len,
                              char *detail, size_t dlen);

#endif
