/*
 * trust_store.c - manifest signatures kept in a store (docs/trust.md,
 * "Storage"): each envelope is a blob, and a record of the index's
 * "signatures" database, keyed by the manifest digest then the envelope
 * digest, names it (docs/index-format.md). gc keeps what the records name;
 * the registry drops a manifest's records when it removes or replaces it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "index.h"
#include "pkgstore/registry.h"
#include "registry.h"
#include "store.h"
#include "trust.h"
#include "trust_store.h"

#define RECORD_LAYOUT 1
#define RECORD_SIZE 40 /* layout, 7 reserved, 32 raw key id bytes */
#define KEY_SIZE (2 * PKGSTORE_DIGEST_SIZE)

typedef struct add_op {
    const char *name, *version;
    const char *manifest_key;
    size_t manifest_key_len;
    pkgstore_digest manifest_digest, envelope_digest;
    size_t envelope_len;
    unsigned char record[RECORD_SIZE];
    int existed; /* out */
} add_op;

static int add_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    add_op *op = payload;
    unsigned char key_bytes[KEY_SIZE];
    MDB_val key = {op->manifest_key_len, (void *)op->manifest_key}, val;
    int rc, error;

    op->existed = 0;
    rc = mdb_get(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val);
    if (rc == MDB_NOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no such version", op->name, op->version);
    if (rc != 0)
        return ps_index_error(rc, "read manifest record of %s %s", op->name, op->version);
    if (val.mv_size < PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: short manifest record of %s %s", op->name,
                            op->version);
    if (memcmp(val.mv_data, op->manifest_digest.bytes, PKGSTORE_DIGEST_SIZE) != 0)
        return ps_error_set(PKGSTORE_ECONFLICT,
                            "%s %s: the signature is of another manifest than the registry's",
                            op->name, op->version);
    memcpy(key_bytes, op->manifest_digest.bytes, PKGSTORE_DIGEST_SIZE);
    memcpy(key_bytes + PKGSTORE_DIGEST_SIZE, op->envelope_digest.bytes, PKGSTORE_DIGEST_SIZE);
    key.mv_size = KEY_SIZE;
    key.mv_data = key_bytes;
    val.mv_size = RECORD_SIZE;
    val.mv_data = op->record;
    rc = mdb_put(txn, ps_index_dbi(index, PS_DB_SIGNATURES), &key, &val, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        op->existed = 1;
        return 0;
    }
    if (rc != 0)
        return ps_index_error(rc, "while adding a signature of %s %s", op->name, op->version);
    /* the envelope blob is durable (synced in BATCH mode) */
    if ((error = ps_index_blob_put_txn(txn, index, &op->envelope_digest, op->envelope_len)) < 0)
        return error;
    /* a new signature changes what a version's readers see (pkgstored's
     * offers carry the signatures and are cached by generation) */
    return ps_registry_bump_generation(txn, index);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10;
}

int pkgstore_trust_signature_add(pkgstore_digest *envelope_digest_out, pkgstore_store *store,
                                 const char *name, const char *version, const void *envelope,
                                 size_t len)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], manifest_key[PS_REGISTRY_KEY_MAX];
    pkgstore_trust_envelope *env = NULL;
    char *canonical = NULL;
    size_t canonical_len = 0;
    add_op op;
    int error, locked = 0;

    if (envelope_digest_out)
        memset(envelope_digest_out, 0, sizeof(*envelope_digest_out));
    if (!store)
        return ps_error_set(PKGSTORE_EINVALID, "signature: NULL store");
    if ((error = ps_registry_check_name_version(normalized, name, version)) < 0)
        return error;
    if ((error = pkgstore_trust_envelope_parse(&env, envelope, len)) < 0)
        return error;
    if ((error = pkgstore_trust_envelope_serialize(&canonical, &canonical_len, env)) < 0)
        goto out;
    if (canonical_len != len || memcmp(canonical, envelope, len) != 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "signature: envelope is not in canonical form");
        goto out;
    }
    if (strcmp(pkgstore_trust_envelope_payload_type(env), PKGSTORE_TRUST_TYPE_MANIFEST) != 0) {
        error = ps_error_set(PKGSTORE_EINVALID, "signature: payload type %s is not a manifest's",
                             pkgstore_trust_envelope_payload_type(env));
        goto out;
    }
    memset(&op, 0, sizeof(op));
    op.name = name;
    op.version = normalized;
    op.manifest_key = manifest_key;
    op.manifest_key_len = ps_registry_manifest_key(manifest_key, name, normalized);
    op.manifest_digest = *pkgstore_trust_envelope_payload_digest(env);
    op.envelope_len = len;
    op.record[0] = RECORD_LAYOUT;
    const char *keyid = pkgstore_trust_envelope_keyid(env);
    for (size_t i = 0; i < 32; i++)
        op.record[8 + i] =
            (unsigned char)(hex_value(keyid[2 * i]) << 4 | hex_value(keyid[2 * i + 1]));

    /* shared: gc cannot sweep the blob between its write and the record */
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        goto out;
    locked = 1;
    if ((error = ps_store_add_buffer_unrecorded(&op.envelope_digest, store, envelope, len)) < 0) {
        ps_error_prefix("signature of %s %s", name, normalized);
        goto out;
    }
    if ((error = pkgstore_store_sync(store)) < 0) /* BATCH: durable before the record */
        goto out;
    if ((error = ps_index_write(ps_store_index(store), add_txn, &op)) < 0)
        goto out;
    ps_store_mark_dirty(store);
    if (envelope_digest_out)
        *envelope_digest_out = op.envelope_digest;
    error = op.existed ? 1 : 0;
