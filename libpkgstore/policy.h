/*
 * Private: what the policy files share. policy.c: the handle and the
 * policies; policy_view.c: rollout views; policy_heartbeat.c: heartbeat
 * parsing and handling; policy_node.c: the node table, history, fleet view
 * and persistence; policy_offer.c: the package resolution cache and the
 * evaluation of a node against the policies.
 */
#ifndef PS_POLICY_H
#define PS_POLICY_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

#include "index.h"
#include "pkgstore/platform.h"
#include "pkgstore/policy.h"
#include "pkgstore/registry.h"
#include "pkgstore/version.h"

#define PS_NODE_SHARDS 64
#define PS_TARGET_TTL_MS 2000
/* A node whose only change is last_seen is written at most this often by
 * the background flusher (every change is written at close). */
#define PS_NODE_TOUCH_S 60
/* Node records per write transaction of the flusher. */
#define PS_FLUSH_BATCH 4096

/* ---- policies: an immutable, reference-counted snapshot ---- */

struct ps_policy_item {
    pkgstore_policy policy;
    pkgstore_selector *selector;
};

struct ps_policy_set {
    atomic_int refs;
    size_t count;
    struct ps_policy_item *by_rank;  /* priority descending, then name ascending */
    struct ps_policy_item **by_name; /* the same items sorted by name */
};

/* ---- nodes ---- */

struct ps_pkg {
    const char *name;
    const char *version; /* "" when unknown */
    const char *state;   /* "" when unknown */
    pkgstore_package_type type;
    int has_digest;
    pkgstore_digest digest;
};

/* What a node last reported; immutable, one allocation (strings inside). */
struct ps_report {
    uint64_t hash; /* of the content, to tell a change from a repeat */
    const char *platform;
    const char *agent_version;
    size_t nlabels;
    pkgstore_label *labels; /* sorted by key */
    size_t npkgs;
    struct ps_pkg *pkgs;
};

struct ps_hist {
    int64_t time;
    pkgstore_rollout_state status;
    char *text; /* "package\0version\0message\0" */
};

struct ps_node {
    struct ps_node *next; /* hash chain */
    uint64_t hash;
    struct ps_report *report;
    int64_t last_seen;
    int64_t persisted_seen; /* last_seen as last written to the index */
    struct ps_hist *ring;   /* history_max entries once the first status arrives */
    unsigned int hstart, hlen;
    int dirty;              /* changed beyond last_seen since the last write */
    char id[];
};

struct ps_shard {
    pthread_mutex_t lock;
    struct ps_node **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

/* ---- resolution cache ---- */

struct ps_target {
    atomic_int refs;
    int error;                      /* 0, or the registry's error (ENOTFOUND, ...) */
    pkgstore_manifest *manifest;    /* when error == 0 */
    pkgstore_digest manifest_digest;
    size_t nartifacts;
    _Atomic(char *) *offer_text;    /* per artifact: the offer's JSON members
                                       without "policy", built on first use */
    size_t ndeps;
    pkgstore_version_constraint **deps; /* per manifest dependency; NULL when it
                                           does not compile (never satisfied) */
    int64_t fetched_ms;             /* monotonic */
    uint64_t generation;            /* db->target_gen when fetched */
    char key[];                     /* "package\0version\0" */
};

struct pkgstore_policy_db {
    pkgstore_store *store;
    ps_index *index;
    pkgstore_registry *registry;
    unsigned int heartbeat_interval_s;
    unsigned int history_max;
    unsigned int flush_interval_ms;

    pthread_mutex_t policy_write; /* serialises policy changes */
    pthread_mutex_t policy_lock;  /* guards the pointer below */
    struct ps_policy_set *policies;

    pthread_rwlock_t target_lock;
    struct ps_target **targets;
    size_t ntargets;
    atomic_uint_fast64_t target_gen;

    struct ps_shard shards[PS_NODE_SHARDS];
    atomic_size_t node_count;

