/*
 * Test helper: write index records directly, bypassing the library's
 * writers, to give them chosen timestamps (gc and index tests).
 */
#ifndef TEST_INDEX_FIXTURE_H
#define TEST_INDEX_FIXTURE_H

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

#endif
