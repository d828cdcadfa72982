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

    /* store lock (flock on <store>/lock), nesting per handle */
    pthread_mutex_t lock_mutex;
    pthread_cond_t lock_cond;
    int lock_fd;
    unsigned int shared_count;
    unsigned int exclusive_depth;
    pthread_t exclusive_owner;

    /* batch durability: blobs linked but not yet synced nor recorded */
    pthread_mutex_t batch_mutex;
    ps_pending_blob *pending;
    size_t pending_len, pending_cap;
    int batch_dirty;
};

/* Open (creating when create is set) blobs/sha256/xx for digest; *created is
 * set when the directory was made now (its parent then needs an fsync). */
int ps_store_fanout_open(int *fd_out, int *created, pkgstore_store *store,
                         const pkgstore_digest *digest, int create);

/* fsync a directory relative to the store root ("" is the root). */
int ps_store_fsync_dir(pkgstore_store *store, const char *relpath);

/* Hash everything in fd from offset 0 (mmap, falling back to read). */
int ps_store_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd);

/* Record a committed blob: now (FSYNC, NONE) or at the next sync (BATCH). */
int ps_store_record_blob(pkgstore_store *store, const pkgstore_digest *digest, uint64_t size);

/* Create a temporary file in tmp/ per the store's mode. *name_out receives
 * the name for PS_TMP_NAMED (size >= 64) or "" for an O_TMPFILE. */
int ps_store_tmp_create(int *fd_out, char *name_out, size_t name_size, pkgstore_store *store);

/* Link a finished temporary file into dir_fd/name without replacing.
 * Returns 0 when linked, PKGSTORE_EEXISTS when the name already exists. */
int ps_store_tmp_link(pkgstore_store *store, int tmp_fd, const char *tmp_name, int dir_fd,
                      const char *name, const char *what);

/* Drop a temporary file (unlink the named one). */
void ps_store_tmp_discard(pkgstore_store *store, int tmp_fd, const char *tmp_name);

/* Test hook: force a temporary-file mode (fault injection and coverage). */
void ps_store_set_tmp_mode(pkgstore_store *store, enum ps_tmp_mode mode);

/* Decompress a .zst copy from fd and hash the result (store_zstd.c). */
int ps_store_zstd_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd);

/* Write the .zst copy of a blob already opened as blob_fd (store_zstd.c). */
int ps_store_zstd_write_fd(pkgstore_store *store, const pkgstore_digest *digest, int blob_fd);

#endif
