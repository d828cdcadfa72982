/*
 * pkgstore/policy.h - label selectors, upgrade policies, nodes, heartbeats,
 * offers and rollout status.
 *
 * A policy assigns one package version to the nodes whose labels match its
 * selector. A node reports itself with a heartbeat; the reply carries the
 * offers computed for it. docs/policies.md has the selector grammar, the
 * priority rules, the rollout states and the heartbeat semantics.
 *
 * Policies live in the index (PS_DB_POLICIES) and are written through at
 * once. Nodes are kept in memory and written behind to the index
 * (PS_DB_NODES) by a background flusher; pkgstore_policy_flush() and
 * pkgstore_policy_free() write every pending node. A handle is safe to share
 * between threads.
 */
#ifndef PKGSTORE_POLICY_H
#define PKGSTORE_POLICY_H

#include "common.h"
#include "index.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- labels */

#define PKGSTORE_LABEL_KEY_MAX 317   /* optional "dns.prefix/" (253) + "/" + name (63) */
#define PKGSTORE_LABEL_VALUE_MAX 63
#define PKGSTORE_LABELS_MAX 64       /* labels per node */

/** One label of a node. Both strings are borrowed by the functions below. */
typedef struct pkgstore_label {
    const char *key;
    const char *value;
} pkgstore_label;

/**
 * Check a label key: an optional DNS-subdomain prefix (lower case, at most
 * 253 characters) and "/", then a name of 1 to 63 characters from
 * [A-Za-z0-9._-] that starts and ends with an alphanumeric.
 * Errors: PKGSTORE_EINVALID with a detail naming the character and position.
 */
PKGSTORE_API int pkgstore_label_key_validate(const char *key);

/**
 * Check a label value: empty, or 1 to 63 characters from [A-Za-z0-9._-]
 * that start and end with an alphanumeric. Errors: PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_label_value_validate(const char *value);

/* ---------------------------------------------------------------- selectors */

#define PKGSTORE_SELECTOR_MAX 1024   /* bytes of selector text */

/** A parsed label selector (opaque, immutable, safe to share). */
typedef struct pkgstore_selector pkgstore_selector;

/**
 * Parse a selector into *out. Requirements are separated by commas and all
 * must hold (AND): "key=value" (also "key==value"), "key!=value",
 * "key in (a,b)", "key notin (a,b)", "key" (the label exists) and "!key"
 * (it does not). Whitespace around tokens is ignored. The empty selector
 * matches every node.
 * Errors: PKGSTORE_EINVALID with a detail "selector: position N: <what>"
 * (N counts bytes from 1), PKGSTORE_ELIMIT (text longer than
 * PKGSTORE_SELECTOR_MAX), PKGSTORE_ENOMEM. On failure *out is NULL.
 * Free with pkgstore_selector_free().
 */
PKGSTORE_API int pkgstore_selector_parse(pkgstore_selector **out, const char *text);

/** Free a selector. Accepts NULL. */
PKGSTORE_API void pkgstore_selector_free(pkgstore_selector *selector);

/**
 * The canonical text of a selector: requirements sorted by key then form,
 * set members sorted and deduplicated, no whitespace except "key in (a,b)".
 * Parsing the canonical text gives the same selector. Valid while the
 * selector lives; never NULL.
 */
PKGSTORE_API const char *pkgstore_selector_string(const pkgstore_selector *selector);

/**
 * 1 if the labels (count entries, keys unique) satisfy every requirement of
 * the selector, 0 if not. A NULL selector matches nothing.
 */
PKGSTORE_API int pkgstore_selector_matches(const pkgstore_selector *selector,
                                           const pkgstore_label *labels, size_t count);

/* ---------------------------------------------------------------- the handle */

/** Policies and nodes of one store (opaque, thread-safe). */
typedef struct pkgstore_policy_db pkgstore_policy_db;

typedef struct pkgstore_policy_options {
    unsigned int version;         /* PKGSTORE_POLICY_OPTIONS_VERSION */
    unsigned int heartbeat_interval_s; /* sent to agents; 0 = 30 */
    unsigned int history_max;     /* status entries kept per node; 0 = 32 (max 1024) */
    unsigned int flush_interval_ms; /* write-behind period for nodes; 0 = 1000 */
    int no_flusher;               /* 1: no background thread; nodes are written only by
                                     pkgstore_policy_flush() and pkgstore_policy_free() */
} pkgstore_policy_options;

#define PKGSTORE_POLICY_OPTIONS_VERSION 1
#define PKGSTORE_POLICY_OPTIONS_INIT { PKGSTORE_POLICY_OPTIONS_VERSION, 0, 0, 0, 0 }

