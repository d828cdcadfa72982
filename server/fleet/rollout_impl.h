/*
 * server/fleet/rollout_impl.h - what the rollout files share: the record of
 * a policy's rollout, the set of them, and the helpers that write and
 * install a transition.
 *
 * rollout.c: admission (per heartbeat), the driver's rounds and its
 * thread; rollout_store.c: records in the fleet's LMDB environment and
 * the audit log; rollout_ops.c: operators' actions and the status view.
 */
#ifndef PKGSTORED_ROLLOUT_IMPL_H
#define PKGSTORED_ROLLOUT_IMPL_H

#include "fleet_impl.h"

#define RO_FAILURES_KEPT 10 /* failed nodes named in a pause's reason */
#define RO_AUDIT_MAX 1000   /* entries per GET */

struct ro_failure {
    char node[FL_NODE_ID_MAX + 1];
    pkgstore_rollout_state status; /* PKGSTORE_ROLLOUT_COUNT: silent */
    char message[256];
    size_t batch;
};

struct ro_live { /* the last tick's counts: not persisted */
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
    size_t batch; /* the batch started last */
    int all;      /* the last batch: every node */
    uint64_t limit[PKGSTORE_ROLLOUT_BATCHES_MAX];
    uint64_t acked[PKGSTORE_ROLLOUT_BATCHES_MAX]; /* failures a resume accepted */
    int64_t started, batch_started, settled_at, changed;
    char reason[1024];
    uint64_t generation; /* moved by every change */
    /* --max-parallel: nodes offered or upgrading now (the last count plus
     * the offers since), and offers ever made (not persisted) */
    uint64_t active_now, offers;
    struct ro_live live;
};

struct fl_rollouts {
    pthread_rwlock_t lock;      /* the records: heartbeats read, installs write */
    pthread_mutex_t write_lock; /* one transition at a time; audit_seq */
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

/* The record of policy, or NULL; the set's lock is held. */
struct fl_rollout *fl_ro_find(struct fl_rollouts *ro, const char *policy);

/* Write r (or delete the record of policy when r is NULL) and one audit
 * entry, in one transaction, under the fleet's flush lock. The caller
 * holds the write lock, not the set's lock. */
int fl_ro_persist(fleet *f, const char *policy, const struct fl_rollout *r, const char *who,
                  const char *action, const char *why, fleet_error *err);
/* fl_ro_persist() with touch_record 0: the audit entry only (with version). */
int fl_ro_persist_entry(fleet *f, const char *policy, const struct fl_rollout *r, int touch_record,
                        const char *who, const char *action, const char *why, const char *version,
                        fleet_error *err);
/* Put r in place of the record of r->policy, or add fresh (allocated by
 * the caller) when there is none, as generation gen. The write lock is held. */
int fl_ro_install(struct fl_rollouts *ro, const struct fl_rollout *r, struct fl_rollout *fresh,
                  uint64_t gen, fleet_error *err);
/* The log line of a transition. */
void fl_ro_log(const char *policy, const char *action, const struct fl_rollout *r, const char *why);

#endif
