/*
 * server/fleet/rollout.c - staged rollouts: which nodes a policy's version
 * is offered to, batch by batch, and the driver that advances, soaks and
 * pauses them by itself (docs/policies.md, "Staged rollouts").
 *
 * One record per policy, for the target it rolls out (package, version):
 * its state (running, soaking, paused, done, aborted), the batch it is in,
 * and per started batch the admission limit: a node is admitted to batch j
 * when its rank (pkgstore_rollout_rank()) is below limit[j]. Limits only
 * grow, so an admission is never revoked, and a node that joins later is
 * admitted at once when its rank falls below the current limit. A
 * heartbeat's check is therefore one hash and one comparison under a read
 * lock; the driver walks the fleet once per tick to count, and once more
 * when a batch starts, to find the rank at the batch's size.
 *
 * Every transition is written to the fleet's LMDB environment (database
 * "rollouts", and an entry in "audit" in the same transaction) before it
 * takes effect, so a restart resumes where the rollout stood.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server.h"
#include "fleet_impl.h"

#define RO_FAILURES_KEPT 10 /* failed nodes named in a pause's reason */
#define RO_AUDIT_MAX 1000   /* entries per GET */

static const char *const ro_state_names[FL_RO_COUNT] = {"running", "soaking", "paused", "done",
                                                        "aborted"};

const char *fl_rollout_state_name(int state)
{
    return state >= 0 && state < FL_RO_COUNT ? ro_state_names[state] : "unknown";
}

/* ---------------------------------------------------------------- records */

struct ro_failure {
    char node[FL_NODE_ID_MAX + 1];
    pkgstore_rollout_state status; /* PKGSTORE_ROLLOUT_COUNT: silent */
    char message[256];
    size_t batch;
};

