/*
 * store_batch: PKGSTORE_DURABILITY_BATCH. Blobs committed in a batch are
 * linked but neither synced nor recorded: their records wait in the
 * handle's pending list (and the handle keeps the store lock shared, see
 * store_lock.c) until pkgstore_store_sync() makes the whole batch durable
 * with one syncfs(), records it in one transaction and syncs the index.
 * Invariant 2 (a record never points at a blob that is not durable) holds
 * throughout.
 */
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int ps_store_record_blob(pkgstore_store *store, const pkgstore_digest *digest, uint64_t size,
                         int *yield)
{
    int error = 0;
    *yield = 0;
    if (store->opts.durability != PKGSTORE_DURABILITY_BATCH)
        return ps_index_blob_put(store->index, digest, size);
    pthread_mutex_lock(&store->batch_mutex);
    if (store->pending_len == store->pending_cap) {
        size_t cap = store->pending_cap ? store->pending_cap * 2 : 64;
        ps_pending_blob *grown = realloc(store->pending, cap * sizeof(*grown));
        if (grown == NULL) {
            error = ps_error_set(PKGSTORE_ENOMEM, "store: growing the batch list");
            goto out;
        }
        store->pending = grown;
        store->pending_cap = cap;
    }
    store->pending[store->pending_len].digest = *digest;
    store->pending[store->pending_len].size = size;
    store->pending_len++;
    store->batch_dirty = 1;
    /* until the sync records it, the blob stays under the lock */
    *yield = ps_store_lock_hold_for_batch(store);
out:
    pthread_mutex_unlock(&store->batch_mutex);
    return error;
}

static int record_pending_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    pkgstore_store *store = payload;
    int error;
    for (size_t i = 0; i < store->pending_len; i++)
        if ((error = ps_index_blob_put_txn(txn, index, &store->pending[i].digest,
                                           store->pending[i].size)) < 0)
            return error;
    return 0;
}

static int syncfs_error(pkgstore_store *store)
{
    int error = ps_error_errno(errno, "%s: syncfs", store->path);
    return error == PKGSTORE_ENOSPC ? error : PKGSTORE_EIO;
}

PKGSTORE_API int pkgstore_store_sync(pkgstore_store *store)
{
    int error = 0, rc;
    if (store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "store sync: NULL store");
    if (store->opts.durability != PKGSTORE_DURABILITY_BATCH || store->opts.read_only)
        return 0;
    pthread_mutex_lock(&store->batch_mutex);
#ifdef PKGSTORE_TEST_HOOKS
    if (store->fail_sync) {
        error = ps_error_set(store->fail_sync, "%s: sync failed (test hook)", store->path);
        goto out;
    }
#endif
    if (store->batch_dirty) {
        /* one syncfs makes every blob of the batch (data and directories)
         * durable; only then may the index refer to them (invariant 2) */
        if (syncfs(store->root_fd) < 0) {
            error = syncfs_error(store);
            goto out;
        }
        /* all the batch's records in one transaction */
        if (store->pending_len > 0 &&
            (error = ps_index_write(store->index, record_pending_txn, store)) < 0)
            goto out;
        store->pending_len = 0;
        /* the index runs without per-transaction syncs in batch mode */
        if ((rc = mdb_env_sync(ps_index_env(store->index), 1)) != 0) {
            error = ps_index_error(rc, "%s: syncing the index", store->path);
            goto out;
        }
        store->batch_dirty = 0;
    }
    /* every blob of the batch is recorded: the lock may go */
    ps_store_lock_release_batch(store);
out:
    pthread_mutex_unlock(&store->batch_mutex);
    return error;
}

void ps_store_mark_dirty(pkgstore_store *store)
{
    pthread_mutex_lock(&store->batch_mutex);
    store->batch_dirty = 1;
    pthread_mutex_unlock(&store->batch_mutex);
}