out:
    if (locked)
        ps_store_unlock(store);
    pkgstore_free(canonical);
    pkgstore_trust_envelope_free(env);
    return error;
}

int ps_trust_signatures_drop_txn(MDB_txn *txn, ps_index *index,
                                 const pkgstore_digest *manifest_digest)
{
    MDB_dbi dbi = ps_index_dbi(index, PS_DB_SIGNATURES);
    MDB_cursor *cursor = NULL;
    unsigned char found[KEY_SIZE];
    int rc;
    /* One seek per record, with its key copied out of the page before the
     * delete: a version has a handful of signatures, and deleting under a
     * live cursor is LMDB's subtlest part. */
    for (;;) {
        MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)manifest_digest->bytes}, val;
        if ((rc = mdb_cursor_open(txn, dbi, &cursor)) != 0)
            return ps_index_error(rc, "open signatures cursor");
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
        int match = rc == 0 && key.mv_size == KEY_SIZE &&
                    memcmp(key.mv_data, manifest_digest->bytes, PKGSTORE_DIGEST_SIZE) == 0;
        if (match)
            memcpy(found, key.mv_data, KEY_SIZE);
        mdb_cursor_close(cursor);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return ps_index_error(rc, "read signature records");
        if (!match)
            return 0;
        MDB_val del_key = {KEY_SIZE, found};
        if ((rc = mdb_del(txn, dbi, &del_key, NULL)) != 0)
            return ps_index_error(rc, "drop a signature record");
    }
}

typedef struct list_walk {
    pkgstore_digest *digests;
    size_t count, cap;
} list_walk;

static int list_cb(const void *key, size_t key_len, const void *val, size_t val_len, void *payload)
{
    list_walk *walk = payload;
    if (key_len != KEY_SIZE || val_len < RECORD_SIZE ||
        ((const unsigned char *)val)[0] != RECORD_LAYOUT)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: malformed signature record");
    if (walk->count == walk->cap) {
        size_t cap = walk->cap ? walk->cap * 2 : 4;
        pkgstore_digest *grown = realloc(walk->digests, cap * sizeof(*grown));
        if (!grown)
            return ps_error_set(PKGSTORE_ENOMEM, "signatures: out of memory");
        walk->digests = grown;
        walk->cap = cap;
    }
    memcpy(walk->digests[walk->count++].bytes, (const unsigned char *)key + PKGSTORE_DIGEST_SIZE,
           PKGSTORE_DIGEST_SIZE);
    return 0;
}

int pkgstore_trust_signatures_list(pkgstore_trust_stored_signature **out, size_t *count_out,
                                   pkgstore_store *store, const pkgstore_digest *manifest_digest)
{
    pkgstore_trust_stored_signature *list = NULL;
    list_walk walk = {NULL, 0, 0};
    size_t count = 0;
    int error;

    if (out)
        *out = NULL;
    if (count_out)
        *count_out = 0;
    if (!out || !count_out || !store || !manifest_digest)
        return ps_error_set(PKGSTORE_EINVALID, "signatures: NULL argument");
    if ((error = ps_index_foreach(ps_store_index(store), PS_DB_SIGNATURES, manifest_digest->bytes,
                                  PKGSTORE_DIGEST_SIZE, list_cb, &walk)) < 0)
        goto out;
    if (walk.count && !(list = calloc(walk.count, sizeof(*list)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "signatures: out of memory");
        goto out;
    }
    for (size_t i = 0; i < walk.count; i++) {
        void *data = NULL;
        size_t len = 0;
        error = pkgstore_store_blob_read(&data, &len, store, &walk.digests[i],
                                         PKGSTORE_TRUST_ENVELOPE_SIZE_MAX);
        if (error == PKGSTORE_ENOTFOUND) {
            /* its manifest was removed since the walk, and gc took it */
            pkgstore_error_clear();
            error = 0;
            continue;
        }
        if (error == PKGSTORE_ELIMIT)
            error = PKGSTORE_ECORRUPT;
        if (error < 0)
            goto out;
        list[count].digest = walk.digests[i];
        list[count].data = data;
        list[count].len = len;
        count++;
    }
    if (count) {
        *out = list;
        *count_out = count;
        list = NULL; /* now owned by the caller */
    }
out:
    pkgstore_trust_signatures_free(list, count);
    free(walk.digests);
    return error;
}

void pkgstore_trust_signatures_free(pkgstore_trust_stored_signature *list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        free(list[i].data);
    free(list);
}