struct ro_live {                   /* the last tick's counts: not persisted */
    int64_t at;
    uint64_t eligible, waiting, active_total;
    uint64_t nodes[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t done[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t active[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t pending[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t failed[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t state_counts[PKGSTORE_ROLLOUT_COUNT];
    size_t nfailures;
    struct ro_failure failures[RO_FAILURES_KEPT];
};

struct fl_rollout {
    char policy[PKGSTORE_POLICY_NAME_MAX + 1];
    char package[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    char previous[PKGSTORE_VERSION_MAX + 1];    /* the policy's version before: "" unknown */
    char revert_from[PKGSTORE_VERSION_MAX + 1]; /* aborted with revert: the version left */
    int state;
    int paused_auto;
    size_t batch;                               /* the batch started last */
    int all;                                    /* the last batch: every node */
    uint64_t limit[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t acked[PKGSTORE_ROLLOUT_BATCHES_MAX]; /* failures a resume accepted */
    int64_t started, batch_started, settled_at, changed;
    char reason[1024];
    uint64_t generation;                        /* moved by every change */
    /* --max-parallel: nodes offered or upgrading now (the last count plus
     * the offers since), and offers ever made (not persisted) */
    uint64_t active_now, offers;
    struct ro_live live;
};

struct fl_rollouts {
    pthread_rwlock_t lock;          /* the records: heartbeats read, installs write */
    pthread_mutex_t write_lock;     /* one transition at a time; audit_seq */
    struct fl_rollout **items;
    size_t count, cap;
    MDB_dbi dbi, audit_dbi;
    uint64_t audit_seq;
    atomic_uint_fast64_t auto_pauses;
    /* the driver */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    int stop, running, kick;
    pthread_t thread;
};

static struct fl_rollout *find(struct fl_rollouts *ro, const char *policy)
{
    for (size_t i = 0; i < ro->count; i++) {
        if (strcmp(ro->items[i]->policy, policy) == 0)
            return ro->items[i];
    }
    return NULL;
}

static json_t *record_json(const struct fl_rollout *r)
{
    json_t *limits = json_array(), *acked = json_array();
    for (size_t j = 0; limits && acked && j <= r->batch && j < PKGSTORE_ROLLOUT_BATCHES_MAX; j++) {
        char text[24];
        /* as text: JSON integers are signed 64-bit */
        snprintf(text, sizeof(text), "%016" PRIx64, r->limit[j]);
        json_array_append_new(limits, json_string(text));
        json_array_append_new(acked, json_integer((json_int_t)r->acked[j]));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:b, s:o, s:o, s:I, s:I, s:I, "
                     "s:I, s:s}",
                     "policy", r->policy, "package", r->package, "version", r->version,
                     "previous", r->previous, "revert_from", r->revert_from, "state",
                     fl_rollout_state_name(r->state), "paused_auto", r->paused_auto, "batch",
                     (json_int_t)r->batch, "all", r->all, "limits", limits, "acked", acked,
                     "started", (json_int_t)r->started, "batch_started",
                     (json_int_t)r->batch_started, "settled_at", (json_int_t)r->settled_at,
                     "changed", (json_int_t)r->changed, "reason", r->reason);
}

static int copy_member(char *out, size_t size, json_t *root, const char *key)
{
    const char *value = json_string_value(json_object_get(root, key));
    if (!value || strlen(value) >= size)
        return -1;
    memcpy(out, value, strlen(value) + 1);
    return 0;
}

static int record_parse(struct fl_rollout *r, const void *data, size_t len)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    int failed = !root;
    char state[16] = "";
    memset(r, 0, sizeof(*r));
    failed = failed || copy_member(r->policy, sizeof(r->policy), root, "policy") < 0 ||
             copy_member(r->package, sizeof(r->package), root, "package") < 0 ||
             copy_member(r->version, sizeof(r->version), root, "version") < 0 ||
             copy_member(r->previous, sizeof(r->previous), root, "previous") < 0 ||
             copy_member(r->revert_from, sizeof(r->revert_from), root, "revert_from") < 0 ||
             copy_member(state, sizeof(state), root, "state") < 0 ||
             copy_member(r->reason, sizeof(r->reason), root, "reason") < 0;
    r->state = -1;
    for (int s = 0; !failed && s < FL_RO_COUNT; s++) {
        if (strcmp(state, ro_state_names[s]) == 0)
            r->state = s;
    }
    json_t *limits = json_object_get(root, "limits"), *acked = json_object_get(root, "acked");
    r->batch = (size_t)json_integer_value(json_object_get(root, "batch"));
    failed = failed || r->state < 0 || r->batch >= PKGSTORE_ROLLOUT_BATCHES_MAX ||
             json_array_size(limits) != r->batch + 1 || json_array_size(acked) != r->batch + 1;
    for (size_t j = 0; !failed && j <= r->batch; j++) {
        const char *text = json_string_value(json_array_get(limits, j));
        char *end;
        r->limit[j] = text ? strtoull(text, &end, 16) : 0;
        failed = !text || *end != '\0';
        r->acked[j] = (uint64_t)json_integer_value(json_array_get(acked, j));
    }
    if (!failed) {
        r->paused_auto = json_is_true(json_object_get(root, "paused_auto"));
        r->all = json_is_true(json_object_get(root, "all"));
        r->started = json_integer_value(json_object_get(root, "started"));
        r->batch_started = json_integer_value(json_object_get(root, "batch_started"));
        r->settled_at = json_integer_value(json_object_get(root, "settled_at"));
        r->changed = json_integer_value(json_object_get(root, "changed"));
    }
    json_decref(root);
    return failed ? -1 : 0;
}

/* Write r (or delete the record of policy when r is NULL) and one audit
 * entry, in one transaction. The caller holds the write lock (not the
 * rollouts' rwlock: a heartbeat takes that one under its shard lock, and
 * the flusher takes shard locks under the flush lock taken here). */
static int persist_entry(fleet *f, const char *policy, const struct fl_rollout *r,
                         int touch_record, const char *who, const char *action, const char *why,
                         const char *version, fleet_error *err);

static int persist(fleet *f, const char *policy, const struct fl_rollout *r, const char *who,
                   const char *action, const char *why, fleet_error *err)
{
    return persist_entry(f, policy, r, 1, who, action, why, NULL, err);
}

/* persist() with touch_record 0: the audit entry only (version for it). */
static int persist_entry(fleet *f, const char *policy, const struct fl_rollout *r,
                         int touch_record, const char *who, const char *action, const char *why,
                         const char *version, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    MDB_txn *txn = NULL;
    char *text = NULL, *entry_text = NULL;
    json_t *obj = r ? record_json(r) : NULL;
    int rc;

    if ((r && !obj) || (r && !(text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS)))) {
        json_decref(obj);
        return fl_fail(err, PKGSTORE_ENOMEM, "rollout %s: out of memory", policy);
    }
    json_decref(obj);
    uint64_t seq = ro->audit_seq + 1;
    json_t *entry = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)seq, "time",
                              (json_int_t)time(NULL), "who", who ? who : "pkgstored", "policy",
                              policy, "action", action, "reason", why ? why : "");
    if (entry && version)
        json_object_set_new(entry, "version", json_string(version));
    if (entry && r) {
        json_object_set_new(entry, "version", json_string(r->version));
        json_object_set_new(entry, "state", json_string(fl_rollout_state_name(r->state)));
        json_object_set_new(entry, "batch", json_integer((json_int_t)r->batch + 1));
    }
    entry_text = entry ? json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(entry);
    if (!entry_text) {
        free(text);
        return fl_fail(err, PKGSTORE_ENOMEM, "rollout %s: out of memory", policy);
    }
    unsigned char seq_key[8];
    for (int i = 0; i < 8; i++)
        seq_key[i] = (unsigned char)(seq >> (56 - 8 * i)); /* big-endian: LMDB order is time order */
    MDB_val key = {strlen(policy), (void *)policy}, val = {text ? strlen(text) : 0, text};
    MDB_val akey = {8, seq_key}, aval = {strlen(entry_text), entry_text};
    /* the flush lock serialises this process's transactions with the
     * flusher's, which may grow the map (no transaction may be open then) */
    pthread_mutex_lock(&f->flush_lock);
    for (;;) {
        if ((rc = mdb_txn_begin(f->env, NULL, 0, &txn)) == 0) {
            if (!touch_record)
                rc = 0;
            else if (r)
                rc = mdb_put(txn, ro->dbi, &key, &val, 0);
            else if ((rc = mdb_del(txn, ro->dbi, &key, NULL)) == MDB_NOTFOUND)
                rc = 0;
            if (rc == 0)
                rc = mdb_put(txn, ro->audit_dbi, &akey, &aval, MDB_APPEND);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        if (rc == MDB_MAP_FULL && f->map_size < ((size_t)64 << 30)) {
            f->map_size *= 2;
            if ((rc = mdb_env_set_mapsize(f->env, f->map_size)) == 0)
                continue;
        }
        break;
    }
    pthread_mutex_unlock(&f->flush_lock);
    free(text);
    free(entry_text);
    if (rc != 0)
        return fl_fail(err, PKGSTORE_EIO, "rollout %s: writing its state to the fleet: lmdb: %s",
                       policy, mdb_strerror(rc));
    ro->audit_seq = seq;
    return 0;
}

/* ---------------------------------------------------------------- open, close */

static void *driver_main(void *arg);

int fl_rollouts_open(fleet *f, MDB_txn *txn, fleet_error *err)
{
    struct fl_rollouts *ro = calloc(1, sizeof(*ro));
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc;

    if (!ro)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    pthread_rwlock_init(&ro->lock, NULL);
    pthread_mutex_init(&ro->write_lock, NULL);
    pthread_mutex_init(&ro->wake_lock, NULL);
    pthread_cond_init(&ro->wake, NULL);
    f->rollouts = ro;
    if ((rc = mdb_dbi_open(txn, "rollouts", MDB_CREATE, &ro->dbi)) != 0 ||
        (rc = mdb_dbi_open(txn, "audit", MDB_CREATE, &ro->audit_dbi)) != 0)
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: opening the rollout databases: lmdb: %s",
                       f->opts.dir, mdb_strerror(rc));
    if ((rc = mdb_cursor_open(txn, ro->audit_dbi, &cursor)) == 0) {
        if (mdb_cursor_get(cursor, &key, &val, MDB_LAST) == 0 && key.mv_size == 8) {
            for (int i = 0; i < 8; i++)
                ro->audit_seq = (ro->audit_seq << 8) | ((unsigned char *)key.mv_data)[i];
        }
        mdb_cursor_close(cursor);
    }
    if ((rc = mdb_cursor_open(txn, ro->dbi, &cursor)) != 0)
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: reading the rollouts: lmdb: %s", f->opts.dir,
                       mdb_strerror(rc));
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        struct fl_rollout *r = malloc(sizeof(*r));
        if (!r || (ro->count == ro->cap &&
                   !(ro->items = realloc(ro->items, (ro->cap = ro->cap ? ro->cap * 2 : 8) *
                                                        sizeof(*ro->items))))) {
            free(r);
            mdb_cursor_close(cursor);
            return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        }
        if (record_parse(r, val.mv_data, val.mv_size) < 0) {
            free(r);
            mdb_cursor_close(cursor);
            return fl_fail(err, PKGSTORE_ECORRUPT,
                           "fleet %s: rollout record '%.*s' does not parse (delete the fleet "
                           "directory's rollouts to start the rollouts over)",
                           f->opts.dir, (int)(key.mv_size > 128 ? 128 : key.mv_size),
                           (const char *)key.mv_data);
        }
        ro->items[ro->count++] = r;
    }
    mdb_cursor_close(cursor);
    return 0;
}

void fl_rollouts_free(fleet *f)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro)
        return;
    for (size_t i = 0; i < ro->count; i++)
        free(ro->items[i]);
    free(ro->items);
    pthread_rwlock_destroy(&ro->lock);
    pthread_mutex_destroy(&ro->write_lock);
    pthread_mutex_destroy(&ro->wake_lock);
    pthread_cond_destroy(&ro->wake);
    free(ro);
    f->rollouts = NULL;
}

/* ---------------------------------------------------------------- admission */

static int in_progress(pkgstore_rollout_state s)
{
    return s >= PKGSTORE_ROLLOUT_DOWNLOADING && s <= PKGSTORE_ROLLOUT_MONITORING;
}

static int failed_state(pkgstore_rollout_state s)
{
    return s == PKGSTORE_ROLLOUT_UPGRADE_FAILED || s == PKGSTORE_ROLLOUT_ROLLED_BACK ||
           s == PKGSTORE_ROLLOUT_ROLLBACK_FAILED;
}

