/*
 * Private: the LMDB environment behind <store>/index/.
 *
 * Other modules keep their records in named databases of this one
 * environment and run their transactions through ps_index_write() and
 * ps_index_read(), which hide map growth (MDB_MAP_FULL, MDB_MAP_RESIZED) and
 * translate MDB_* codes into PKGSTORE_E* codes with an "lmdb: ..." detail.
 */
#ifndef PS_INDEX_H
#define PS_INDEX_H

#include <lmdb.h>

#include "pkgstore/index.h"

typedef struct ps_index ps_index;

/* Named databases. Each module owns its own; the key and value layouts are
 * documented in docs/index-format.md. */
enum ps_index_db {
    PS_DB_META = 0,  /* index-wide settings */
    PS_DB_BLOBS,     /* digest(32) -> blob record */
    PS_DB_PACKAGES,  /* name\0version\0platform -> package record */
    PS_DB_MANIFESTS, /* name\0version -> manifest record (registry) */
    PS_DB_PINS,      /* digest(32) -> pin reason (gc roots) */
    PS_DB_POLICIES,  /* policy name -> policy JSON (policy) */
    PS_DB_NODES,     /* node id -> node JSON (policy) */
    PS_DB_SIGNATURES, /* manifest digest(32) envelope digest(32) -> signature record (trust) */
    PS_DB_COUNT
};

/* Open or create the environment in dir (created if missing unless
 * read_only). Clears stale readers. no_sync maps to MDB_NOSYNC (the store's
 * BATCH and NONE modes; BATCH syncs with syncfs() instead). map_size 0
 * means the default. */
int ps_index_open(ps_index **out, const char *dir, int read_only, int no_sync,
                  uint64_t map_size);
void ps_index_free(ps_index *index);

MDB_dbi ps_index_dbi(ps_index *index, enum ps_index_db db);

/* The LMDB environment itself, for benchmarks that compare against plain
 * LMDB on the same pages (LMDB forbids a second handle in one process). */
MDB_env *ps_index_env(ps_index *index);

/* The database's name in the environment ("blobs", "packages", ...). */
const char *ps_index_db_name(enum ps_index_db db);

/* Runs fn inside a transaction. fn returns 0 to commit (write) or a
 * negative PKGSTORE_E* code to abort; that code is returned. fn may be run
 * more than once (after the map was grown), so it must only act through the
 * txn and must reset anything it writes to payload at its start. fn must not
 * start another index transaction (ps_index_* calls included): nesting is
 * refused with PKGSTORE_EINTERNAL, because a map resize would deadlock on
 * it. Safe from many threads at once; write transactions are serialised by
 * LMDB across threads and processes. */
typedef int (*ps_index_txn_fn)(MDB_txn *txn, ps_index *index, void *payload);
int ps_index_write(ps_index *index, ps_index_txn_fn fn, void *payload);
int ps_index_read(ps_index *index, ps_index_txn_fn fn, void *payload);

/* Raw walk over one database, in key order, over the keys that start with
 * prefix (prefix_len 0: all). The records are read in batches, each in its
 * own short read transaction, and cb runs outside any transaction, so it
 * may call ps_index_write(); the walk is therefore not a snapshot. key and
 * val are valid during the call only. A non-zero return from cb stops the
 * walk and is returned. */
typedef int (*ps_index_raw_cb)(const void *key, size_t key_len, const void *val,
                               size_t val_len, void *payload);
int ps_index_foreach(ps_index *index, enum ps_index_db db, const void *prefix,
                     size_t prefix_len, ps_index_raw_cb cb, void *payload);

/* Blob records (PS_DB_BLOBS). put records size and the time added; an
 * existing record keeps its first 'added' time (and takes the new size).
 * del removes the record; a missing record is a success. get: ENOTFOUND. */
int ps_index_blob_put(ps_index *index, const pkgstore_digest *digest, uint64_t size);
int ps_index_blob_put_txn(MDB_txn *txn, ps_index *index, const pkgstore_digest *digest,
                          uint64_t size);
int ps_index_blob_del(ps_index *index, const pkgstore_digest *digest);
int ps_index_blob_get(pkgstore_blob_record *out, ps_index *index,
                      const pkgstore_digest *digest);

/* A package record as the library holds it (opaque to programs: the
 * layout may change freely; the on-disk layout is docs/index-format.md). */
struct pkgstore_package_record {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    char platform[PKGSTORE_PLATFORM_MAX + 1];
    pkgstore_package_type type;
    pkgstore_digest digest;
    uint64_t size;
    char format[PKGSTORE_FORMAT_MAX + 1];
    char entrypoint[PKGSTORE_ENTRYPOINT_MAX + 1];
    int64_t created; /* Unix time (seconds) */
};

/* Package records are written by the registry only, inside its own
 * transaction (put_txn inserts or replaces; del_txn: a missing record is
 * PKGSTORE_ENOTFOUND, without a detail). No blob check: the caller holds
 * the store lock and knows the blob is there. ps_index_package_put() is the
 * same in a transaction of its own, for benchmarks and tests. */
int ps_index_package_put_txn(MDB_txn *txn, ps_index *index,
                             const pkgstore_package_record *record);
int ps_index_package_del_txn(MDB_txn *txn, ps_index *index, const char *name,
                             const char *version, const char *platform);
int ps_index_package_put(ps_index *index, const pkgstore_package_record *record);
int ps_index_package_get(pkgstore_package_record *out, ps_index *index, const char *name,
                         const char *version, const char *platform);

/* Decode a PS_DB_PACKAGES key and value (as fetched inside a transaction
 * by callers that walk the database themselves, e.g. resolve) into *out.
 * Errors: PKGSTORE_ECORRUPT. */
int ps_index_package_decode(pkgstore_package_record *out, const void *key, size_t key_len,
                            const void *val, size_t val_len);

/* For fsck: every record of PS_DB_BLOBS, PS_DB_PACKAGES, PS_DB_MANIFESTS
 * (the value starts with the 32-byte manifest digest) and PS_DB_PINS whose
 * blob is missing is reported to cb as PKGSTORE_FSCK_MISSING (path like
 * "index/packages/<name> <version> <platform>") and dropped when repair.
 * *missing and *repaired (each may be NULL) are incremented. cb may be NULL;
 * its non-zero return stops the check and is returned. */
int ps_index_check_refs(ps_index *index, pkgstore_store *store, int repair, pkgstore_fsck_cb cb,
                        void *payload, uint64_t *missing, uint64_t *repaired);

/* 1 if the index takes writes, 0 if it was opened read-only. */
int ps_index_writable(ps_index *index);

/* The current map size in bytes (for tests and diagnostics). */
uint64_t ps_index_map_size(ps_index *index);

/* The id of the environment's last committed write transaction (any
 * process), read without a transaction; 0 when unknown. It moves on every
 * commit, so "unchanged" proves that nothing in the index changed: the
 * registry polls it before paying for a read transaction. */
uint64_t ps_index_last_txnid(ps_index *index);

/* Translate an MDB return code into a PKGSTORE_E* code and set the detail
 * "lmdb: <mdb_strerror>: <formatted context>". MDB_NOTFOUND gives
 * PKGSTORE_ENOTFOUND, MDB_MAP_FULL is handled by ps_index_write() itself. */
int ps_index_error(int mdb_rc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
