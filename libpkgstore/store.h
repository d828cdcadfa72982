/*
 * Private: what other library modules need from the store.
 */
#ifndef PS_STORE_H
#define PS_STORE_H

#include "pkgstore/store.h"
#include "index.h"

/* Names of the store's temporary files in tmp/ start with this; anything
 * else in tmp/ is not the store's (fsck reports it, nothing deletes it). */
#define PS_STORE_TMP_PREFIX "ingest-"
#define PS_STORE_TMP_PREFIX_LEN 7

/* The store's LMDB index (owned by the store). */
ps_index *ps_store_index(pkgstore_store *store);

/* The store lock (store_lock.c): shared for writers, exclusive for gc,
 * repair and blob deletes. Waits up to the handle's lock timeout
 * (pkgstore_store_set_lock_timeout(); unlimited by default), or not at all
 * with nonblock, then fails with PKGSTORE_ELOCKED. Nests per thread (shared
 * inside exclusive too; asking for exclusive while holding it shared is
 * PKGSTORE_EINVALID). Unlock from the thread that locked; every successful
 * lock is paired with ps_store_unlock(). */
int ps_store_lock(pkgstore_store *store, int exclusive, int nonblock);
void ps_store_unlock(pkgstore_store *store);

/* "blobs/sha256/xx/<hex><suffix>" (relative to the store) into buf.
 * Errors: PKGSTORE_EINVALID if it does not fit (128 bytes always do). */
int ps_store_blob_relpath(char *buf, size_t size, const pkgstore_digest *digest,
                          const char *suffix);

/* "<store>/blobs/sha256/xx/<hex>" (suffix "" or ".zst") into buf.
 * Errors: PKGSTORE_EINVALID if it does not fit. */
int ps_store_blob_path(char *buf, size_t size, const pkgstore_store *store,
                       const pkgstore_digest *digest, const char *suffix);

/* Batch mode: make the next pkgstore_store_sync() flush (after a delete or
 * an index write made through this handle). A no-op in effect in the other
 * modes. */
void ps_store_mark_dirty(pkgstore_store *store);

/* As pkgstore_store_add_buffer(), but the blob record is left to the
 * caller, who writes it (ps_index_blob_put_txn()) in the transaction that
 * also refers to the blob: the registry makes one transaction per change.
 * In BATCH mode the blob is not durable yet: the caller runs
 * pkgstore_store_sync() before that transaction (invariant 2). */
int ps_store_add_buffer_unrecorded(pkgstore_digest *digest_out, pkgstore_store *store,
                                   const void *data, size_t len);

/* 1 when a writer between pkgstore_store_writer_link() and its commit or
 * withdraw holds the blob at rel (relative to dir_fd; it keeps an flock on
 * it), 0 when none does or there is no such file. gc, repair and deletes
 * leave such a blob alone. */
int ps_store_blob_in_flight(int dir_fd, const char *rel);

#endif