static int runs_version(const struct fl_node *node, const char *package, const char *version)
{
    for (size_t i = 0; node->profile && i < node->profile->npkgs; i++) {
        if (strcmp(node->profile->pkgs[i].name, package) == 0 &&
            strcmp(node->profile->pkgs[i].version, version) == 0)
            return 1;
    }
    return 0;
}

/* A policy the driver has not seen yet is offered at once only when it
 * has one batch and no parallel limit: today's behaviour, also for a fleet
 * without a driver thread. */
static int goes_at_once(const pkgstore_policy *policy)
{
    const pkgstore_rollout_strategy *s = pkgstore_policy_strategy(policy);
    return pkgstore_rollout_batch_count(s) == 1 && s->max_parallel == 0;
}

/* 1 when r admits node to policy's version; *needs_slot when it does only
 * as a new start under max_parallel. */
static int admits_locked(const struct fl_rollout *r, const pkgstore_policy *policy,
                         const struct fl_node *node, int *needs_slot)
{
    const char *package = pkgstore_policy_package(policy), *version = pkgstore_policy_version(policy);
    pkgstore_rollout_state latest;
    int started = node && fl_hist_latest(&latest, node, package, version);

    if (strcmp(r->package, package) != 0 || strcmp(r->version, version) != 0) {
        /* the driver has not seen this target yet: an abort's revert is
         * being written, or a new target waits for its first batch */
        if (r->revert_from[0] && strcmp(r->revert_from, version) == 0)
            return 0;
        return goes_at_once(policy);
    }
    switch (r->state) {
    case FL_RO_RUNNING:
    case FL_RO_SOAKING:
    case FL_RO_DONE:
        if (!r->all && !(node && pkgstore_rollout_rank(r->policy, node->id) < r->limit[r->batch]))
            return 0;
        *needs_slot = !started && pkgstore_policy_strategy(policy)->max_parallel > 0;
        return 1;
    case FL_RO_ABORTED:
        if (r->revert_from[0]) /* the way back: to the nodes that moved only */
            return node && (fl_hist_latest(&latest, node, package, r->revert_from) ||
                            runs_version(node, package, r->revert_from));
        return started && in_progress(latest); /* nodes half-way finish what they started */
    case FL_RO_PAUSED:
        return started && in_progress(latest);
    }
    return 0;
}

int fl_rollout_admits(fleet *f, const pkgstore_policy *policy, struct fl_node *node, int offering)
{
    struct fl_rollouts *ro = f->rollouts;
    int admitted, needs_slot = 0;
    if (!ro)
        return 1;
    pthread_rwlock_rdlock(&ro->lock);
    const struct fl_rollout *r = find(ro, pkgstore_policy_name(policy));
    if (r)
        admitted = admits_locked(r, policy, node, &needs_slot);
    else /* not seen by the driver yet: unstaged policies go at once */
        admitted = goes_at_once(policy);
    pthread_rwlock_unlock(&ro->lock);
    if (!admitted || !needs_slot || !offering)
        return admitted;
    /* max_parallel: a new start takes a slot, and the offer goes into the
     * node's history (Pending) so that the next count sees it */
    uint32_t max = pkgstore_policy_strategy(policy)->max_parallel;
    pthread_rwlock_wrlock(&ro->lock);
    struct fl_rollout *w = find(ro, pkgstore_policy_name(policy));
    admitted = w && admits_locked(w, policy, node, &needs_slot) &&
               (!needs_slot || w->active_now < max);
    if (admitted && needs_slot) {
        w->active_now++;
        w->offers++;
    }
    pthread_rwlock_unlock(&ro->lock);
    if (admitted && needs_slot &&
        fl_hist_append(f, node, (int64_t)time(NULL), pkgstore_policy_package(policy),
                       pkgstore_policy_version(policy), PKGSTORE_ROLLOUT_PENDING,
                       "offered (the rollout's max_parallel admits it)") > 0)
        fl_node_mark_dirty(f, node);
    return admitted;
}

void fl_rollout_gate(fleet *f, struct fl_eval *eval, struct fl_node *node, int offering)
{
    for (size_t i = 0; i < eval->count; i++) {
        if (eval->decisions[i].verdict == PKGSTORE_VERDICT_OFFER &&
            eval->states[i] == PKGSTORE_ROLLOUT_PENDING &&
            !fl_rollout_admits(f, eval->decisions[i].policy, node, offering))
            eval->states[i] = PKGSTORE_ROLLOUT_WAITING;
    }
}

/* ---------------------------------------------------------------- the tick: counting */

enum ro_class { RC_EXCLUDED, RC_DONE, RC_ACTIVE, RC_PENDING, RC_FAILED };

struct tick_item {
    struct fl_rollout snap;  /* the record as the walk saw it */
    size_t rank;             /* in the policy set */
    const pkgstore_policy *policy;
    int matches;             /* the record is for the policy's target */
    uint64_t *ranks;         /* the second walk: eligible nodes' ranks */
    size_t nranks, cap_ranks;
};

struct tick {
    fleet *f;
    const struct fl_policies *p;
    struct fl_lookup *lookup;
    struct tick_item *items;
    size_t nitems;
    int64_t now;
    int collect;             /* the second walk: ranks of items with ranks != NULL */
    int failed;
};

/* Where a node stands for a rollout, from its verdict and history. Healthy
 * (done) means the agent reported Upgraded for the version, or runs the
 * digest without having reported anything else for it (it was there
 * before the rollout): running the version while Monitoring is not done. */
static enum ro_class classify(const struct tick *t, const struct tick_item *it,
                              const pkgstore_decision *d, const struct fl_node *node,
                              pkgstore_rollout_state *status)
{
    pkgstore_rollout_state latest;
    int reported = fl_hist_latest(&latest, node, it->snap.package, it->snap.version);
    *status = reported ? latest : PKGSTORE_ROLLOUT_PENDING;
    switch (d->verdict) {
    case PKGSTORE_VERDICT_INCOMPATIBLE:
    case PKGSTORE_VERDICT_UNMET:
    case PKGSTORE_VERDICT_UNRESOLVED:
        return RC_EXCLUDED;
    case PKGSTORE_VERDICT_CURRENT:
        if (reported && (in_progress(latest) || failed_state(latest)))
            return in_progress(latest) ? RC_ACTIVE : RC_FAILED;
        *status = PKGSTORE_ROLLOUT_UPGRADED;
        return RC_DONE;
    case PKGSTORE_VERDICT_OFFER:
        break;
    }
    if (!reported) {
        uint32_t deadline = pkgstore_policy_strategy(d->policy)->deadline_s;
        if (deadline && t->now - node->last_seen > (int64_t)deadline &&
            t->now - it->snap.batch_started > (int64_t)deadline) {
            *status = PKGSTORE_ROLLOUT_COUNT; /* silent */
            return RC_FAILED;
        }
        return RC_PENDING;
    }
    if (failed_state(latest))
        return RC_FAILED;
    if (latest == PKGSTORE_ROLLOUT_UPGRADED)
        return RC_DONE;
    /* else upgrading, or offered under max_parallel (Pending) */
    uint32_t deadline = pkgstore_policy_strategy(d->policy)->deadline_s;
    if (deadline && t->now - node->last_seen > (int64_t)deadline) {
        *status = PKGSTORE_ROLLOUT_COUNT;
        return RC_FAILED;
    }
    return RC_ACTIVE;
}

