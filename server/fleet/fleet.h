/*
 * server/fleet/fleet.h - the fleet: every node that sends heartbeats, what
 * it reported, its status history, and the offers the policies make to it.
 *
 * The library decides what a policy means for one node
 * (pkgstore_policy_evaluate()); the fleet keeps the nodes, runs that
 * evaluation per heartbeat and per view, persists the nodes in an LMDB
 * environment of its own (--fleet-dir) and bounds everything an agent can
 * make it hold: the number of nodes, the rate of new node ids per
 * credential, the history per node, and the size of every listing.
 *
 * Layout: intern.c (shared, reference-counted node reports and strings),
 * nodes.c (the node table and history), targets.c (manifests and offer
 * texts per policy target), heartbeat.c (a heartbeat in, the reply out),
 * views.c (node JSON, paging, rollout tallies, /metrics counts), persist.c
 * (the LMDB environment, the write-behind flusher, expiry), trust.c (what
 * nodes report they verified, "behind", the trust gauges), rollout*.c
 * (staged rollouts: admission, the driver, operators' actions, the audit
 * log; rollout_impl.h).
 *
 * Every function is safe to call from many threads at once.
 */
#ifndef PKGSTORED_FLEET_H
#define PKGSTORED_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pkgstore.h"

/* An error for an HTTP answer: a PKGSTORE_E* code, an optional HTTP status
 * that overrides the code's usual one, a Retry-After, and the message. */
typedef struct fleet_error {
    int code;
    unsigned int http_status;   /* 0: the code's status */
    unsigned int retry_after_s; /* 0: no Retry-After */
    char message[512];
} fleet_error;

typedef struct fleet fleet;

typedef struct fleet_options {
    const char *dir;                  /* the LMDB environment (created) */
    unsigned int heartbeat_interval_s;
    unsigned int history_max;         /* status entries kept per node (1..1024) */
    size_t max_nodes;                 /* known nodes at most; a new id past it gets 503 */
    unsigned int expiry_s;            /* forget nodes silent this long; 0 = never */
    double new_nodes_per_s;           /* new node ids per credential per second */
    unsigned int new_nodes_burst;     /* ... with this burst */
    unsigned int flush_interval_ms;   /* write-behind period */
    int no_fsync;                     /* tests and benchmarks */
    int no_flusher;                   /* no background thread (tests, benchmarks) */
    pkgstore_store *store;            /* the signatures offers carry; NULL: none */
    unsigned int rollout_tick_ms;     /* how often the rollout driver counts (default 1000) */
} fleet_options;

/* Defaults for everything but dir. */
void fleet_options_init(fleet_options *opts);

/* Open the fleet over reg (which must outlive it): load the policies and
 * every node from opts->dir, and start the flusher. */
int fleet_open(fleet **out, pkgstore_registry *reg, const fleet_options *opts,
               fleet_error *err);

/* Stop the flusher, write what is pending (its error into err, return < 0)
 * and free. Accepts NULL. */
int fleet_close(fleet *f, fleet_error *err);

/* Write every pending node now. */
int fleet_flush(fleet *f, fleet_error *err);

/* Who a per-node credential says the sender is: the one node it may speak
 * for, the labels the admin pinned (they win over reported ones), and which
 * reported labels are kept besides (self_keys, or every key with
 * self_any). Sorted by key are the pinned labels. */
typedef struct fleet_identity {
    const char *node_id;
    const pkgstore_label *labels;
    size_t nlabels;
    const char *const *self_keys;
    size_t nself_keys;
    int self_any;
} fleet_identity;

/* One heartbeat: the request body; credential identifies who sent it (for
 * the new-node rate); who, when not NULL, is the node the credential is
 * bound to: another node_id in the body is refused with PKGSTORE_EDENIED
 * and http_status 403 before anything is recorded, and the labels recorded
 * are who's pinned ones plus the reported ones it allows. NULL (the admin
 * or the shared agent token) records the body as it is. *reply_out
 * receives the reply JSON (free()). */
int fleet_heartbeat(char **reply_out, size_t *reply_len, fleet *f, const char *body,
                    size_t len, uint64_t credential, const fleet_identity *who,
                    fleet_error *err);

/* One node as JSON, with its history (free()). */
int fleet_node_json(char **json_out, size_t *len_out, fleet *f, const char *id,
                    fleet_error *err);

/* Forget a node (memory and disk). */
int fleet_node_delete(fleet *f, const char *id, fleet_error *err);

/* A page of nodes. Filters are ANDed; NULL means no filter. */
typedef struct fleet_query {
    const char *selector;  /* label selector */
    const char *policy;    /* nodes that policy governs */
    const char *state;     /* with that rollout state (with policy: for it) */
    const char *package;   /* nodes that run a package of this name */
    const char *version;   /* ... at this version (without package: their primary's) */
    const char *status;    /* whose last status (newest history entry) is this state */
    const char *trust;     /* "behind", "current" or "none" (fleet_trust_server) */
    const char *after;     /* ids greater than this (the previous page's "next") */
    size_t limit;          /* nodes per page */
    size_t max_bytes;      /* stop early past this many bytes of JSON */
    int with_history;
} fleet_query;

