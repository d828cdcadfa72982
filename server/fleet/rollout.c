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
 * takes effect, so a restart resumes where the rollout stood
 * (rollout_store.c). Operators' actions and the status view are in
 * rollout_ops.c. This file: admission, the driver's rounds, its thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server.h"
#include "rollout_impl.h"

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
    const char *package = pkgstore_policy_package(policy),
               *version = pkgstore_policy_version(policy);
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
    const struct fl_rollout *r = fl_ro_find(ro, pkgstore_policy_name(policy));
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
    struct fl_rollout *w = fl_ro_find(ro, pkgstore_policy_name(policy));
    admitted =
        w && admits_locked(w, policy, node, &needs_slot) && (!needs_slot || w->active_now < max);
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
    struct fl_rollout snap; /* the record as the walk saw it */
    const pkgstore_policy *policy;
    int matches;     /* the record is for the policy's target */
    uint64_t *ranks; /* the second walk: eligible nodes' ranks */
    size_t nranks, cap_ranks;
};

struct tick {
    fleet *f;
    const struct fl_policies *p;
    struct fl_lookup *lookup;
    struct tick_item *items; /* one per policy, by rank */
    size_t nitems;
    int64_t now;
    int collect; /* the second walk: ranks of items with ranks != NULL */
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

/* Where a failure of batch b is kept: a free slot, else the last kept
 * entry of the batch that holds the most of them (the earliest such batch)
 * when that is more than b holds, so that the failing batches share the
 * slots and each can name its own in its reason; NULL: not kept. */
static struct ro_failure *failure_slot(struct ro_live *live, size_t b)
{
    if (live->nfailures < RO_FAILURES_KEPT)
        return &live->failures[live->nfailures++];
    size_t kept[PKGSTORE_ROLLOUT_BATCHES_MAX] = {0};
    for (size_t i = 0; i < live->nfailures; i++)
        kept[live->failures[i].batch]++;
    size_t victim = b == 0 ? 1 : 0;
    for (size_t j = 0; j < PKGSTORE_ROLLOUT_BATCHES_MAX; j++)
        if (j != b && kept[j] > kept[victim])
            victim = j;
    if (kept[victim] <= kept[b])
        return NULL;
    for (size_t i = live->nfailures; i > 0; i--)
        if (live->failures[i - 1].batch == victim)
            return &live->failures[i - 1];
    return NULL;
}

static const char *last_message(const struct fl_node *node, const char *package)
{
    size_t plen = strlen(package);
    for (unsigned int k = node->hlen; k > 0; k--) {
        const struct fl_hist *h = fl_hist_at(node, k - 1);
        const char *hist_package = fl_hist_package(h);
        if (strncmp(hist_package, package, plen) == 0 && hist_package[plen] == '\0')
            return fl_hist_message(h);
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
        /* items[k] is the policy of rank k */
        struct tick_item *it = d->rank < t->nitems ? &t->items[d->rank] : NULL;
        if (!it || !it->matches)
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
        case RC_DONE:
            live->done[b]++;
            break;
        case RC_ACTIVE:
            live->active[b]++;
            live->active_total++;
            break;
        case RC_PENDING:
            live->pending[b]++;
            break;
        case RC_FAILED:
            live->failed[b]++;
            struct ro_failure *fail = failure_slot(live, b);
            if (fail) {
                snprintf(fail->node, sizeof(fail->node), "%s", node->id);
                fail->status = status;
                snprintf(fail->message, sizeof(fail->message), "%s",
                         status == PKGSTORE_ROLLOUT_COUNT ? ""
                                                          : last_message(node, it->snap.package));
                fail->batch = b;
            }
            break;
        case RC_EXCLUDED:
            break;
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

/* The kept failures of batch b, for its reason (all of them when none of
 * b's was kept). */
static void failure_text(char *out, size_t size, const struct ro_live *live, size_t b)
{
    size_t used = 0, of_b = 0;
    out[0] = '\0';
    for (size_t i = 0; i < live->nfailures; i++)
        of_b += live->failures[i].batch == b;
    for (size_t i = 0; i < live->nfailures && used + 1 < size; i++) {
        const struct ro_failure *fail = &live->failures[i];
        if (of_b && fail->batch != b)
            continue;
        const char *status = fail->status == PKGSTORE_ROLLOUT_COUNT
                                 ? "silent past the deadline"
                                 : pkgstore_rollout_state_name(fail->status);
        int n = snprintf(out + used, size - used, "%s%s %s%s%.120s%s", used ? "; " : "", fail->node,
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
            failure_text(names, sizeof(names), live, j);
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
    struct fl_rollout *current = fl_ro_find(ro, r->policy);
    int stale = current && current->generation != gen;
    pthread_rwlock_unlock(&ro->lock);
    if (stale) /* an operator acted meanwhile: count again */
        goto out;
    if (!action) {
        pthread_rwlock_wrlock(&ro->lock);
        if ((current = fl_ro_find(ro, r->policy)) && current->generation == gen) {
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
    if ((error = fl_ro_persist(f, r->policy, r, who, action, why, err)) < 0)
        goto out;
    error = fl_ro_install(ro, r, fresh, gen + 1, err);
    fresh = NULL; /* now owned by the set, or freed */
out:
    free(fresh);
    pthread_mutex_unlock(&ro->write_lock);
    return error;
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
        if ((error = fl_ro_persist(f, gone, NULL, NULL, "forget", "the policy was deleted", err)) ==
            0) {
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
        it->policy = policy;
        pthread_rwlock_rdlock(&ro->lock);
        const struct fl_rollout *r = fl_ro_find(ro, pkgstore_policy_name(policy));
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
            fl_ro_log(fresh.policy, "start", &fresh, why);
            pthread_rwlock_rdlock(&ro->lock);
            r = fl_ro_find(ro, pkgstore_policy_name(policy));
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
        if (t.items[k].matches && (snap->state == FL_RO_RUNNING || snap->state == FL_RO_SOAKING ||
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
            fl_ro_log(next.policy, action, &next, why);
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
        fl_ro_log(next.policy, "advance", &next, why);
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
