/*
 * server/fleet/fleet.c - the fleet handle: options, open (policies, the
 * node records on disk, the flusher), close, and its health.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet_impl.h"

void fleet_options_init(fleet_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->heartbeat_interval_s = 30;
    opts->history_max = 32;
    opts->max_nodes = 200000;
    opts->expiry_s = 30u * 24 * 3600;
    opts->new_nodes_per_s = 50;
    opts->new_nodes_burst = 2000;
    opts->flush_interval_ms = 1000;
}

static void fleet_free(fleet *f)
{
    fl_nodes_free(f);
    fl_trust_free(f); /* after the nodes, which count themselves out of it */
    fl_targets_free(f);
    fl_policies_release(f->policies);
    fl_rollouts_free(f);
    fl_store_close(f);
    for (size_t s = 0; s < FL_INTERN_STRIPES; s++) {
        free(f->stripes[s].strs);
        free(f->stripes[s].profiles);
        pthread_mutex_destroy(&f->stripes[s].lock);
    }
    free(f->buckets);
    pthread_mutex_destroy(&f->policies_lock);
    pthread_rwlock_destroy(&f->targets_lock);
    pthread_mutex_destroy(&f->rate_lock);
    pthread_mutex_destroy(&f->flush_lock);
    pthread_mutex_destroy(&f->flusher_lock);
    pthread_cond_destroy(&f->flusher_cond);
    pthread_mutex_destroy(&f->stats_lock);
    free(f);
}

int fleet_open(fleet **out, pkgstore_registry *reg, const fleet_options *opts, fleet_error *err)
{
    fleet *f;
    int error;

    *out = NULL;
    if (!opts->dir || !*opts->dir)
        return fl_fail(err, PKGSTORE_EINVALID, "fleet: no directory");
    if (opts->history_max < 1 || opts->history_max > FL_HISTORY_LIMIT)
        return fl_fail(err, PKGSTORE_EINVALID, "fleet: history_max %u is outside 1..%d",
                       opts->history_max, FL_HISTORY_LIMIT);
    if (!(f = calloc(1, sizeof(*f))))
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
    f->reg = reg;
    f->opts = *opts;
    f->lock_fd = -1;
    if (!f->opts.flush_interval_ms)
        f->opts.flush_interval_ms = 1000;
    for (size_t s = 0; s < FL_INTERN_STRIPES; s++)
        pthread_mutex_init(&f->stripes[s].lock, NULL);
    pthread_mutex_init(&f->policies_lock, NULL);
    pthread_rwlock_init(&f->targets_lock, NULL);
    pthread_mutex_init(&f->rate_lock, NULL);
    pthread_mutex_init(&f->flush_lock, NULL);
    pthread_mutex_init(&f->flusher_lock, NULL);
    pthread_cond_init(&f->flusher_cond, NULL);
    pthread_mutex_init(&f->stats_lock, NULL);
    pthread_mutex_init(&f->trust_lock, NULL);
    if (fl_nodes_init(f) < 0) {
        error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory");
        goto fail;
    }
    struct fl_policies *p = fl_policies_get(f, err); /* a corrupt policy fails the start */
    if (!p) {
        error = err->code;
        goto fail;
    }
    fl_policies_release(p);
    if ((error = fl_store_open(f, err)) < 0 || (error = fl_store_load(f, err)) < 0)
        goto fail;
    f->last_expiry = (int64_t)time(NULL); /* fl_store_load() dropped the expired records */
    if (!opts->no_flusher && ((error = fl_flusher_start(f, err)) < 0 ||
                              (error = fl_rollout_driver_start(f, err)) < 0))
        goto fail;
    *out = f;
    return 0;
fail:
    fl_rollout_driver_stop(f);
    fl_flusher_stop(f);
    fleet_free(f);
    return error;
}

int fleet_flush(fleet *f, fleet_error *err)
{
    return fl_nodes_flush(f, 1, err);
}

int fleet_close(fleet *f, fleet_error *err)
{
    int error = 0;
    if (!f)
        return 0;
    fl_rollout_driver_stop(f);
    fl_flusher_stop(f);
    error = fl_nodes_flush(f, 1, err);
    fleet_free(f);
    return error;
}

void fleet_stats_get(fleet *f, fleet_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->nodes = atomic_load(&f->node_count);
    out->profiles = atomic_load(&f->profile_count);
    out->unsaved = atomic_load(&f->unsaved);
    out->flushes_failed = atomic_load(&f->flushes_failed);
    out->nodes_expired = atomic_load(&f->nodes_expired);
    out->nodes_refused = atomic_load(&f->nodes_refused);
    out->nodes_throttled = atomic_load(&f->nodes_throttled);
    pthread_mutex_lock(&f->stats_lock);
    out->degraded = f->degraded;
    memcpy(out->last_error, f->last_error, sizeof(out->last_error));
    pthread_mutex_unlock(&f->stats_lock);
}