    pthread_mutex_t flush_lock; /* one flush (or node delete) at a time */
    pthread_mutex_t flusher_lock;
    pthread_cond_t flusher_cond;
    int flusher_stop;
    int flusher_running;
    pthread_t flusher;
};

/* policy.c */
struct ps_policy_set *ps_policy_set_get(pkgstore_policy_db *db);
void ps_policy_set_release(struct ps_policy_set *set);
int ps_policy_time_format(char out[32], int64_t seconds);
/* The policy called name in set, or NULL. */
const struct ps_policy_item *ps_policy_set_find(const struct ps_policy_set *set,
                                                const char *name);

/* policy_view.c: the API JSON of a policy (RFC 3339 times, no status);
 * NULL when out of memory. */
json_t *ps_policy_to_json(const pkgstore_policy *policy);
/* Serialize root compactly into *json_out and drop root (NULL: ENOMEM). */
int ps_policy_dump(char **json_out, json_t *root);

/* policy_offer.c */
int64_t ps_policy_now_ms(void);
/* The cached target for (package, version): a new reference (release with
 * ps_target_release()), never NULL unless out of memory. */
struct ps_target *ps_target_get(pkgstore_policy_db *db, const char *package,
                                const char *version);
void ps_target_release(struct ps_target *target);
void ps_target_cache_free(pkgstore_policy_db *db);

/* One outcome of evaluating a node: the policy that governs one slot (the
 * primary package, or one addon package), the artifact for the node's
 * platform and the node's rollout state for it. */
struct ps_slot {
    const struct ps_policy_item *item; /* borrowed from the set */
    struct ps_target *target;          /* a reference; see ps_slots_release() */
    const pkgstore_artifact *artifact; /* borrowed from target; NULL if none */
    pkgstore_rollout_state state;
    int offer;                         /* 1 if the node should get an offer */
    char reason[768];                  /* why not offered, "" when offered or
                                          already running it */
};

/* Evaluate report (and history, may be NULL) against set into slots (room
 * for set->count entries); *nslots receives how many were filled.
 * targets (may be NULL) is a per-caller cache of set->count entries, zeroed
 * before first use and released with ps_targets_release(), so that a pass
 * over many nodes looks each target up once. */
void ps_policy_evaluate(struct ps_slot *slots, size_t *nslots, pkgstore_policy_db *db,
                        const struct ps_policy_set *set, const struct ps_report *report,
                        const struct ps_node *history, struct ps_target **targets);
void ps_targets_release(struct ps_target **targets, size_t count);
void ps_slots_release(struct ps_slot *slots, size_t nslots);

/* The members of a slot's offer (offer set) other than "policy", as JSON
 * text without the braces ("name":...,"manifest_digest":"..."); built once
 * per target and artifact and valid while slot->target is referenced.
 * NULL when out of memory. */
const char *ps_offer_members(const struct ps_slot *slot);

/* policy_heartbeat.c: a parsed heartbeat or stored node record; strings
 * are borrowed from the JSON tree it was parsed from. */
struct ps_hb_pkg {
    const char *name;
    const char *version;
    const char *state;
    pkgstore_package_type type;
    int has_digest;
    pkgstore_digest digest;
    const char *offer_version;
    int has_status;
    pkgstore_rollout_state status;
    const char *message;
};

struct ps_hb {
    const char *node_id;
    const char *platform; /* points at platform_buf once normalized */
    char platform_buf[PKGSTORE_PLATFORM_STR_SIZE];
    const char *agent_version;
    size_t nlabels;
    pkgstore_label labels[PKGSTORE_LABELS_MAX];
    size_t npkgs;
    struct ps_hb_pkg pkgs[PKGSTORE_NODE_PACKAGES_MAX];
};

/* Fill hb from a heartbeat (stored 0: "node_id") or a stored node record
 * (stored 1: "id"). Errors: PKGSTORE_EINVALID, PKGSTORE_ELIMIT. */
int ps_hb_parse(struct ps_hb *hb, json_t *root, int stored);
/* A new report (free with free()), NULL when out of memory. */
struct ps_report *ps_report_build(const struct ps_hb *hb);
#define PS_FNV_OFFSET 14695981039346656037ULL
uint64_t ps_fnv1a(uint64_t hash, const void *data, size_t len);

/* policy_node.c */
uint64_t ps_node_id_hash(const char *id);
struct ps_shard *ps_node_shard(pkgstore_policy_db *db, uint64_t hash);
/* The node called id, or NULL; the shard must be locked. */
struct ps_node *ps_node_find(struct ps_shard *shard, const char *id, uint64_t hash);
/* A new empty node in the locked shard; NULL when out of memory. */
struct ps_node *ps_node_insert(pkgstore_policy_db *db, struct ps_shard *shard, const char *id,
                               uint64_t hash);
/* Append a status unless it repeats the node's last entry for the package.
 * Returns 1 when appended, 0 when a repeat, or a negative error. */
int ps_hist_append(pkgstore_policy_db *db, struct ps_node *node, int64_t time,
                   const char *package, const char *version, pkgstore_rollout_state status,
                   const char *message);
int ps_nodes_init(pkgstore_policy_db *db);
int ps_nodes_load(pkgstore_policy_db *db);
void ps_nodes_free(pkgstore_policy_db *db);
int ps_flusher_start(pkgstore_policy_db *db);
void ps_flusher_stop(pkgstore_policy_db *db);
/* Call fn on every node under its shard's lock; a non-zero return stops. */
typedef int (*ps_node_fn)(struct ps_node *node, void *payload);
int ps_nodes_foreach(pkgstore_policy_db *db, ps_node_fn fn, void *payload);

#endif
