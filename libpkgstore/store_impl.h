/*
 * Private to the store's own files (store.c, store_writer.c, store_fsck.c,
 * store_zstd.c): the handle's layout and helpers shared between them. Other
 * modules use libpkgstore/store.h only.
 */
#ifndef PS_STORE_IMPL_H
#define PS_STORE_IMPL_H

#include <pthread.h>
#include <sys/types.h>

#include "store.h"

#define PS_STORE_FORMAT 1

/* How writers create their temporary file. */
enum ps_tmp_mode {
    PS_TMP_AUTO = 0,   /* O_TMPFILE when the filesystem and /proc allow it */
    PS_TMP_TMPFILE,    /* O_TMPFILE + linkat via /proc/self/fd */
    PS_TMP_NAMED       /* tmp/ingest-<pid>-<random>, flock()ed while in use */
};

/* A thread's shared hold on the store lock, with its nesting depth. */
typedef struct ps_lock_holder {
    pthread_t thread;
    unsigned int depth;
} ps_lock_holder;

enum ps_flock_state { PS_FLOCK_NONE = 0, PS_FLOCK_SHARED, PS_FLOCK_EXCLUSIVE };

typedef struct ps_pending_blob {
    pkgstore_digest digest;
    uint64_t size;
} ps_pending_blob;

struct pkgstore_store {
    char *path;
    int root_fd;  /* the store directory */
    int tmp_fd;   /* tmp/ (-1 when read-only) */
    pkgstore_store_options opts;
    ps_index *index;
    enum ps_tmp_mode tmp_mode;

    /* The store lock (store_lock.c): flock() on <store>/lock, writer
     * priority through an OFD lock on <store>/lock.intent. Holds nest per
     * thread; lock_mutex is never held across a call that can block. */
    pthread_mutex_t lock_mutex;
    pthread_cond_t lock_cond;
    int lock_fd;
    int intent_fd;                  /* -1 when there is none (read-only store) */
    int intent_held;                /* this handle holds the intent lock */
    int flock_state;                /* PS_FLOCK_*, what lock_fd holds */
    int acquiring;                  /* a thread takes the flock, lock_mutex released */
    int exclusive_acquiring;        /* a thread of this handle works towards exclusive */
    ps_lock_holder *holders;        /* the threads holding the lock shared */
    size_t holders_len, holders_cap;
    unsigned int exclusive_depth;
    pthread_t exclusive_owner;
    unsigned int exclusive_waiters; /* threads of this handle waiting for exclusive */
    int batch_hold;                 /* BATCH: held shared while blobs wait for a sync */
    int lock_timeout_ms;            /* < 0: wait as long as it takes */

    /* batch durability: blobs linked but not yet synced nor recorded */
    pthread_mutex_t batch_mutex;
    ps_pending_blob *pending;
    size_t pending_len, pending_cap;
    int batch_dirty;
    int fail_sync; /* set only by the test hook ps_store_test_fail_sync() */
    _Atomic int link_empty_path; /* linkat(AT_EMPTY_PATH): 1 works, -1 refused, 0 unknown */
};

/* Unlink a blob's .zst copy and the blob (missing ones are fine) and sync
 * the fan-out directory per the durability mode. The caller holds the
 * store lock exclusively and has dropped the blob record. */
int ps_store_unlink_blob(pkgstore_store *store, const pkgstore_digest *digest);

/* Open <store>/lock and <store>/lock.intent and set the lock's defaults
 * (store_lock.c); ps_store_lock_close() closes them and frees its state. */
int ps_store_lock_open(pkgstore_store *store);
void ps_store_lock_close(pkgstore_store *store);

/* BATCH: keep the lock shared (the calling thread holds it) until the sync
 * that records the batch, which calls ps_store_lock_release_batch().
 * Returns 1 when a thread of this handle waits for the lock exclusively, so
 * the caller syncs now (another process's wait shows at the next lock). */
int ps_store_lock_hold_for_batch(pkgstore_store *store);
void ps_store_lock_release_batch(pkgstore_store *store);

/* 1 when the calling thread holds the store lock (either way). */
int ps_store_lock_held(pkgstore_store *store);

/* What ps_store_place() did. */
typedef struct ps_store_placed {
    int existed;     /* the blob was there already (nothing of ours linked) */
    int linked_blob; /* this call linked the blob */
    int linked_zst;  /* this call linked its .zst copy */
} ps_store_placed;

