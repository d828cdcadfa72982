/*
 * server/fleet/fleet_impl.h - what the fleet's files share (fleet.h has the
 * interface the rest of the server uses).
 *
 * Memory per node is what bounds a fleet, so a node holds little of its
 * own: its id, times, and pointers to shared, interned data. A node's
 * report (platform, agent version, labels, packages) is a "profile",
 * interned by content: the thousands of nodes of one ring running one
 * version share one. History entries point at interned strings.
 */
#ifndef PKGSTORED_FLEET_IMPL_H
#define PKGSTORED_FLEET_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include <lmdb.h>

#include "fleet.h"

#define FL_SHARDS 64
#define FL_INTERN_STRIPES 64
#define FL_NODE_ID_MAX 253          /* [A-Za-z0-9][A-Za-z0-9._:-]{0,252} */
#define FL_LABELS_MAX 64            /* labels per node */
#define FL_PACKAGES_MAX 64          /* packages per heartbeat */
#define FL_MESSAGE_MAX 1024         /* status messages are cut to this */
#define FL_HISTORY_LIMIT 1024       /* the largest --history-max */
/* A node whose only change is last_seen is written at most this often. */
#define FL_TOUCH_S 60
/* Node records per write transaction of the flusher. */
#define FL_FLUSH_BATCH 4096

/* ---- errors ---- */