static const char *last_message(const struct fl_node *node, const char *package)
{
    size_t plen = strlen(package);
    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct fl_hist *h = fl_hist_at(node, k - 1);
        if (strncmp(h->key->s, package, plen) == 0 && h->key->s[plen] == '\0')
            return h->message ? h->message->s : "";
    }
    return "";
}

static int tick_node(struct fl_node *node, void *payload)
{
    struct tick *t = payload;
    struct fl_eval eval = {0};
    fleet_error err;

    if (!node->profile)
        return 0;
    if (fl_evaluate(&eval, t->p, node->profile, node, t->lookup, &err) < 0) {
        t->failed = 1;
        return 1;
    }
    for (size_t i = 0; i < eval.count; i++) {
        const pkgstore_decision *d = &eval.decisions[i];
        struct tick_item *it = NULL;
        for (size_t k = 0; k < t->nitems && !it; k++) {
            if (t->items[k].rank == d->rank && t->items[k].matches)
                it = &t->items[k];
        }
        if (!it)
            continue;
        pkgstore_rollout_state status;
        enum ro_class cls = classify(t, it, d, node, &status);
        if (cls == RC_EXCLUDED)
            continue;
        uint64_t rank = pkgstore_rollout_rank(it->snap.policy, node->id);
        if (t->collect) {
            if (!it->ranks)
                continue;
            if (it->nranks == it->cap_ranks) {
                size_t cap = it->cap_ranks ? it->cap_ranks * 2 : 1024;
                uint64_t *grown = realloc(it->ranks, cap * sizeof(*grown));
                if (!grown) {
                    t->failed = 1;
                    fl_eval_done(&eval);
                    return 1;
                }
                it->ranks = grown;
                it->cap_ranks = cap;
            }
            it->ranks[it->nranks++] = rank;
            continue;
        }
        struct ro_live *live = &it->snap.live;
        live->eligible++;
        size_t b = SIZE_MAX;
        for (size_t j = 0; j <= it->snap.batch && b == SIZE_MAX; j++) {
            if (rank < it->snap.limit[j])
                b = j;
        }
        if (b == SIZE_MAX && it->snap.all)
            b = it->snap.batch;
        if (b == SIZE_MAX) {
            /* not admitted: the node waits, unless it is there already */
            if (cls == RC_DONE) {
                live->state_counts[PKGSTORE_ROLLOUT_UPGRADED]++;
            } else {
                live->waiting++;
                live->state_counts[PKGSTORE_ROLLOUT_WAITING]++;
            }
            continue;
        }
        live->nodes[b]++;
        live->state_counts[status < PKGSTORE_ROLLOUT_COUNT ? status : PKGSTORE_ROLLOUT_PENDING]++;
        switch (cls) {
        case RC_DONE: live->done[b]++; break;
        case RC_ACTIVE:
            live->active[b]++;
            live->active_total++;
            break;
        case RC_PENDING: live->pending[b]++; break;
        case RC_FAILED:
            live->failed[b]++;
            if (live->nfailures < RO_FAILURES_KEPT) {
                struct ro_failure *fail = &live->failures[live->nfailures++];
                snprintf(fail->node, sizeof(fail->node), "%s", node->id);
                fail->status = status;
                snprintf(fail->message, sizeof(fail->message), "%s",
                         status == PKGSTORE_ROLLOUT_COUNT ? "" : last_message(node, it->snap.package));
                fail->batch = b;
            }
            break;
        case RC_EXCLUDED: break;
        }
    }
    fl_eval_done(&eval);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The limit that admits the `size` lowest ranks of ranks[0..n): one past
 * the size-th lowest; 0 for none. *all_out when that is every rank. */
static uint64_t limit_for(uint64_t *ranks, size_t n, uint64_t size, int *all_out)
{
    *all_out = 0;
    if (size == 0 || n == 0)
        return 0;
    if (size > n)
        size = n;
    qsort(ranks, n, sizeof(*ranks), cmp_u64);
    uint64_t at = ranks[size - 1];
    if (at == UINT64_MAX) {
        *all_out = 1;
        return UINT64_MAX;
    }
    return at + 1;
}

/* ---------------------------------------------------------------- the tick: deciding */

static void failure_text(char *out, size_t size, const struct ro_live *live)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < live->nfailures && used + 1 < size; i++) {
        const struct ro_failure *fail = &live->failures[i];
        const char *status = fail->status == PKGSTORE_ROLLOUT_COUNT
                                 ? "silent past the deadline"
                                 : pkgstore_rollout_state_name(fail->status);
        int n = snprintf(out + used, size - used, "%s%s %s%s%.120s%s", i ? "; " : "", fail->node,
                         status, fail->message[0] ? " (" : "", fail->message,
                         fail->message[0] ? ")" : "");
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used >= size)
        out[size - 1] = '\0';
}

/* Decide one rollout after the count. Returns 1 when the record changed
 * (then action and why say how), 2 when a new batch needs its limit. */
static int decide(struct fl_rollout *r, const pkgstore_policy *policy, int64_t now,
                  const char **action, char *why, size_t why_size, int *auto_paused)
{
    const pkgstore_rollout_strategy *s = pkgstore_policy_strategy(policy);
    const struct ro_live *live = &r->live;

    *auto_paused = 0;
    if (r->state != FL_RO_RUNNING && r->state != FL_RO_SOAKING)
        return 0;
    if (!r->all && r->limit[r->batch] == 0)
        return live->eligible > 0 ? 2 : 0; /* the batch begins once there are nodes */
    /* the threshold, per started batch */
    for (size_t j = 0; j <= r->batch; j++) {
        uint64_t failed = live->failed[j], acked = r->acked[j];
        uint64_t allowed = pkgstore_rollout_failures_allowed(s, live->nodes[j]);
        if (failed > acked && failed - acked > allowed) {
            char names[700];
            failure_text(names, sizeof(names), live);
            snprintf(why, why_size,
                     "batch %zu: %" PRIu64 " of %" PRIu64 " nodes failed (%" PRIu64
                     " tolerated): %s",
                     j + 1, failed, live->nodes[j], allowed, names);
            snprintf(r->reason, sizeof(r->reason), "%s", why);
            r->state = FL_RO_PAUSED;
            r->paused_auto = 1;
            r->settled_at = 0;
            *action = "auto-pause";
            *auto_paused = 1;
            return 1;
        }
    }
    uint64_t open = 0;
    for (size_t j = 0; j <= r->batch; j++)
        open += live->active[j] + live->pending[j];
    if (live->eligible == 0)
        return 0; /* nothing to settle: a later node starts the batch */
    if (open > 0) {
        if (r->state == FL_RO_SOAKING) {
            r->state = FL_RO_RUNNING; /* a node started again: soak from its end */
            r->settled_at = 0;
            snprintf(why, why_size, "batch %zu: %" PRIu64 " nodes upgrading again", r->batch + 1,
                     open);
            *action = "unsettled";
            return 1;
        }
        return 0;
    }
    /* settled: every admitted node is done or failed within the threshold */
    /* done after the batch that admits every node (a strategy cut short
     * mid-rollout first advances its current batch to that) */
    if (r->all) {
        r->state = FL_RO_DONE;
        r->reason[0] = '\0';
        snprintf(why, why_size, "every batch settled");
        *action = "done";
        return 1;
    }
    if (r->state == FL_RO_RUNNING) {
        r->state = FL_RO_SOAKING;
        r->settled_at = now;
        snprintf(why, why_size, "batch %zu settled; soaking %" PRIu32 " s", r->batch + 1,
                 s->soak_s);
        *action = "soak";
        if (s->soak_s > 0)
            return 1;
    }
    return now - r->settled_at >= (int64_t)s->soak_s ? 2 : 0;
}