/* The streaming writer (store_writer.c; store_add.c feeds it directly). */
struct pkgstore_store_writer {
    pkgstore_store *store;
    int fd;
    char tmp_name[64];
    pkgstore_digest_ctx *ctx;
    int has_expected_digest;
    pkgstore_digest expected_digest;
    int64_t expected_size;
    uint64_t size;
    int failed;
    int unrecorded;           /* the caller records the blob (ps_store_add_buffer_unrecorded) */
    /* after pkgstore_store_writer_link() */
    int linked;               /* the blob is in place */
    ps_store_placed placed;   /* what the link put there */
    pkgstore_digest digest;
    int held_fd;              /* the blob, flock()ed until commit or withdraw (-1: none) */
};


/* Put checked bytes in place as blob digest (the caller holds the store
 * lock shared): the .zst copy first (zstd_copies), then the link, synced
 * per the durability mode. The bytes are *src_fd (a temporary file, named
 * src_name in tmp/ or "" for an O_TMPFILE), or, when *src_fd is -1,
 * data/len, written to a new temporary file (returned in *src_fd and
 * src_name for the caller to discard) only when the blob is missing. On
 * failure nothing of this call is left linked, but *out tells what was. */
int ps_store_place(ps_store_placed *out, pkgstore_store *store, const pkgstore_digest *digest,
                   int *src_fd, char *src_name, size_t src_name_size, const void *data,
                   size_t len);

/* Take back what ps_store_place() linked, under the store lock held
 * exclusively (the calling thread must hold no lock), unless someone now
 * relies on the blob: a record, a reference, or a writer holding it. */
int ps_store_unplace(pkgstore_store *store, const pkgstore_digest *digest,
                     const ps_store_placed *placed);

/* Open (creating when create is set) blobs/sha256/xx for digest; *created is
 * set when the directory was made now (its parent then needs an fsync). */
int ps_store_fanout_open(int *fd_out, int *created, pkgstore_store *store,
                         const pkgstore_digest *digest, int create);

/* fsync a directory relative to the store root ("" is the root). */
int ps_store_fsync_dir(pkgstore_store *store, const char *relpath);

/* Hash everything in fd from offset 0 (mmap, falling back to read). */
int ps_store_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd);

/* Record a committed blob (the calling thread holds the store lock
 * shared): now (FSYNC, NONE) or at the next sync (BATCH, which keeps the
 * lock meanwhile; *yield is then set when an exclusive locker waits and the
 * caller should sync once it has unlocked). */
int ps_store_record_blob(pkgstore_store *store, const pkgstore_digest *digest, uint64_t size,
                         int *yield);

/* Create a temporary file per the store's mode. *name_out receives the
 * name in tmp/ for PS_TMP_NAMED (size >= 64) or "" for an O_TMPFILE. An
 * O_TMPFILE is made in the fan-out directory of near (created if missing),
 * so that its inode is allocated near where it will be linked and ingests
 * spread over the filesystem's inode groups, or in tmp/ when near is NULL.
 * mode is the file's final mode (0444 for a blob). */
int ps_store_tmp_create(int *fd_out, char *name_out, size_t name_size, pkgstore_store *store,
                        const pkgstore_digest *near, mode_t mode);

/* Link a finished temporary file into dir_fd/name without replacing.
 * Returns 0 when linked, PKGSTORE_EEXISTS when the name already exists. */
int ps_store_tmp_link(pkgstore_store *store, int tmp_fd, const char *tmp_name, int dir_fd,
                      const char *name, const char *what);

/* Drop a temporary file (unlink the named one). */
void ps_store_tmp_discard(pkgstore_store *store, int tmp_fd, const char *tmp_name);

#ifdef PKGSTORE_TEST_HOOKS
/* Test hooks (test builds only, see the Makefile). Force a temporary-file
 * mode (fault injection and coverage; PS_TMP_TMPFILE also links through
 * /proc/self/fd instead of linkat(AT_EMPTY_PATH)); make every pkgstore_store_sync() of
 * the handle fail with code (0: work again). */
void ps_store_set_tmp_mode(pkgstore_store *store, enum ps_tmp_mode mode);
void ps_store_test_fail_sync(pkgstore_store *store, int code);
#endif

/* Decompress a .zst copy from fd and hash the result (store_zstd.c). */
int ps_store_zstd_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd);

/* Write the .zst copy of a blob whose bytes blob_fd holds (store_zstd.c),
 * unless there is one; *linked (may be NULL) is set when this call linked
 * it. The bytes need not be linked yet: a writer puts the copy in place
 * before its blob, so that a blob never lacks it. */
int ps_store_zstd_write_fd(int *linked, pkgstore_store *store, const pkgstore_digest *digest,
                           int blob_fd);

/* Make a fan-out directory (and, in FSYNC mode, sync blobs/sha256 when it
 * was new). Errors as mkdir. */
int ps_store_fanout_make(pkgstore_store *store, unsigned int fanout);

#endif
