/*
 * server/fleet/persist.c - the fleet on disk: an LMDB environment of its own
 * in --fleet-dir (one record per node, the JSON of docs/api.md's node view
 * with integer times), the write-behind flusher, and the expiry of silent
 * nodes.
 *
 * A heartbeat never waits on the disk: it marks its node dirty and a
 * background thread writes dirty nodes in batches. A failed write is never
 * silent: the nodes stay dirty and are retried next round, the failure is
 * logged once (and its recovery), counted in /metrics, and /healthz reports
 * "degraded" until a write succeeds again.
 */
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../server.h"
#include "fleet_impl.h"

#define FORMAT_KEY "format"
#define FORMAT_VALUE "1"
#define MAP_SIZE_START ((size_t)256 << 20)
#define MAP_SIZE_MAX ((size_t)64 << 30)
/* A flusher round that writes this many nodes returns the freed heap. */
#define FL_TRIM_AFTER 1024

/* An LMDB failure. A short write of LMDB's is reported as EIO; when the
 * file system is full, say so. */
static int lmdb_fail(fleet *f, fleet_error *err, int rc, const char *what)
{
    int code = PKGSTORE_EIO;
    const char *text = mdb_strerror(rc);
    if (rc == ENOSPC || rc == EDQUOT) {
        code = PKGSTORE_ENOSPC;
    } else if (rc == EIO) {
        struct statvfs vfs;
        if (statvfs(f->opts.dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20)) {
            code = PKGSTORE_ENOSPC;
            text = "No space left on device (LMDB reported an I/O error)";
        }
    } else if (rc == ENOMEM) {
        code = PKGSTORE_ENOMEM;
    }
    return fl_fail(err, code, "fleet %s: %s: lmdb: %s", f->opts.dir, what, text);
}

int fl_store_open(fleet *f, fleet_error *err)
{
    char lock_path[4200];
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    int rc, fd;

    if (mkdir(f->opts.dir, 0700) < 0 && errno != EEXIST)
        return fl_fail(err, errno == ENOSPC ? PKGSTORE_ENOSPC : PKGSTORE_EIO,
                       "fleet %s: mkdir: %s", f->opts.dir, strerror(errno));
    /* Two servers on one fleet would each think they own every node. */
    snprintf(lock_path, sizeof(lock_path), "%s/pkgstored.lock", f->opts.dir);
    if ((fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: %s", lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return fl_fail(err, PKGSTORE_ELOCKED,
                           "fleet %s: in use by another pkgstored (one server per fleet "
                           "directory; see --fleet-dir)",
                           f->opts.dir);
        return fl_fail(err, PKGSTORE_EIO, "fleet %s: flock: %s", lock_path, strerror(e));
    }
    f->lock_fd = fd;

    if ((rc = mdb_env_create(&f->env)) != 0)
        return lmdb_fail(f, err, rc, "creating the environment");
    mdb_env_set_maxdbs(f->env, 8);
    f->map_size = MAP_SIZE_START;
    mdb_env_set_mapsize(f->env, f->map_size);
    unsigned int flags = MDB_NOTLS | (f->opts.no_fsync ? MDB_NOSYNC : 0);
    if ((rc = mdb_env_open(f->env, f->opts.dir, flags, 0600)) != 0)
        return lmdb_fail(f, err, rc, "opening");
    MDB_envinfo info;
    if (mdb_env_info(f->env, &info) == 0 && info.me_mapsize > f->map_size)
        f->map_size = info.me_mapsize; /* grown by an earlier run */
    if ((rc = mdb_txn_begin(f->env, NULL, 0, &txn)) != 0)
        return lmdb_fail(f, err, rc, "beginning a transaction");
    if ((rc = mdb_dbi_open(txn, "nodes", MDB_CREATE, &f->dbi)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta)) != 0) {
        mdb_txn_abort(txn);
        return lmdb_fail(f, err, rc, "opening the databases");
    }
    MDB_val key = {sizeof(FORMAT_KEY) - 1, FORMAT_KEY}, val;
    rc = mdb_get(txn, meta, &key, &val);
    if (rc == 0 && (val.mv_size != 1 || memcmp(val.mv_data, FORMAT_VALUE, 1) != 0)) {
        mdb_txn_abort(txn);
        return fl_fail(err, PKGSTORE_EUNSUPPORTED,
                       "fleet %s: format %.*s is not this server's (%s)", f->opts.dir,
                       (int)(val.mv_size > 16 ? 16 : val.mv_size), (const char *)val.mv_data,
                       FORMAT_VALUE);
    }
    if (rc == MDB_NOTFOUND) {
        val.mv_size = 1;
        val.mv_data = FORMAT_VALUE;
        rc = mdb_put(txn, meta, &key, &val, 0);
    }
    if (rc == 0) {
        int error = fl_rollouts_open(f, txn, err);
        if (error < 0) {
            mdb_txn_abort(txn);
            return error;
        }
    }
    if (rc != 0 || (rc = mdb_txn_commit(txn)) != 0) {
        if (rc != 0 && txn)
            mdb_txn_abort(txn);
        return lmdb_fail(f, err, rc, "writing the format");
    }
    return 0;
}