static void record_init(struct fl_rollout *r, const pkgstore_policy *policy, const char *previous,
                        int64_t now)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->policy, sizeof(r->policy), "%s", pkgstore_policy_name(policy));
    snprintf(r->package, sizeof(r->package), "%s", pkgstore_policy_package(policy));
    snprintf(r->version, sizeof(r->version), "%s", pkgstore_policy_version(policy));
    snprintf(r->previous, sizeof(r->previous), "%s", previous ? previous : "");
    r->state = FL_RO_RUNNING;
    r->started = r->batch_started = r->changed = now;
    r->all = pkgstore_rollout_batch_count(pkgstore_policy_strategy(policy)) == 1;
    r->limit[0] = r->all ? UINT64_MAX : 0;
}

/* Put r in place of the record of r->policy (or add fresh, allocated by
 * the caller, when there is none), as generation gen; the max_parallel
 * counters stay. The write lock is held. */
static int install(struct fl_rollouts *ro, const struct fl_rollout *r, struct fl_rollout *fresh,
                   uint64_t gen, fleet_error *err)
{
    int error = 0;
    pthread_rwlock_wrlock(&ro->lock);
    struct fl_rollout *current = find(ro, r->policy);
    if (current) {
        uint64_t active_now = current->active_now, offers = current->offers;
        *current = *r;
        current->active_now = active_now;
        current->offers = offers;
        current->generation = gen;
        free(fresh);
    } else if (!fresh) {
        error = fl_fail(err, PKGSTORE_EINTERNAL, "rollout %s: no record", r->policy);
    } else {
        if (ro->count == ro->cap) {
            size_t cap = ro->cap ? ro->cap * 2 : 8;
            struct fl_rollout **grown = realloc(ro->items, cap * sizeof(*grown));
            if (!grown) {
                pthread_rwlock_unlock(&ro->lock);
                free(fresh);
                return fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
            }
            ro->items = grown;
            ro->cap = cap;
        }
        *fresh = *r;
        fresh->generation = gen;
        fresh->active_now = fresh->offers = 0;
        ro->items[ro->count++] = fresh;
    }
    pthread_rwlock_unlock(&ro->lock);
    return error;
}

/* Replace the stored record of r->policy if its generation is still gen
 * (0: there is none), writing it and its audit entry first; with no
 * action, only the counts change. */
static int commit(fleet *f, const struct fl_rollout *r, uint64_t gen, const char *who,
                  const char *action, const char *why, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    struct fl_rollout *fresh = NULL;
    int error = 0;

    pthread_mutex_lock(&ro->write_lock);
    pthread_rwlock_rdlock(&ro->lock);
    struct fl_rollout *current = find(ro, r->policy);
    int stale = current && current->generation != gen;
    pthread_rwlock_unlock(&ro->lock);
    if (stale) /* an operator acted meanwhile: count again */
        goto out;
    if (!action) {
        pthread_rwlock_wrlock(&ro->lock);
        if ((current = find(ro, r->policy)) && current->generation == gen) {
            current->live = r->live; /* counts only */
            /* the offers made while the walk counted may be counted
             * twice: never fewer than there are */
            current->active_now = r->live.active_total + (current->offers - r->offers);
        }
        pthread_rwlock_unlock(&ro->lock);
        goto out;
    }
    if (!current && !(fresh = calloc(1, sizeof(*fresh)))) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
        goto out;
    }
    if ((error = persist(f, r->policy, r, who, action, why, err)) < 0)
        goto out;
    error = install(ro, r, fresh, gen + 1, err);
    fresh = NULL; /* now owned by the set, or freed */
out:
    free(fresh);
    pthread_mutex_unlock(&ro->write_lock);
    return error;
}

static void log_transition(const char *policy, const char *action, const struct fl_rollout *r,
                           const char *why)
{
    char q[300], w[1400];
    log_msg(strcmp(action, "auto-pause") == 0 ? LOG_WARN : LOG_INFO, "rollout",
            "policy=%s action=%s state=%s batch=%zu version=%s why=%s",
            log_quote(q, sizeof(q), policy), action, fl_rollout_state_name(r->state),
            r->batch + 1, r->version, log_quote(w, sizeof(w), why));
}