/**
 * Open the policies and nodes of store into *out: loads every policy and
 * node record from the index into memory and starts the node flusher.
 * The store must outlive the handle. opts may be NULL for the defaults.
 * A node record that does not parse is skipped (the node comes back on its
 * next heartbeat). Errors: PKGSTORE_EINVALID, PKGSTORE_ECORRUPT (a policy
 * record does not parse; the detail names it), PKGSTORE_EIO, PKGSTORE_ENOMEM.
 * Free with pkgstore_policy_free().
 */
PKGSTORE_API int pkgstore_policy_open(pkgstore_policy_db **out, pkgstore_store *store,
                                      const pkgstore_policy_options *opts);

/**
 * Write every pending node record to the index now (transactions of up to
 * 4096 records). Errors: PKGSTORE_EIO, PKGSTORE_ENOSPC, PKGSTORE_ENOMEM (a
 * failed batch stays pending).
 */
PKGSTORE_API int pkgstore_policy_flush(pkgstore_policy_db *db);

/** Stop the flusher, write pending nodes (errors are dropped: call
 * pkgstore_policy_flush() first to see them) and free. Accepts NULL. */
PKGSTORE_API void pkgstore_policy_free(pkgstore_policy_db *db);

/**
 * Forget cached package resolutions (which artifact fits which platform).
 * Call after adding or removing package artifacts; the cache also expires
 * by itself after 2 seconds, so changes by other processes are seen too.
 */
PKGSTORE_API void pkgstore_policy_invalidate(pkgstore_policy_db *db);

/* ---------------------------------------------------------------- policies */

#define PKGSTORE_POLICY_NAME_MAX 128      /* [a-z0-9][a-z0-9._-]{0,127} */
#define PKGSTORE_POLICY_PRIORITY_MIN (-1000000)
#define PKGSTORE_POLICY_PRIORITY_MAX 1000000

typedef struct pkgstore_policy {
    char name[PKGSTORE_POLICY_NAME_MAX + 1];
    char selector[PKGSTORE_SELECTOR_MAX + 1]; /* canonical form once stored */
    char package[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];   /* an exact version */
    pkgstore_package_type type;
    int priority;                             /* higher wins */
    int64_t created;                          /* Unix seconds; set by put */
    int64_t updated;                          /* Unix seconds; set by put */
    uint32_t retry;                           /* retry generation: 0, then raised by
                                                 pkgstore_policy_retry(); kept by put */
} pkgstore_policy;

/** 0 if name is a valid policy name, else PKGSTORE_EINVALID with a detail. */
PKGSTORE_API int pkgstore_policy_name_validate(const char *name);

/**
 * Create or replace the policy policy->name. Validates the name, the
 * selector (stored in canonical form), the priority range and the type, and
 * checks that package@version exists in the registry with that type.
 * created and retry are kept from an existing policy (a new one starts at
 * retry 0); created and updated are set here (the input's values are
 * ignored).
 * *stored_out (may be NULL) receives the stored policy.
 * Errors: PKGSTORE_EINVALID (detail names the field, e.g. "selector:
 * position 5: expected a value"), PKGSTORE_ENOTFOUND (detail: "package
 * otelcol-contrib 0.99.0 not found" - an HTTP 404), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policy_put(pkgstore_policy *stored_out, pkgstore_policy_db *db,
                                     const pkgstore_policy *policy);

/**
 * As pkgstore_policy_put() for a JSON request body of len bytes:
 *   {"selector": "env=dev", "package": "otelcol-contrib", "version": "0.98.0",
 *    "type": "primary", "priority": 10}
 * selector defaults to "" (every node), type to the package's own type and
 * priority to 0; unknown fields are refused. *json_out receives the stored
 * policy as JSON (as pkgstore_policy_get_json() without "status"); free it
 * with pkgstore_free(). Errors: as pkgstore_policy_put(), plus
 * PKGSTORE_EINVALID for malformed JSON ("body: line 1 column 9: ...") or a
 * field of the wrong type ("priority: not an integer").
 */
PKGSTORE_API int pkgstore_policy_put_json(char **json_out, pkgstore_policy_db *db,
                                          const char *name, const char *body, size_t len);