#define FLEET_PAGE_DEFAULT 100
#define FLEET_PAGE_MAX 1000
#define FLEET_PAGE_BYTES_MAX ((size_t)4 << 20)

/* {"nodes":[...],"total":N,"next":"id"|null} (free()). total counts every
 * node that passes the filters; next is set when more follow. */
int fleet_node_page(char **json_out, size_t *len_out, fleet *f, const fleet_query *query,
                    fleet_error *err);

/* The rollout status of the policy called name (counts per state, nodes
 * governed and matching) as a new JSON object, and, when nodes is given, a
 * page of {"id","state"} of the nodes it governs in *nodes_out. */
int fleet_policy_status(json_t **status_out, fleet *f, const char *name,
                        const fleet_query *nodes, fleet_error *err);

/* The status of every policy, keyed by name: {"name": {...}, ...}. */
int fleet_policies_status(json_t **out, fleet *f, fleet_error *err);

/* The policies changed (this server wrote them): reload before the next use. */
void fleet_policies_changed(fleet *f);

/* For /metrics: per policy and state, the number of nodes. */
typedef void (*fleet_count_cb)(void *ctx, const char *policy, const char *state,
                               uint64_t count);
int fleet_count_foreach(fleet *f, fleet_count_cb cb, void *ctx, fleet_error *err);

/* The server's newest root version and revocation generation (0: none):
 * a node that reports a lower one is "behind" in the views, the trust
 * filter and fleet_trust_stats_get(). Call it before those with the
 * current values; the fleet knows nothing else of roots. */
void fleet_trust_server(fleet *f, uint64_t root_version, uint64_t revocations);

/* For /metrics, from counts kept as heartbeats arrive (no walk of the
 * nodes): nodes that report trust, those behind the server's root and
 * revocations, and the oldest newest_signed reported (0: none). */
typedef struct fleet_trust_stats {
    uint64_t nodes_reporting;
    uint64_t behind_root;
    uint64_t behind_revocations;
    int64_t oldest_newest_signed;
} fleet_trust_stats;

void fleet_trust_stats_get(fleet *f, fleet_trust_stats *out);
/* ---- staged rollouts (rollout.c; docs/policies.md "Staged rollouts") ---- */

/* One round of the rollout driver at time now: count every rollout's
 * batches, then start, soak, advance, finish or auto-pause them, writing
 * each transition (and its audit entry) before it takes effect. The
 * driver thread calls it every rollout_tick_ms; tests call it directly. */
int fleet_rollout_tick(fleet *f, int64_t now, fleet_error *err);

/* An operator's action on the rollout of policy name: "pause", "resume"
 * or "abort" (with revert: the policy goes back to the version it named
 * before, offered only to the nodes that moved). who names the token for
 * the audit log. PKGSTORE_ECONFLICT (409) when the state does not allow it. */
int fleet_rollout_action(fleet *f, const char *name, const char *action, int revert,
                         const char *who, fleet_error *err);

/* Append an operator's action on a policy itself (put, delete, retry) to
 * the audit log; version may be NULL. */
int fleet_audit_append(fleet *f, const char *who, const char *policy, const char *action,
                       const char *version, const char *why, fleet_error *err);

/* The audit log, oldest first: the last limit entries (of policy, when
 * not NULL) as {"entries":[...]}. */
int fleet_audit_json(json_t **out, fleet *f, const char *policy, size_t limit, fleet_error *err);

/* For /metrics: every rollout's state, and the auto-pauses since start. */
typedef void (*fleet_rollout_cb)(void *ctx, const char *policy, const char *state);
void fleet_rollout_foreach(fleet *f, fleet_rollout_cb cb, void *ctx);
uint64_t fleet_rollout_auto_pauses(fleet *f);

/* RFC 3339 UTC, "YYYY-MM-DDTHH:MM:SSZ". */
void fleet_time_format(char out[32], int64_t seconds);

/* Health of the fleet for /healthz and /metrics. */
typedef struct fleet_stats {
    size_t nodes;
    size_t profiles;           /* distinct interned node reports */
    size_t unsaved;            /* nodes changed since their last successful write */
    uint64_t flushes_failed;   /* write-behind rounds that failed, ever */
    uint64_t nodes_expired;    /* forgotten for silence, ever */
    uint64_t nodes_refused;    /* new ids refused: the cap */
    uint64_t nodes_throttled;  /* new ids refused: the per-credential rate */
    int degraded;              /* the last write failed; last_error says why */
    char last_error[256];
} fleet_stats;

void fleet_stats_get(fleet *f, fleet_stats *out);

#endif