int fleet_rollout_tick(fleet *f, int64_t now, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    struct fl_policies *p = NULL;
    struct fl_lookup lookup = {0};
    struct tick t = {0};
    int error = 0;

    if (!ro)
        return 0;
    if ((error = fl_targets_refresh(f)) < 0)
        return fl_fail_lib(err, error, "registry");
    if (!(p = fl_policies_get(f, err)))
        return err->code;
    size_t npolicies = pkgstore_policies_count(p->set);
    if (fl_lookup_init(&lookup, f, npolicies) < 0 ||
        !(t.items = calloc(npolicies ? npolicies : 1, sizeof(*t.items)))) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
        goto out;
    }
    t.f = f;
    t.p = p;
    t.lookup = &lookup;
    t.now = now;

    /* records of deleted policies go */
    pthread_rwlock_rdlock(&ro->lock);
    char gone[PKGSTORE_POLICY_NAME_MAX + 1] = "";
    for (size_t i = 0; i < ro->count && !gone[0]; i++) {
        if (!pkgstore_policies_find(p->set, ro->items[i]->policy, NULL))
            snprintf(gone, sizeof(gone), "%s", ro->items[i]->policy);
    }
    pthread_rwlock_unlock(&ro->lock);
    if (gone[0]) {
        pthread_mutex_lock(&ro->write_lock);
        if ((error = persist(f, gone, NULL, NULL, "forget", "the policy was deleted", err)) == 0) {
            pthread_rwlock_wrlock(&ro->lock);
            for (size_t i = 0; i < ro->count; i++) {
                if (strcmp(ro->items[i]->policy, gone) == 0) {
                    free(ro->items[i]);
                    ro->items[i] = ro->items[--ro->count];
                    break;
                }
            }
            pthread_rwlock_unlock(&ro->lock);
        }
        pthread_mutex_unlock(&ro->write_lock);
        if (error < 0)
            goto out;
    }

    /* a snapshot of every policy's record; new targets start a rollout */
    for (size_t rank = 0; rank < npolicies; rank++) {
        const pkgstore_policy *policy = pkgstore_policies_at(p->set, rank);
        struct tick_item *it = &t.items[t.nitems++];
        it->rank = rank;
        it->policy = policy;
        pthread_rwlock_rdlock(&ro->lock);
        const struct fl_rollout *r = find(ro, pkgstore_policy_name(policy));
        if (r)
            it->snap = *r;
        pthread_rwlock_unlock(&ro->lock);
        int same = r && strcmp(it->snap.package, pkgstore_policy_package(policy)) == 0 &&
                   strcmp(it->snap.version, pkgstore_policy_version(policy)) == 0;
        if (!same) {
            uint64_t gen = r ? it->snap.generation : 0;
            struct fl_rollout fresh;
            char why[600];
            record_init(&fresh, policy, r ? it->snap.version : NULL, now);
            snprintf(why, sizeof(why), "%s %s in %zu batch%s%s%s", fresh.package, fresh.version,
                     pkgstore_rollout_batch_count(pkgstore_policy_strategy(policy)),
                     pkgstore_rollout_batch_count(pkgstore_policy_strategy(policy)) == 1 ? ""
                                                                                         : "es",
                     r ? ", after " : "", r ? it->snap.version : "");
            if ((error = commit(f, &fresh, gen, NULL, "start", why, err)) < 0)
                goto out;
            log_transition(fresh.policy, "start", &fresh, why);
            pthread_rwlock_rdlock(&ro->lock);
            r = find(ro, pkgstore_policy_name(policy));
            if (r)
                it->snap = *r;
            pthread_rwlock_unlock(&ro->lock);
            if (!r)
                continue;
        }
        it->matches = 1;
        memset(&it->snap.live, 0, sizeof(it->snap.live));
        it->snap.live.at = now;
    }

    /* done and aborted rollouts change only by a new version or an
     * operator: no walk over the fleet for them */
    int need_walk = 0;
    for (size_t k = 0; k < t.nitems; k++) {
        const struct fl_rollout *snap = &t.items[k].snap;
        if (t.items[k].matches &&
            (snap->state == FL_RO_RUNNING || snap->state == FL_RO_SOAKING ||
             snap->state == FL_RO_PAUSED))
            need_walk = 1;
        else
            t.items[k].matches = 0;
    }
    if (!need_walk)
        goto out;
    fl_nodes_foreach(f, tick_node, &t);
    if (t.failed) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
        goto out;
    }

    /* decide; batches that start need a second walk for their limits */
    int need_ranks = 0;
    for (size_t k = 0; k < t.nitems; k++) {
        struct tick_item *it = &t.items[k];
        if (!it->matches)
            continue;
        struct fl_rollout next = it->snap;
        const char *action = NULL;
        char why[1024] = "";
        int auto_paused = 0;
        int verdict = decide(&next, it->policy, now, &action, why, sizeof(why), &auto_paused);
        if (verdict == 2) {
            /* the next batch starts: its limit comes from the ranks */
            it->ranks = malloc(1024 * sizeof(*it->ranks));
            it->cap_ranks = 1024;
            if (!it->ranks) {
                error = fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
                goto out;
            }
            need_ranks = 1;
            continue;
        }
        if ((error = commit(f, &next, it->snap.generation, NULL, verdict ? action : NULL, why,
                            err)) < 0)
            goto out;
        if (verdict) {
            log_transition(next.policy, action, &next, why);
            if (auto_paused)
                atomic_fetch_add(&ro->auto_pauses, 1);
        }
    }
    if (!need_ranks)
        goto out;
    t.collect = 1;
    fl_nodes_foreach(f, tick_node, &t);
    if (t.failed) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "rollout: out of memory");
        goto out;
    }
    for (size_t k = 0; k < t.nitems; k++) {
        struct tick_item *it = &t.items[k];
        if (!it->ranks)
            continue;
        const pkgstore_rollout_strategy *s = pkgstore_policy_strategy(it->policy);
        struct fl_rollout next = it->snap;
        char why[300];
        int all = 0;
        /* the next batch, or the current one begins; a strategy cut short
         * mid-rollout makes the current batch the last */
        if ((next.all || next.limit[next.batch] != 0) &&
            next.batch + 1 < pkgstore_rollout_batch_count(s))
            next.batch++;
        uint64_t size = pkgstore_rollout_batch_size(s, next.batch, it->nranks);
        uint64_t limit = limit_for(it->ranks, it->nranks, size, &all);
        if (next.batch + 1 >= pkgstore_rollout_batch_count(s))
            all = 1;
        next.all = all;
        /* limits never shrink: an admission is never revoked */
        uint64_t floor = next.batch > 0 ? next.limit[next.batch - 1] : 0;
        next.limit[next.batch] = all ? UINT64_MAX : (limit > floor ? limit : floor);
        next.acked[next.batch] = 0;
        next.state = FL_RO_RUNNING;
        next.settled_at = 0;
        next.batch_started = now;
        next.reason[0] = '\0';
        snprintf(why, sizeof(why), "batch %zu of %zu: %" PRIu64 " of %zu nodes%s", next.batch + 1,
                 pkgstore_rollout_batch_count(s), all ? (uint64_t)it->nranks : size, it->nranks,
                 all ? " (every node)" : "");
        if ((error = commit(f, &next, it->snap.generation, NULL, "advance", why, err)) < 0)
            goto out;
        log_transition(next.policy, "advance", &next, why);
    }
out:
    for (size_t k = 0; k < t.nitems; k++)
        free(t.items[k].ranks);
    free(t.items);
    fl_lookup_done(&lookup);
    fl_policies_release(p);
    return error;
}

/* ---------------------------------------------------------------- the driver */

static void *driver_main(void *arg)
{
    fleet *f = arg;
    struct fl_rollouts *ro = f->rollouts;
    unsigned int period_ms = f->opts.rollout_tick_ms ? f->opts.rollout_tick_ms : 1000;
    unsigned int wait_ms = period_ms;
    char last_error[512] = "";

    pthread_mutex_lock(&ro->wake_lock);
    while (!ro->stop) {
        if (!ro->kick) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += wait_ms / 1000;
            until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&ro->wake, &ro->wake_lock, &until);
        }
        if (ro->stop)
            break;
        ro->kick = 0;
        pthread_mutex_unlock(&ro->wake_lock);
        fleet_error err = {0};
        int64_t started_ms = fl_now_ms();
        int rc = fleet_rollout_tick(f, (int64_t)time(NULL), &err);
        /* a round costs a walk over the fleet: at most a tenth of a core */
        int64_t took_ms = fl_now_ms() - started_ms;
        wait_ms = took_ms * 10 > (int64_t)period_ms ? (unsigned int)(took_ms * 10) : period_ms;
        if (wait_ms > 60000)
            wait_ms = 60000;
        if (rc < 0) {
            if (strcmp(last_error, err.message) != 0) /* once per distinct failure */
                log_msg(LOG_ERROR, "rollout tick failed", "error=\"%s\"", err.message);
            snprintf(last_error, sizeof(last_error), "%s", err.message);
        } else {
            last_error[0] = '\0';
        }
        pthread_mutex_lock(&ro->wake_lock);
    }
    pthread_mutex_unlock(&ro->wake_lock);
    return NULL;
}

int fl_rollout_driver_start(fleet *f, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    if (pthread_create(&ro->thread, NULL, driver_main, f) != 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: cannot start the rollout thread");
    ro->running = 1;
    return 0;
}

void fl_rollout_driver_stop(fleet *f)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro || !ro->running)
        return;
    pthread_mutex_lock(&ro->wake_lock);
    ro->stop = 1;
    pthread_cond_signal(&ro->wake);
    pthread_mutex_unlock(&ro->wake_lock);
    pthread_join(ro->thread, NULL);
    ro->running = 0;
}