void fl_store_close(fleet *f)
{
    if (f->env)
        mdb_env_close(f->env);
    f->env = NULL;
    if (f->lock_fd >= 0)
        close(f->lock_fd);
    f->lock_fd = -1;
}

/* ---------------------------------------------------------------- loading */

struct flush_item {
    char *id;
    char *json; /* NULL: delete the record */
    int held;   /* a dirty node's count in f->unsaved, kept until the write is done */
};

struct flush_batch {
    fleet *f;
    struct flush_item *items;
    size_t count, cap;
    int full;
    int failed;
};

static int batch_add(struct flush_batch *batch, const char *id, char *json);
static void batch_clear(struct flush_batch *batch);
static int batch_write(fleet *f, struct flush_batch *batch, fleet_error *err);

enum load_outcome { LOAD_INSTALLED, LOAD_UNREADABLE, LOAD_EXPIRED };

/* Install a stored record. One that does not parse is skipped: the node
 * comes back on its next heartbeat, and one bad record must not keep the
 * server down. One silent for longer than the expiry is not installed
 * (the caller deletes it). */
static enum load_outcome load_node(fleet *f, const char *data, size_t len, int64_t now)
{
    struct fl_hb *hb = malloc(sizeof(*hb));
    json_t *root = json_loadb(data, len, 0, NULL), *history;
    struct fl_profile *profile = NULL;
    fleet_error ignored;
    enum load_outcome outcome = LOAD_UNREADABLE;

    if (!hb || !root || fl_hb_parse(hb, root, 1, &ignored) < 0)
        goto out;
    int64_t last_seen = (int64_t)json_integer_value(json_object_get(root, "last_seen"));
    if (f->opts.expiry_s && last_seen < now - (int64_t)f->opts.expiry_s) {
        outcome = LOAD_EXPIRED; /* while the server was down */
        goto out;
    }
    if (!(profile = fl_profile_intern(f, hb, fl_hb_hash(hb))))
        goto out;
    uint64_t hash = fl_node_hash(hb->node_id);
    struct fl_shard *shard = fl_shard_of(f, hash);
    struct fl_node *node = fl_node_find(shard, hb->node_id, hash);
    if (node || !(node = fl_node_insert(shard, hb->node_id, hash)))
        goto out;
    atomic_fetch_add(&f->node_count, 1);
    fl_trust_move(f, NULL, profile);
    node->profile = profile;
    profile = NULL; /* now owned by the node */
    node->last_seen = last_seen;
    node->persisted_seen = last_seen;
    history = json_object_get(root, "history");
    for (size_t i = 0; i < json_array_size(history); i++) {
        json_t *h = json_array_get(history, i);
        pkgstore_rollout_state status;
        const char *package = json_string_value(json_object_get(h, "package"));
        const char *status_str = json_string_value(json_object_get(h, "status"));
        if (!package || strlen(package) > PKGSTORE_NAME_MAX || !status_str ||
            pkgstore_rollout_state_parse(&status, status_str) < 0)
            continue;
        const char *version = json_string_value(json_object_get(h, "version"));
        if (version && strlen(version) > PKGSTORE_VERSION_MAX)
            continue;
        fl_hist_append(f, node, (int64_t)json_integer_value(json_object_get(h, "time")), package,
                       version, status, json_string_value(json_object_get(h, "message")));
    }
    outcome = LOAD_INSTALLED;
out:
    if (profile)
        fl_profile_release(f, profile);
    json_decref(root);
    free(hb);
    return outcome;
}

