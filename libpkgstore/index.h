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
 * documented in docs/store-format.md. */
enum ps_index_db {
    PS_DB_META = 0,  /* index-wide settings */
    PS_DB_BLOBS,     /* digest(32) -> blob record */
    PS_DB_PACKAGES,  /* name\0version\0platform -> package record */
    PS_DB_MANIFESTS, /* name\0version -> manifest record (registry) */
    PS_DB_PINS,      /* digest(32) -> pin reason (gc roots) */
    PS_DB_POLICIES,  /* policy name -> policy JSON (policy) */
    PS_DB_NODES,     /* node id -> node JSON (policy) */
    PS_DB_COUNT
};

/* Open or create the environment in dir (created if missing unless
 * read_only). Clears stale readers. no_sync maps to MDB_NOSYNC (the store's
 * PKGSTORE_DURABILITY_NONE). map_size 0 means the default. */
int ps_index_open(ps_index **out, const char *dir, int read_only, int no_sync,
                  uint64_t map_size);
void ps_index_free(ps_index *index);

MDB_dbi ps_index_dbi(ps_index *index, enum ps_index_db db);

/* Runs fn inside a transaction. fn returns 0 to commit (write) or a
 * negative PKGSTORE_E* code to abort; that code is returned. fn may be run
 * more than once (after the map was grown), so it must only act through the
 * txn and must reset anything it writes to payload at its start. Safe from
 * many threads at once; write transactions are serialised by LMDB across
 * threads and processes. */
typedef int (*ps_index_txn_fn)(MDB_txn *txn, ps_index *index, void *payload);
int ps_index_write(ps_index *index, ps_index_txn_fn fn, void *payload);
int ps_index_read(ps_index *index, ps_index_txn_fn fn, void *payload);

/* Translate an MDB return code into a PKGSTORE_E* code and set the detail
 * "lmdb: <mdb_strerror>: <formatted context>". MDB_NOTFOUND gives
 * PKGSTORE_ENOTFOUND, MDB_MAP_FULL is handled by ps_index_write() itself. */
int ps_index_error(int mdb_rc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