void fl_rollout_kick(fleet *f)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro)
        return;
    pthread_mutex_lock(&ro->wake_lock);
    ro->kick = 1;
    pthread_cond_signal(&ro->wake);
    pthread_mutex_unlock(&ro->wake_lock);
}

/* ---------------------------------------------------------------- operator actions */

static int policy_with_version(pkgstore_policy **out, const pkgstore_policy *src, const char *version)
{
    pkgstore_policy *copy = NULL;
    int error;
    *out = NULL;
    if ((error = pkgstore_policy_new(&copy, pkgstore_policy_name(src), pkgstore_policy_package(src),
                                     version)) < 0 ||
        (error = pkgstore_policy_set_selector(copy, pkgstore_policy_selector_text(src))) < 0 ||
        (error = pkgstore_policy_set_priority(copy, pkgstore_policy_priority(src))) < 0 ||
        (error = pkgstore_policy_set_type(copy, pkgstore_policy_type(src))) < 0 ||
        (error = pkgstore_policy_set_strategy(copy, pkgstore_policy_strategy(src))) < 0) {
        pkgstore_policy_free(copy);
        return error;
    }
    *out = copy;
    return 0;
}

int fleet_rollout_action(fleet *f, const char *name, const char *action, int revert,
                         const char *who, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    pkgstore_policy *policy = NULL, *back = NULL;
    struct fl_rollout before, next;
    const char *what = action;
    char why[1200];
    int error, found;

    if (strcmp(action, "pause") != 0 && strcmp(action, "resume") != 0 &&
        strcmp(action, "abort") != 0)
        return fl_fail(err, PKGSTORE_EINVALID, "rollout action '%.32s': not pause, resume or abort",
                       action);
    if ((error = pkgstore_policy_get(&policy, f->reg, name)) < 0)
        return fl_fail_lib(err, error, NULL);
    pthread_mutex_lock(&ro->write_lock);
    pthread_rwlock_rdlock(&ro->lock);
    const struct fl_rollout *r = find(ro, name);
    found = r && strcmp(r->version, pkgstore_policy_version(policy)) == 0 &&
            strcmp(r->package, pkgstore_policy_package(policy)) == 0;
    if (found)
        before = *r;
    pthread_rwlock_unlock(&ro->lock);
    if (!found) {
        error = fl_fail(err, PKGSTORE_ECONFLICT,
                        "policy %s: its rollout has not started yet; try again in a moment", name);
        err->retry_after_s = 1;
        goto conflict;
    }
    next = before;
    if (strcmp(action, "pause") == 0) {
        if (before.state == FL_RO_DONE || before.state == FL_RO_ABORTED) {
            error = fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is %s: nothing to pause",
                            name, fl_rollout_state_name(before.state));
            goto conflict;
        }
        next.state = FL_RO_PAUSED;
        next.paused_auto = 0;
        next.settled_at = 0;
        snprintf(next.reason, sizeof(next.reason), "paused by %s", who);
        snprintf(why, sizeof(why), "operator pause");
    } else if (strcmp(action, "resume") == 0) {
        if (before.state != FL_RO_PAUSED &&
            !(before.state == FL_RO_ABORTED && !before.revert_from[0])) {
            error = fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is %s, not paused%s",
                            name, fl_rollout_state_name(before.state),
                            before.revert_from[0] ? " (it was reverted: put the policy again to "
                                                    "start a new rollout)"
                                                  : "");
            goto conflict;
        }
        if (before.live.at == 0) {
            /* counts come with the first round after a start: acknowledge
             * the failures there are, not none */
            error = fl_fail(err, PKGSTORE_ECONFLICT,
                            "policy %s: the rollout has not been counted since the server "
                            "started; try again in a moment",
                            name);
            err->retry_after_s = 1;
            goto conflict;
        }
        /* the failures seen so far are accepted: only new ones count */
        for (size_t j = 0; j <= before.batch; j++)
            next.acked[j] = before.live.failed[j] > before.acked[j] ? before.live.failed[j]
                                                                    : before.acked[j];
        snprintf(why, sizeof(why), "operator resume (was: %.1000s)", before.reason);
        next.state = FL_RO_RUNNING;
        next.paused_auto = 0;
        next.settled_at = 0;
        next.reason[0] = '\0';
    } else {
        if (before.state == FL_RO_ABORTED) {
            error = fl_fail(err, PKGSTORE_ECONFLICT, "policy %s: the rollout is aborted already",
                            name);
            goto conflict;
        }
        next.state = FL_RO_ABORTED;
        next.paused_auto = 0;
        snprintf(next.reason, sizeof(next.reason), "aborted by %s", who);
        snprintf(why, sizeof(why), "operator abort");
        if (revert) {
            if (!before.previous[0]) {
                error = fl_fail(err, PKGSTORE_ECONFLICT,
                                "policy %s: no previous version is known to revert to (the "
                                "policy named %s when this rollout started)",
                                name, before.version);
                goto conflict;
            }
            if ((error = policy_with_version(&back, policy, before.previous)) < 0) {
                fl_fail_lib(err, error, "revert");
                goto out;
            }
            /* the record first: heartbeats in between hold the version
             * left (admits_locked) */
            snprintf(next.revert_from, sizeof(next.revert_from), "%s", before.version);
            snprintf(next.version, sizeof(next.version), "%s", before.previous);
            next.previous[0] = '\0';
            snprintf(next.reason, sizeof(next.reason),
                     "aborted by %s; %s offered back to the nodes that moved to %s", who,
                     before.previous, before.version);
            snprintf(why, sizeof(why), "operator abort with revert to %s", before.previous);
            what = "abort-revert";
        }
    }
    next.changed = (int64_t)time(NULL);
    if ((error = persist(f, name, &next, who, what, why, err)) < 0 ||
        (error = install(ro, &next, NULL, before.generation + 1, err)) < 0)
        goto out;
    if (back) {
        if ((error = pkgstore_policy_put(NULL, f->reg, back)) < 0) {
            fleet_error ignored;
            char detail[300];
            int code = error;
            snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
            /* the policy still names the version: so does its record again */
            before.changed = (int64_t)time(NULL);
            if (persist(f, name, &before, who, "abort-revert-failed", detail, &ignored) == 0)
                install(ro, &before, NULL, before.generation + 2, &ignored);
            error = fl_fail(err, code, "policy %s: revert to %s: %s", name, before.previous,
                            detail);
            goto out;
        }
        fleet_policies_changed(f);
    }
    log_transition(name, what, &next, why);
out:
    pthread_mutex_unlock(&ro->write_lock);
    pkgstore_policy_free(policy);
    pkgstore_policy_free(back);
    if (error == 0)
        fl_rollout_kick(f);
    return error;
conflict:
    err->http_status = 409;
    goto out;
}

/* ---------------------------------------------------------------- views */