int fl_store_load(fleet *f, fleet_error *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    struct flush_batch expired = {f, NULL, 0, 0, 0, 0};
    size_t loaded = 0, skipped = 0;
    int64_t now = (int64_t)time(NULL);
    int rc;

    if ((rc = mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn)) != 0)
        return lmdb_fail(f, err, rc, "reading the nodes");
    if ((rc = mdb_cursor_open(txn, f->dbi, &cursor)) != 0) {
        mdb_txn_abort(txn);
        return lmdb_fail(f, err, rc, "reading the nodes");
    }
    /* single-threaded at open; the shard locks are not needed */
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        enum load_outcome outcome = load_node(f, val.mv_data, val.mv_size, now);
        char *id = outcome == LOAD_EXPIRED ? strndup(key.mv_data, key.mv_size) : NULL;
        if (outcome == LOAD_INSTALLED)
            loaded++;
        else if (outcome == LOAD_UNREADABLE || !id || batch_add(&expired, id, NULL) < 0)
            skipped++;
        free(id);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND) {
        batch_clear(&expired);
        free(expired.items);
        return lmdb_fail(f, err, rc, "reading the nodes");
    }
    if (skipped)
        log_msg(LOG_WARN, "fleet: node records not loaded (unreadable)", "loaded=%zu skipped=%zu",
                loaded, skipped);
    /* Forget the records of nodes that expired while the server was down,
     * as fl_expire() forgets those that go silent while it runs. */
    if (expired.count > 0) {
        fleet_error delete_err;
        if (batch_write(f, &expired, &delete_err) < 0) {
            char q[600];
            log_msg(LOG_WARN, "fleet: cannot delete expired nodes; retrying at the next start",
                    "nodes=%zu detail=%s", expired.count,
                    log_quote(q, sizeof(q), delete_err.message));
        } else {
            atomic_fetch_add(&f->nodes_expired, expired.count);
            log_msg(LOG_INFO, "fleet: forgot silent nodes", "nodes=%zu silent_for_s=%u",
                    expired.count, f->opts.expiry_s);
        }
    }
    batch_clear(&expired);
    free(expired.items);
    return 0;
}

/* ---------------------------------------------------------------- writing */

static int batch_add(struct flush_batch *batch, const char *id, char *json)
{
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 256;
        struct flush_item *grown = realloc(batch->items, cap * sizeof(*grown));
        if (!grown)
            return -1;
        batch->items = grown;
        batch->cap = cap;
    }
    char *copy = strdup(id);
    if (!copy)
        return -1;
    batch->items[batch->count].id = copy;
    batch->items[batch->count].json = json;
    batch->items[batch->count].held = 0;
    batch->count++;
    return 0;
}

static void batch_clear(struct flush_batch *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        free(batch->items[i].id);
        free(batch->items[i].json);
    }
    batch->count = 0;
}

static int collect_node(struct fl_node *node, void *payload)
{
    struct flush_batch *batch = payload;
    int touched;

    if (!node->profile)
        return 0;
    touched = node->last_seen != node->persisted_seen &&
              (batch->full || node->last_seen - node->persisted_seen >= FL_TOUCH_S);
    if (!node->dirty && !touched)
        return 0;
    if (batch->count == FL_FLUSH_BATCH)
        return 1; /* write this batch, then look again */
    json_t *obj = fl_node_to_json(node, NULL, NULL, 1, 1);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text || batch_add(batch, node->id, text) < 0) {
        free(text);
        batch->failed = 1;
        return 1;
    }
    /* clean from now on, so that a heartbeat during the write marks it
     * again; it stays counted as unsaved until the write is done */
    batch->items[batch->count - 1].held = node->dirty;
    node->dirty = 0;
    node->persisted_seen = node->last_seen;
    return 0;
}

/* Write (or delete) every item of batch in one transaction, growing the map
 * when it is full. The flush lock is held. */