int fl_fail(fleet_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A library failure: the code and pkgstore_error_detail(), after context. */
int fl_fail_lib(fleet_error *err, int code, const char *context);

/* ---- interned strings (intern.c) ---- */

/* The head of every interned entry: its hash chain and hash. */
struct fl_chain {
    struct fl_chain *next;
    uint64_t hash;
};

struct fl_str {
    struct fl_chain chain;
    uint32_t refs;  /* under the stripe's lock */
    uint32_t len;
    char s[];
};

/* A reference to the interned copy of s[0..len) (NULL: out of memory). */
struct fl_str *fl_str_intern(fleet *f, const char *s, size_t len);
void fl_str_release(fleet *f, struct fl_str *str);

/* ---- profiles: what a node reported (intern.c) ---- */

/* An addon's configuration from its policy, as the node reports it: the
 * one it runs with, and the one it last rolled back. */
struct fl_pkg_config {
    int has_config;
    int has_refused;
    uint32_t refused_retry;       /* the retry generation it was refused under */
    pkgstore_digest config_digest;
    pkgstore_digest refused_digest;
};

struct fl_pkg {
    const char *name;
    const char *version; /* "" when unknown */
    const char *state;   /* "" when unknown */
    pkgstore_package_type type;
    int has_digest;
    pkgstore_digest digest;
    /* NULL when the node reported neither: most packages, so that the
     * profile of a node without addon configurations does not grow */
    const struct fl_pkg_config *config;
};

/* What a node with trust.root verified (the heartbeat's "trust"): usually
 * the same fleet-wide, so it is part of the interned profile and costs a
 * node nothing of its own. */
struct fl_trust {
    uint64_t root_version;    /* 0: the node reported no trust */
    uint64_t revocations;     /* the revocation generation it read last */
    int64_t newest_signed;    /* Unix seconds; 0 when not reported */
};

struct fl_profile {
    struct fl_chain chain;
    uint32_t refs;  /* under the stripe's lock */
    uint16_t nlabels, npkgs;
    struct fl_trust trust;
    const char *platform;
    const char *agent_version; /* "" when unknown */
    pkgstore_label *labels;    /* sorted by key */
    struct fl_pkg *pkgs;
    size_t size;               /* bytes of the allocation */
    /* the arrays and strings follow in the same allocation */
};

/* A parsed heartbeat or stored record; strings borrowed from its JSON. */
struct fl_hb_pkg {
    const char *name;
    const char *version;
    const char *state;
    pkgstore_package_type type;
    int has_digest;
    pkgstore_digest digest;
    struct fl_pkg_config config;
    const char *offer_version;
    int has_status;
    pkgstore_rollout_state status;
    const char *message;
};

struct fl_hb {
    const char *node_id;
    struct fl_trust trust; /* zero when absent */
    const char *platform; /* points at platform_buf once normalized */
    char platform_buf[PKGSTORE_PLATFORM_STR_SIZE];
    const char *agent_version;
    size_t nlabels;
    pkgstore_label labels[FL_LABELS_MAX];
    size_t npkgs;
    struct fl_hb_pkg pkgs[FL_PACKAGES_MAX];
};

/* Fill hb from a heartbeat (stored 0: "node_id") or a stored node record
 * (stored 1: "id"); the messages name the field. */
int fl_hb_parse(struct fl_hb *hb, json_t *root, int stored, fleet_error *err);
/* The content hash of what hb reports (not its id or statuses). */
uint64_t fl_hb_hash(const struct fl_hb *hb);
/* A reference to the interned profile for hb (hash from fl_hb_hash());
 * NULL when out of memory. */
struct fl_profile *fl_profile_intern(fleet *f, const struct fl_hb *hb, uint64_t hash);
/* Does profile hold exactly what hb reports (hash from fl_hb_hash())? */
int fl_profile_matches(const struct fl_profile *profile, const struct fl_hb *hb, uint64_t hash);
void fl_profile_acquire(fleet *f, struct fl_profile *profile);
void fl_profile_release(fleet *f, struct fl_profile *profile);

uint64_t fl_fnv1a(uint64_t hash, const void *data, size_t len);
#define FL_FNV_OFFSET 14695981039346656037ULL

/* ---- nodes (nodes.c) ---- */

/* 16 bytes: a node's history is most of what a rollout adds to it (a ring
 * of 8 after an upgrade's 7 statuses). The package, version and message
 * are one interned string, shared by every node that reported the same. */
struct fl_hist {
    struct fl_str *entry; /* "package\0version\0message" (message "" when none) */
    uint32_t time;        /* Unix seconds, clamped to 0..UINT32_MAX (until 2106) */
    uint8_t status;       /* pkgstore_rollout_state */
};

struct fl_node {
    struct fl_node *next; /* hash chain */
    uint64_t hash;
    struct fl_profile *profile;
    int64_t last_seen;
    int64_t persisted_seen; /* last_seen as last written */
    struct fl_hist *hist;   /* a ring of hcap entries, grown up to history_max */
    uint16_t hcap, hstart, hlen;
    uint8_t dirty;          /* changed beyond last_seen since the last write */
    char id[];
};

struct fl_shard {
    pthread_mutex_t lock;
    struct fl_node **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

uint64_t fl_node_hash(const char *id);
struct fl_shard *fl_shard_of(fleet *f, uint64_t hash);
/* The node called id, or NULL; the shard must be locked. */
struct fl_node *fl_node_find(struct fl_shard *shard, const char *id, uint64_t hash);
/* A new empty node in the locked shard; NULL when out of memory. The caller
 * counts it in f->node_count (a heartbeat takes its place under the cap
 * before it inserts). */
struct fl_node *fl_node_insert(struct fl_shard *shard, const char *id, uint64_t hash);
/* Unlink and free the node called id from the locked shard; 1 if it was there. */
int fl_node_remove(fleet *f, struct fl_shard *shard, const char *id, uint64_t hash);
void fl_node_set_profile(fleet *f, struct fl_node *node, struct fl_profile *profile);
/* The node changed beyond last_seen: the flusher must write it. */
void fl_node_mark_dirty(fleet *f, struct fl_node *node);
/* Append a status unless it repeats the node's last entry for the package.
 * 1 when appended, 0 when a repeat, < 0 when out of memory. */
int fl_hist_append(fleet *f, struct fl_node *node, int64_t time, const char *package,
                   const char *version, pkgstore_rollout_state status, const char *message);
/* History entry k (0 = oldest) of node. */
const struct fl_hist *fl_hist_at(const struct fl_node *node, unsigned int k);
/* The most recent status the node reported for package at version. */
int fl_hist_latest(pkgstore_rollout_state *out, const struct fl_node *node, const char *package,
                   const char *version);
const char *fl_hist_package(const struct fl_hist *h);
const char *fl_hist_version(const struct fl_hist *h);
const char *fl_hist_message(const struct fl_hist *h); /* "" when none */
int64_t fl_hist_time(const struct fl_hist *h);
int fl_nodes_init(fleet *f);
void fl_nodes_free(fleet *f);
/* Call fn on every node under its shard's lock; a non-zero return stops. */
typedef int (*fl_node_fn)(struct fl_node *node, void *payload);
int fl_nodes_foreach(fleet *f, fl_node_fn fn, void *payload);

/* ---- policy targets: manifests and offer texts (targets.c) ---- */

struct fl_target {
    atomic_int refs;
    int error;                   /* the registry's error, when no manifest */
    char detail[200];
    pkgstore_manifest *manifest; /* when error == 0 */
    pkgstore_digest manifest_digest;
    size_t nartifacts;
    _Atomic(char *) *offer_text; /* per artifact: the offer's members, built once */
    uint64_t generation;         /* registry generation when read */
    pkgstore_store *store;       /* for the offers' signatures (may be NULL) */
    char key[];                  /* "package\0version\0" */
};

/* One evaluation's hold on the targets it used (pkgstore_manifest_lookup's
 * payload): the manifests stay valid until fl_lookup_done(). */
struct fl_lookup {
    fleet *f;
    struct fl_target **held; /* per rank of the set: NULL until used */
    size_t nheld;
};

int fl_lookup_init(struct fl_lookup *lookup, fleet *f, size_t nranks);
void fl_lookup_done(struct fl_lookup *lookup);
int fl_lookup_manifest(const pkgstore_manifest **out, const char *package, const char *version,
                       void *payload);
/* The target behind a decision's manifest (held by lookup). */
struct fl_target *fl_lookup_target(struct fl_lookup *lookup, const pkgstore_decision *d);
/* The offer's members other than "policy" and "retry" as JSON text without
 * braces; built once per target and artifact. NULL when out of memory. */
const char *fl_offer_members(struct fl_target *target, const pkgstore_artifact *artifact);
/* Drop targets read at another registry generation (checked per call). */
int fl_targets_refresh(fleet *f);
void fl_targets_free(fleet *f);

/* ---- policies ---- */

struct fl_policies {
    atomic_int refs;
    pkgstore_policies *set;
};

/* The current set, reloaded when stale (a reference: release it). NULL
 * with err set when the policies cannot be read. */
struct fl_policies *fl_policies_get(fleet *f, fleet_error *err);
void fl_policies_release(struct fl_policies *p);

/* ---- evaluation of one node ---- */

struct fl_eval {
    pkgstore_decision *decisions;
    pkgstore_rollout_state *states;
    size_t count;
    pkgstore_decision stack_decisions[8];
    pkgstore_rollout_state stack_states[8];
};

/* Evaluate profile (and the history of node, may be NULL; its shard locked
 * by the caller when given) against p. */
int fl_evaluate(struct fl_eval *eval, const struct fl_policies *p, const struct fl_profile *profile,
                const struct fl_node *node, struct fl_lookup *lookup, fleet_error *err);
void fl_eval_done(struct fl_eval *eval);
/* A decision's rollout state; node (its shard locked) gives the history. */
pkgstore_rollout_state fl_decision_state(const pkgstore_decision *d, const struct fl_node *node);

/* ---- persistence (persist.c) ---- */

int fl_store_open(fleet *f, fleet_error *err);
int fl_store_load(fleet *f, fleet_error *err);
void fl_store_close(fleet *f);
int fl_store_delete(fleet *f, const char *id, fleet_error *err);
int fl_flusher_start(fleet *f, fleet_error *err);
void fl_flusher_stop(fleet *f);
int fl_nodes_flush(fleet *f, int full, fleet_error *err);
/* Forget nodes silent for longer than the expiry. */
void fl_expire(fleet *f, int64_t now);

/* ---- trust: nodes per reported trust, for /metrics (trust.c) ---- */

/* The node's profile changes from old to new (either may be NULL): move
 * its count between their trust values. Called wherever node->profile
 * changes. */
void fl_trust_move(fleet *f, const struct fl_profile *old, const struct fl_profile *new_profile);
/* Is t behind the server's root or revocation generation (fleet_trust_server)? */
int fl_trust_behind(fleet *f, const struct fl_trust *t);
/* The "trust" member of a node: stored (integer time) or the API view
 * (RFC 3339, its age and "behind"); NULL when the node reported none. */
json_t *fl_trust_json(fleet *f, const struct fl_trust *t, int stored);
/* Parse the optional "trust" member of a heartbeat or stored record. */
int fl_trust_parse(struct fl_trust *out, json_t *root, int stored, fleet_error *err);
void fl_trust_free(fleet *f);

/* ---- views (views.c) ---- */

/* The node as JSON: stored (the record: integer times, no computed fields)
 * or the API view (p non-NULL: RFC 3339 times, rollout, last_status). */
json_t *fl_node_to_json(const struct fl_node *node, const struct fl_policies *p,
                        struct fl_lookup *lookup, int stored, int with_history);

/* ---- staged rollouts (rollout.c) ---- */

enum { FL_RO_RUNNING = 0, FL_RO_SOAKING, FL_RO_PAUSED, FL_RO_DONE, FL_RO_ABORTED, FL_RO_COUNT };
struct fl_rollouts;

const char *fl_rollout_state_name(int state);
/* Open the "rollouts" and "audit" databases in txn (fl_store_open's) and
 * read the records. */
int fl_rollouts_open(fleet *f, MDB_txn *txn, fleet_error *err);
void fl_rollouts_free(fleet *f);
int fl_rollout_driver_start(fleet *f, fleet_error *err);
void fl_rollout_driver_stop(fleet *f);
/* Tick soon (a policy changed). */
void fl_rollout_kick(fleet *f);
/* May policy's version be offered to node (its shard locked)? offering:
 * this is the heartbeat's answer, which takes a max_parallel slot (and
 * records the offer in the node's history); views pass 0. */
int fl_rollout_admits(fleet *f, const pkgstore_policy *policy, struct fl_node *node, int offering);
/* The states of offers the rollouts hold back become Waiting (node's shard
 * locked). */
void fl_rollout_gate(fleet *f, struct fl_eval *eval, struct fl_node *node, int offering);
/* The rollout part of a policy's status (a new object). */
json_t *fl_rollout_json(fleet *f, const pkgstore_policy *policy);

/* ---- new-node rate per credential ---- */

struct fl_bucket {
    uint64_t credential;
    double tokens;
    int64_t refilled_ms;
};

/* ---- the handle ---- */

struct fl_intern_stripe {
    pthread_mutex_t lock;
    struct fl_chain **strs;
    size_t nstrs, cap_strs;      /* power of two buckets */
    struct fl_chain **profiles;
    size_t nprofiles, cap_profiles;
};

struct fleet {
    pkgstore_registry *reg;
    fleet_options opts;

    struct fl_shard shards[FL_SHARDS];
    atomic_size_t node_count;
    struct fl_intern_stripe stripes[FL_INTERN_STRIPES];
    atomic_size_t profile_count;

    pthread_mutex_t policies_lock; /* guards the pointer; reloads */
    struct fl_policies *policies;
    atomic_int policies_stale;

    pthread_rwlock_t targets_lock;
    struct fl_target **targets;
    size_t ntargets;
    atomic_uint_fast64_t registry_generation;

    pthread_mutex_t rate_lock;
    struct fl_bucket *buckets;
    size_t nbuckets;

    /* persistence */
    MDB_env *env;
    MDB_dbi dbi;
    size_t map_size;
    int lock_fd; /* flock'ed: one server per fleet directory */
    pthread_mutex_t flush_lock; /* one flush, delete or expiry at a time */
    pthread_mutex_t flusher_lock;
    pthread_cond_t flusher_cond;
    int flusher_stop;
    int flusher_running;
    pthread_t flusher;
    int64_t last_expiry;

    /* nodes per reported trust value (trust.c): few distinct values */
    pthread_mutex_t trust_lock;
    struct fl_trust_count {
        struct fl_trust trust;
        uint64_t nodes;
    } *trust_counts;           /* sorted by trust */
    size_t ntrust_counts, cap_trust_counts;
    atomic_uint_fast64_t server_root_version, server_revocations;
    /* staged rollouts (rollout.c) */
    struct fl_rollouts *rollouts;

    /* health */
    pthread_mutex_t stats_lock;
    atomic_size_t unsaved;
    atomic_uint_fast64_t flushes_failed, nodes_expired, nodes_refused, nodes_throttled;
    int degraded;
    char last_error[256];
};

int64_t fl_now_ms(void);

#endif