json_t *fl_rollout_json(fleet *f, const pkgstore_policy *policy)
{
    struct fl_rollouts *ro = f->rollouts;
    const pkgstore_rollout_strategy *s = pkgstore_policy_strategy(policy);
    struct fl_rollout r;
    char when[32];

    if (!ro)
        return json_null();
    pthread_rwlock_rdlock(&ro->lock);
    const struct fl_rollout *found = find(ro, pkgstore_policy_name(policy));
    if (found)
        r = *found;
    pthread_rwlock_unlock(&ro->lock);
    if (!found || strcmp(r.version, pkgstore_policy_version(policy)) != 0 ||
        strcmp(r.package, pkgstore_policy_package(policy)) != 0)
        return json_pack("{s:s, s:s}", "state", "starting", "reason",
                         "the rollout of this version starts at the next tick");
    json_t *batches = json_array();
    size_t count = pkgstore_rollout_batch_count(s);
    for (size_t j = 0; batches && j < count; j++) {
        char amount[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE];
        pkgstore_rollout_amount all = {10000, 1};
        pkgstore_rollout_amount_format(amount, s->nbatches ? &s->batches[j] : &all);
        const char *state = j < r.batch ? "started" : j == r.batch ? "current" : "next";
        json_t *b = json_pack("{s:I, s:s, s:s}", "batch", (json_int_t)j + 1, "size", amount,
                              "state", state);
        if (b && j <= r.batch && j < PKGSTORE_ROLLOUT_BATCHES_MAX) {
            /* the admission limit, for checks from outside: a node of rank
             * (pkgstore_rollout_rank()) below it is admitted */
            char limit[24];
            snprintf(limit, sizeof(limit), "%016" PRIx64, r.limit[j]);
            json_object_set_new(b, "rank_below",
                                j == r.batch && r.all ? json_string("all") : json_string(limit));
            json_object_set_new(b, "nodes", json_integer((json_int_t)r.live.nodes[j]));
            json_object_set_new(b, "done", json_integer((json_int_t)r.live.done[j]));
            json_object_set_new(b, "active", json_integer((json_int_t)r.live.active[j]));
            json_object_set_new(b, "pending", json_integer((json_int_t)r.live.pending[j]));
            json_object_set_new(b, "failed", json_integer((json_int_t)r.live.failed[j]));
            json_object_set_new(b, "failures_tolerated",
                                s->has_max_failures
                                    ? json_integer((json_int_t)pkgstore_rollout_failures_allowed(
                                          s, r.live.nodes[j]))
                                    : json_null());
        } else if (b) {
            json_object_set_new(b, "planned_nodes",
                                json_integer((json_int_t)pkgstore_rollout_batch_size(
                                    s, j, r.live.eligible)));
        }
        json_array_append_new(batches, b);
    }
    json_t *failures = json_array();
    for (size_t i = 0; failures && i < r.live.nfailures; i++) {
        const struct ro_failure *fail = &r.live.failures[i];
        json_array_append_new(
            failures, json_pack("{s:s, s:s, s:s, s:I}", "node", fail->node, "status",
                                fail->status == PKGSTORE_ROLLOUT_COUNT
                                    ? "Silent"
                                    : pkgstore_rollout_state_name(fail->status),
                                "message", fail->message, "batch", (json_int_t)fail->batch + 1));
    }
    fleet_time_format(when, r.changed);
    json_t *obj = json_pack("{s:s, s:I, s:I, s:o, s:I, s:I, s:s, s:s, s:o, s:s}", "state",
                            fl_rollout_state_name(r.state), "batch", (json_int_t)r.batch + 1,
                            "batch_count", (json_int_t)count, "batches", batches, "nodes",
                            (json_int_t)r.live.eligible, "waiting", (json_int_t)r.live.waiting,
                            "reason", r.reason, "since", when, "failures", failures, "version",
                            r.version);
    if (obj) {
        json_object_set_new(obj, "paused_by_threshold", json_boolean(r.paused_auto));
        json_object_set_new(obj, "previous_version",
                            r.previous[0] ? json_string(r.previous) : json_null());
        if (r.revert_from[0])
            json_object_set_new(obj, "reverted_from", json_string(r.revert_from));
        if (r.state == FL_RO_SOAKING) {
            char until[32];
            fleet_time_format(until, r.settled_at + (int64_t)s->soak_s);
            json_object_set_new(obj, "soak_until", json_string(until));
        }
    }
    return obj;
}

void fleet_rollout_foreach(fleet *f, fleet_rollout_cb cb, void *ctx)
{
    struct fl_rollouts *ro = f->rollouts;
    if (!ro)
        return;
    pthread_rwlock_rdlock(&ro->lock);
    for (size_t i = 0; i < ro->count; i++)
        cb(ctx, ro->items[i]->policy, fl_rollout_state_name(ro->items[i]->state));
    pthread_rwlock_unlock(&ro->lock);
}

uint64_t fleet_rollout_auto_pauses(fleet *f)
{
    return f->rollouts ? atomic_load(&f->rollouts->auto_pauses) : 0;
}

/* ---------------------------------------------------------------- the audit log */

int fleet_audit_append(fleet *f, const char *who, const char *policy, const char *action,
                       const char *version, const char *why, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    int error;
    if (!ro)
        return 0;
    pthread_mutex_lock(&ro->write_lock);
    error = persist_entry(f, policy, NULL, 0, who, action, why, version, err);
    pthread_mutex_unlock(&ro->write_lock);
    return error;
}

int fleet_audit_json(json_t **out, fleet *f, const char *policy, size_t limit, fleet_error *err)
{
    struct fl_rollouts *ro = f->rollouts;
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    json_t *entries = json_array();
    int rc;

    *out = NULL;
    if (!entries)
        return fl_fail(err, PKGSTORE_ENOMEM, "audit: out of memory");
    if (limit == 0 || limit > RO_AUDIT_MAX)
        limit = limit ? RO_AUDIT_MAX : 100;
    pthread_mutex_lock(&f->flush_lock); /* no transaction may be open while the map grows */
    if ((rc = mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn)) != 0 ||
        (rc = mdb_cursor_open(txn, ro->audit_dbi, &cursor)) != 0) {
        if (txn)
            mdb_txn_abort(txn);
        pthread_mutex_unlock(&f->flush_lock);
        json_decref(entries);
        return fl_fail(err, PKGSTORE_EIO, "audit: lmdb: %s", mdb_strerror(rc));
    }
    /* newest first, then reversed: the last `limit` entries, oldest first */
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
         rc == 0 && json_array_size(entries) < limit;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV)) {
        json_t *entry = json_loadb(val.mv_data, val.mv_size, 0, NULL);
        if (!entry)
            continue;
        const char *entry_policy = json_string_value(json_object_get(entry, "policy"));
        if (policy && (!entry_policy || strcmp(entry_policy, policy) != 0)) {
            json_decref(entry);
            continue;
        }
        json_t *seconds = json_object_get(entry, "time");
        char when[32];
        fleet_time_format(when, (int64_t)json_integer_value(seconds));
        json_object_set_new(entry, "time", json_string(when));
        json_array_insert_new(entries, 0, entry);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    pthread_mutex_unlock(&f->flush_lock);
    *out = json_pack("{s:o}", "entries", entries);
    return *out ? 0 : fl_fail(err, PKGSTORE_ENOMEM, "audit: out of memory");
}