static int batch_write(fleet *f, struct flush_batch *batch, fleet_error *err)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = mdb_txn_begin(f->env, NULL, 0, &txn);
        for (size_t i = 0; rc == 0 && i < batch->count; i++) {
            MDB_val key = {strlen(batch->items[i].id), batch->items[i].id};
            if (batch->items[i].json) {
                MDB_val val = {strlen(batch->items[i].json), batch->items[i].json};
                rc = mdb_put(txn, f->dbi, &key, &val, 0);
            } else if ((rc = mdb_del(txn, f->dbi, &key, NULL)) == MDB_NOTFOUND) {
                rc = 0;
            }
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else if (txn)
            mdb_txn_abort(txn);
        if (rc == MDB_MAP_FULL && f->map_size < MAP_SIZE_MAX) {
            /* no transaction of this process is open: the flush lock
             * serialises every writer, and readers are only at open */
            f->map_size *= 2;
            if ((rc = mdb_env_set_mapsize(f->env, f->map_size)) == 0)
                continue;
        }
        if (rc != 0)
            return lmdb_fail(f, err, rc, "writing node records");
        return 0;
    }
}

/* The write of item failed: its node is dirty again, for the next round. A
 * node collected dirty kept its count in unsaved meanwhile. */
static void requeue(fleet *f, const struct flush_item *item)
{
    uint64_t hash = fl_node_hash(item->id);
    struct fl_shard *shard = fl_shard_of(f, hash);
    pthread_mutex_lock(&shard->lock);
    struct fl_node *node = fl_node_find(shard, item->id, hash);
    if (item->held) {
        if (node && !node->dirty)
            node->dirty = 1;
        else /* counted again since, or gone */
            atomic_fetch_sub(&f->unsaved, 1);
    } else if (node) {
        fl_node_mark_dirty(f, node);
    }
    pthread_mutex_unlock(&shard->lock);
}

/* Record a write's outcome for /healthz and /metrics; log the change. */
static void note_outcome(fleet *f, int error, const fleet_error *err)
{
    pthread_mutex_lock(&f->stats_lock);
    int was = f->degraded;
    if (error < 0) {
        f->degraded = 1;
        snprintf(f->last_error, sizeof(f->last_error), "%.255s", err->message);
    } else {
        f->degraded = 0;
    }
    pthread_mutex_unlock(&f->stats_lock);
    if (error < 0) {
        atomic_fetch_add(&f->flushes_failed, 1);
        if (!was) {
            char q[600];
            log_msg(LOG_ERROR, "fleet: cannot write node records; retrying",
                    "unsaved=%zu detail=%s", atomic_load(&f->unsaved),
                    log_quote(q, sizeof(q), err->message));
        }
    } else if (was) {
        log_msg(LOG_INFO, "fleet: node records written again", "unsaved=%zu",
                atomic_load(&f->unsaved));
    }
}

int fl_nodes_flush(fleet *f, int full, fleet_error *err)
{
    struct flush_batch batch;
    fleet_error local;
    int error = 0, more = 1;

    if (!err)
        err = &local;
    memset(&batch, 0, sizeof(batch));
    batch.f = f;
    batch.full = full;
    pthread_mutex_lock(&f->flush_lock);
    /* Bounded batches keep a flush's memory small; collected nodes are
     * clean, so each pass finds only the rest. */
    while (more && error == 0) {
        batch_clear(&batch);
        more = fl_nodes_foreach(f, collect_node, &batch) != 0 && !batch.failed;
        if (batch.count > 0 && (error = batch_write(f, &batch, err)) < 0) {
            for (size_t i = 0; i < batch.count; i++)
                requeue(f, &batch.items[i]);
        } else {
            /* written: only now do the collected nodes stop counting */
            size_t held = 0;
            for (size_t i = 0; i < batch.count; i++)
                held += (size_t)batch.items[i].held;
            atomic_fetch_sub(&f->unsaved, held);
        }
        if (batch.failed && error == 0)
            error = fl_fail(err, PKGSTORE_ENOMEM, "fleet: out of memory while writing nodes");
    }
    batch_clear(&batch);
    free(batch.items);
    note_outcome(f, error, err);
    pthread_mutex_unlock(&f->flush_lock);
    return error;
}

int fl_store_delete(fleet *f, const char *id, fleet_error *err)
{
    struct flush_batch batch;
    int error;

    memset(&batch, 0, sizeof(batch));
    if (batch_add(&batch, id, NULL) < 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "node %s: out of memory", id);
    error = batch_write(f, &batch, err);
    batch_clear(&batch);
    free(batch.items);
    return error;
}

/* ---------------------------------------------------------------- expiry */

struct expiry {
    int64_t before;
    struct flush_batch batch;
};

