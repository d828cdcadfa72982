/*
 * Test helpers: write index records directly, bypassing the library's
 * writers, to give them chosen timestamps (gc and index tests).
 */
#ifndef TEST_INDEX_FIXTURE_H
#define TEST_INDEX_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"

struct raw_blob {
    pkgstore_digest digest;
    uint64_t size;
    int64_t added;
};

/* A ps_index_txn_fn: writes a layout-1 blob record (docs/index-format.md)
 * for the struct raw_blob in payload. */
int write_raw_blob(MDB_txn *txn, ps_index *index, void *payload);

/* A manifest record reduced to what gc and fsck must honour:
 * key (name\0version, key_len bytes) -> the manifest digest (32 bytes). */
struct raw_manifest {
    const char *key;
    size_t key_len;
    pkgstore_digest digest;
};

/* A ps_index_txn_fn: writes the struct raw_manifest in payload. */
int write_raw_manifest(MDB_txn *txn, ps_index *index, void *payload);

#endif