/**
 * Raise the retry generation of the policy called name by one and store
 * it (updated is set too). Offers made under the policy carry the
 * generation as "retry": an agent that remembers an offered digest as bad
 * tries it once more when an offer carries a generation above the one it
 * failed under (docs/policies.md, "Retrying a failed rollout").
 * *stored_out (may be NULL) receives the stored policy.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_ELIMIT (the
 * generation is at its maximum, 2^32 - 1), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policy_retry(pkgstore_policy *stored_out, pkgstore_policy_db *db,
                                       const char *name);

/** The policy called name into *out. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_policy_get(pkgstore_policy *out, pkgstore_policy_db *db,
                                     const char *name);

/**
 * Every policy, sorted by name, into a new array *out of *count entries
 * (free with pkgstore_free(); NULL when there are none).
 * Errors: PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_list(pkgstore_policy **out, size_t *count,
                                      pkgstore_policy_db *db);

/**
 * Delete the policy called name. Nodes it governed get no offer from it
 * any more. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policy_delete(pkgstore_policy_db *db, const char *name);

/**
 * Whether a policy references package at version (version NULL: at any
 * version). Returns 0 if none does, or PKGSTORE_ECONFLICT with the detail
 * "otelcol-contrib 0.98.0 is referenced by policy canary" (an HTTP 409 for
 * DELETE of a package version). Errors: PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_policy_check_unreferenced(pkgstore_policy_db *db, const char *package,
                                                    const char *version);

/* ---------------------------------------------------------------- rollout states */

/*
 * The state of one node for the policy that governs it. The first nine are
 * the agent's status values (DESIGN.md); the others are computed here.
 */
typedef enum pkgstore_rollout_state {
    PKGSTORE_ROLLOUT_PENDING = 0,     /* offered; the node reported nothing for it yet */
    PKGSTORE_ROLLOUT_DOWNLOADING,
    PKGSTORE_ROLLOUT_VERIFYING,
    PKGSTORE_ROLLOUT_VALIDATING,
    PKGSTORE_ROLLOUT_SWAPPING,
    PKGSTORE_ROLLOUT_MONITORING,
    PKGSTORE_ROLLOUT_UPGRADED,        /* the node runs the assigned digest */
    PKGSTORE_ROLLOUT_UPGRADE_FAILED,
    PKGSTORE_ROLLOUT_ROLLED_BACK,
    PKGSTORE_ROLLOUT_ROLLBACK_FAILED,
    PKGSTORE_ROLLOUT_INCOMPATIBLE,    /* no artifact of the version fits the node's platform */
    PKGSTORE_ROLLOUT_UNKNOWN,         /* the assigned version could not be resolved */
    PKGSTORE_ROLLOUT_COUNT
} pkgstore_rollout_state;

/** "Pending", "Downloading", ..., "RollbackFailed", "Incompatible",
 * "Unknown"; NULL for an out-of-range value. Static storage. */
PKGSTORE_API const char *pkgstore_rollout_state_name(pkgstore_rollout_state state);

/** Parse an agent status value ("Downloading" ... "RollbackFailed") into
 * *out. Errors: PKGSTORE_EINVALID (also for the computed states). */
PKGSTORE_API int pkgstore_rollout_state_parse(pkgstore_rollout_state *out, const char *status);

/**
 * The policy and its rollout status as JSON into *json_out (free with
 * pkgstore_free()):
 *   {"name","selector","package","version","type","priority","created",
 *    "updated", "status": {"nodes_total": N, "nodes_matching": M,
 *    "counts": {"Pending": 1, ...},
 *    "nodes": [{"id": "edge-42", "state": "Upgraded"}, ...]}}
 * nodes_total counts the nodes the policy governs, nodes_matching those its
 * selector matches (also those a higher-priority policy governs). counts
 * lists every state (zeros included); nodes is sorted by id and present
 * only when with_nodes. Times are RFC 3339 UTC strings.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_get_json(char **json_out, pkgstore_policy_db *db,
                                          const char *name, int with_nodes);

/**
 * Every policy as {"policies": [...]}, sorted by name, each as
 * pkgstore_policy_get_json() (status counts always, nodes when with_nodes).
 * Free with pkgstore_free(). Errors: PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_list_json(char **json_out, pkgstore_policy_db *db,
                                           int with_nodes);

/**
 * The rollout counts of one policy into counts[] (indexed by
 * pkgstore_rollout_state) and the number of nodes it governs into *total
 * (may be NULL). Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_policy_counts(uint64_t counts[PKGSTORE_ROLLOUT_COUNT], uint64_t *total,
                                        pkgstore_policy_db *db, const char *name);

/* ---------------------------------------------------------------- heartbeats and nodes */

#define PKGSTORE_NODE_ID_MAX 253          /* [A-Za-z0-9][A-Za-z0-9._:-]{0,252} */
#define PKGSTORE_NODE_PACKAGES_MAX 64     /* packages per heartbeat */
#define PKGSTORE_STATUS_MESSAGE_MAX 1024  /* longer messages are truncated */