static int collect_silent(struct fl_node *node, void *payload)
{
    struct expiry *ex = payload;
    if (node->last_seen < ex->before && batch_add(&ex->batch, node->id, NULL) < 0)
        return 1;
    return 0;
}

void fl_expire(fleet *f, int64_t now)
{
    struct expiry ex;
    fleet_error err;
    size_t forgotten = 0;

    if (!f->opts.expiry_s)
        return;
    memset(&ex, 0, sizeof(ex));
    ex.before = now - (int64_t)f->opts.expiry_s;
    ex.batch.f = f;
    pthread_mutex_lock(&f->flush_lock);
    fl_nodes_foreach(f, collect_silent, &ex);
    if (ex.batch.count > 0 && batch_write(f, &ex.batch, &err) < 0) {
        char q[600];
        log_msg(LOG_WARN, "fleet: cannot delete expired nodes; retrying", "detail=%s",
                log_quote(q, sizeof(q), err.message));
    } else {
        for (size_t i = 0; i < ex.batch.count; i++) {
            const char *id = ex.batch.items[i].id;
            uint64_t hash = fl_node_hash(id);
            struct fl_shard *shard = fl_shard_of(f, hash);
            pthread_mutex_lock(&shard->lock);
            struct fl_node *node = fl_node_find(shard, id, hash);
            /* a heartbeat since the walk keeps it (its record comes back
             * with the next flush) */
            if (node && node->last_seen < ex.before) {
                fl_node_remove(f, shard, id, hash);
                forgotten++;
            } else if (node) {
                fl_node_mark_dirty(f, node);
            }
            pthread_mutex_unlock(&shard->lock);
        }
    }
    if (forgotten) {
        atomic_fetch_add(&f->nodes_expired, forgotten);
        log_msg(LOG_INFO, "fleet: forgot silent nodes", "nodes=%zu silent_for_s=%u", forgotten,
                f->opts.expiry_s);
    }
    batch_clear(&ex.batch);
    free(ex.batch.items);
    pthread_mutex_unlock(&f->flush_lock);
}

/* ---------------------------------------------------------------- the flusher */

static void *flusher_main(void *arg)
{
    fleet *f = arg;
    pthread_mutex_lock(&f->flusher_lock);
    while (!f->flusher_stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += f->opts.flush_interval_ms / 1000;
        deadline.tv_nsec += (long)(f->opts.flush_interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&f->flusher_cond, &f->flusher_lock, &deadline);
        if (f->flusher_stop)
            break;
        pthread_mutex_unlock(&f->flusher_lock);
        /* a failure leaves the nodes dirty for the next round; it is
         * logged and counted by fl_nodes_flush() */
        size_t unsaved = atomic_load(&f->unsaved);
        fl_nodes_flush(f, 0, NULL);
#ifdef __GLIBC__
        /* a large round (a rollout's statuses) leaves its records' texts,
         * JSON objects and LMDB's page copies freed in this thread's
         * arena: give them back rather than keep them in the RSS */
        if (unsaved >= FL_TRIM_AFTER)
            malloc_trim(0);
#endif
        int64_t now = (int64_t)time(NULL);
        /* look for silent nodes every minute, or twice per expiry period
         * when that is shorter */
        int64_t period = f->opts.expiry_s / 2 < 60 ? f->opts.expiry_s / 2 : 60;
        if (f->opts.expiry_s && now - f->last_expiry >= (period > 0 ? period : 1)) {
            f->last_expiry = now;
            fl_expire(f, now);
        }
        pthread_mutex_lock(&f->flusher_lock);
    }
    pthread_mutex_unlock(&f->flusher_lock);
    return NULL;
}

int fl_flusher_start(fleet *f, fleet_error *err)
{
    int rc = pthread_create(&f->flusher, NULL, flusher_main, f);
    if (rc != 0)
        return fl_fail(err, PKGSTORE_ENOMEM, "fleet: starting the flusher: %s", strerror(rc));
    f->flusher_running = 1;
    return 0;
}

void fl_flusher_stop(fleet *f)
{
    if (!f->flusher_running)
        return;
    pthread_mutex_lock(&f->flusher_lock);
    f->flusher_stop = 1;
    pthread_cond_signal(&f->flusher_cond);
    pthread_mutex_unlock(&f->flusher_lock);
    pthread_join(f->flusher, NULL);
    f->flusher_running = 0;
}
