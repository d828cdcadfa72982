/*
 * Test helpers: raw index records (chosen timestamps, bare manifest records).
 */
#include "index_fixture.h"

int write_raw_blob(MDB_txn *txn, ps_index *index, void *payload)
{
    struct raw_blob *raw = payload;
    unsigned char value[24] = {1};
    MDB_val key = {32, raw->digest.bytes}, val = {24, value};
    for (int i = 0; i < 8; i++) {
        value[8 + i] = (unsigned char)(raw->size >> (8 * i));
        value[16 + i] = (unsigned char)((uint64_t)raw->added >> (8 * i));
    }
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, &val, 0);
    return rc ? ps_index_error(rc, "test") : 0;
}

int write_raw_manifest(MDB_txn *txn, ps_index *index, void *payload)
{
    struct raw_manifest *raw = payload;
    MDB_val key = {raw->key_len, (void *)raw->key}, val = {32, raw->digest.bytes};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val, 0);
    return rc ? ps_index_error(rc, "test") : 0;
}