/**
 * Handle one heartbeat: the JSON request body of len bytes, as in
 * DESIGN.md ("Heartbeat protocol"). Parsing is strict; node_id and platform
 * are required, labels, agent_version and packages are optional, unknown
 * fields are ignored (for newer agents). The platform is normalized
 * ("linux/x86_64" is kept as "linux/amd64").
 *
 * Records the node (labels, platform, agent version, packages, last seen),
 * appends each package "status" to the node's history when it differs from
 * the last entry for that package, then computes the offers: for the
 * primary type, and for each addon package, the version of the
 * highest-priority matching policy (ties: the lexically first name),
 * resolved to the artifact for the node's platform. No offer when the node
 * already runs that digest, when no artifact fits the platform, or when
 * the packages the node reports do not satisfy the manifest's
 * dependencies (the node is then "Incompatible").
 *
 * *response_out receives the response JSON text (free with
 * pkgstore_free()), e.g.
 *   {"heartbeat_interval_s":30,
 *    "offers":[{"policy","retry","name","type","version","platform","digest",
 *               "size","format","entrypoint","url","manifest_digest",
 *               "annotations":{...},"dependencies":[{"name","version"}]}],
 *    "targets":[{"name","type","version","policy","state"[,"digest"][,"reason"]}]}
 * "targets" lists every package a policy governs at the node, offered or
 * not: an agent keeps an installed addon while a target names it. "digest"
 * is there when the version resolved to an artifact for the node's
 * platform; "reason" when the package is not offered for another reason
 * than the node running it already. docs/api.md has the details.
 * Errors: PKGSTORE_EINVALID with the offending field in the detail, e.g.
 * "packages[0].digest: not a sha256 digest" or "body: line 1 column 2:
 * ..."; PKGSTORE_ELIMIT (too many labels or packages); PKGSTORE_ENOMEM.
 * Registry failures never fail a heartbeat: that offer is left out.
 */
PKGSTORE_API int pkgstore_policy_heartbeat(char **response_out, pkgstore_policy_db *db,
                                           const char *body, size_t len);

/** The number of nodes known. */
PKGSTORE_API size_t pkgstore_policy_node_count(pkgstore_policy_db *db);

/**
 * One node as JSON into *json_out (free with pkgstore_free()):
 *   {"id","labels":{...},"platform","agent_version","last_seen",
 *    "packages":[{"name","type","version","digest","state"}],
 *    "rollout":[{"policy","package","version","type","state"}],
 *    "rollout_state": the primary slot's state (else the first addon's,
 *                     else null when no policy governs the node),
 *    "last_status":{"time","package","version","status","message"} | null,
 *    "history":[{"time","package","version","status","message"}, ...]}
 * history is oldest first. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_policy_node_get_json(char **json_out, pkgstore_policy_db *db,
                                               const char *node_id);

/**
 * Every node as {"nodes": [...], "total": N}, sorted by id, each as
 * pkgstore_policy_node_get_json() but without "history" when !with_history.
 * Free with pkgstore_free(). Errors: PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_node_list_json(char **json_out, pkgstore_policy_db *db,
                                                int with_history);

/**
 * As pkgstore_policy_node_list_json() for the nodes whose labels match
 * selector (NULL: every node; "" too), sorted by id, from position offset,
 * at most limit of them (SIZE_MAX: all). "total" is the number of matching
 * nodes, so a client can page, or preview which nodes a policy's selector
 * would reach before it PUTs the policy.
 * Errors: PKGSTORE_EINVALID (the selector, with its position),
 * PKGSTORE_ELIMIT (selector too long), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_policy_node_query_json(char **json_out, pkgstore_policy_db *db,
                                                 const char *selector, size_t offset,
                                                 size_t limit, int with_history);

/**
 * Delete a node record (a decommissioned node). Errors: PKGSTORE_ENOTFOUND,
 * PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_policy_node_delete(pkgstore_policy_db *db, const char *node_id);

/** Called per (policy, state) with the number of nodes in that state; a
 * non-zero return stops the walk and is returned. */
typedef int (*pkgstore_policy_count_cb)(const char *policy, pkgstore_rollout_state state,
                                        uint64_t count, void *payload);

/**
 * For /metrics: every policy (by name) and every state, with its count
 * (zeros included). One pass over the nodes.
 */
PKGSTORE_API int pkgstore_policy_count_foreach(pkgstore_policy_db *db,
                                               pkgstore_policy_count_cb cb, void *payload);

#ifdef __cplusplus
}
#endif

#endif
