/*
 * registry.c - packages: open and free a registry handle, and read what
 * the registry keeps: the package names, the manifest of a version. Every
 * change (add, put, remove) is registry_write.c; resolve(), the version
 * lists and the dependency check are served from a per-handle cache
 * (registry_cache.c).
 *
 * What the registry keeps in the index (docs/index-format.md):
 *   PS_DB_MANIFESTS  name\0version -> manifest digest (32 bytes) followed by
 *                    the canonical manifest bytes. The digest comes first
 *                    because gc and fsck read only that; the bytes are a copy
 *                    of the manifest blob so that loading a package needs no
 *                    file reads.
 *   PS_DB_PACKAGES   one package record per artifact (index_records.c): the
 *                    index's flat view of the manifests.
 *   PS_DB_META       "registry.generation" -> u64 (little endian).
 * All three change together, in one write transaction per change.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "index.h"
#include "manifest.h"
#include "registry.h"
#include "pkgstore/archive.h"
#include "pkgstore/platform.h"
#include "pkgstore/registry.h"
#include "pkgstore/version.h"
#include "store.h"

static uint64_t next_registry_id;

/* ------------------------------------------------------------------ index helpers */

size_t ps_registry_manifest_key(char key[PS_REGISTRY_KEY_MAX], const char *name, const char *version)
{
    size_t name_len = strlen(name), version_len = strlen(version);
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    memcpy(key + name_len + 1, version, version_len);
    return name_len + 1 + version_len;
}

int ps_registry_read_generation(uint64_t *out, MDB_txn *txn, ps_index *index)
{
    MDB_val key = {sizeof(GENERATION_KEY) - 1, (void *)GENERATION_KEY}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_META), &key, &val);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ps_index_error(rc, "read %s", GENERATION_KEY);
    if (val.mv_size != 8)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: %s: %zu bytes, not 8", GENERATION_KEY,
                            val.mv_size);
    const unsigned char *p = val.mv_data;
    for (int i = 7; i >= 0; i--)
        *out = (*out << 8) | p[i];
    return 0;
}

/* Parse a manifest record value (digest, then canonical bytes). A value of
 * only the digest (written by an older or foreign writer) is served from the
 * manifest blob. */
int ps_registry_record_manifest(pkgstore_manifest **out, pkgstore_digest *digest_out,
                           pkgstore_registry *reg, const char *name, const char *version,
                           const void *data, size_t len, int verify)
{
    pkgstore_digest actual;
    void *blob = NULL;
    size_t blob_len = 0;
    int error;

    *out = NULL;
    if (len < PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: manifest record of %s %s: %zu bytes", name,
                            version, len);
    memcpy(digest_out->bytes, data, PKGSTORE_DIGEST_SIZE);
    const char *json = (const char *)data + PKGSTORE_DIGEST_SIZE;
    size_t json_len = len - PKGSTORE_DIGEST_SIZE;
    if (json_len == 0) {
        error = pkgstore_store_blob_read(&blob, &blob_len, reg->store, digest_out,
                                         PKGSTORE_MANIFEST_SIZE_MAX);
        if (error < 0) {
            ps_error_prefix("manifest of %s %s", name, version);
            return error == PKGSTORE_ENOTFOUND ? PKGSTORE_ECORRUPT : error;
        }
        json = blob;
        json_len = blob_len;
        verify = 1;
    }
    if (verify) {
        if ((error = pkgstore_digest_buffer(&actual, json, json_len)) < 0)
            goto out;
        if (!pkgstore_digest_equal(&actual, digest_out)) {
            error = ps_error_set(PKGSTORE_ECORRUPT,
                                 "manifest of %s %s: bytes do not match the manifest digest",
                                 name, version);
            goto out;
        }
    }
    if ((error = pkgstore_manifest_parse(out, json, json_len)) < 0) {
        ps_error_prefix("manifest of %s %s", name, version);
        error = PKGSTORE_ECORRUPT;
    }
out:
    pkgstore_free(blob);
    return error;
}

/* ------------------------------------------------------------------ open, free */

int pkgstore_registry_open(pkgstore_registry **out, pkgstore_store *store)
{
    pkgstore_registry *reg;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "registry: no output pointer");
    *out = NULL;
    if (!store)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL store");
    if (!(reg = calloc(1, sizeof(*reg))))
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    reg->store = store;
    reg->index = ps_store_index(store);
    reg->bucket_count = 64;
    /* never 0, never reused: per-thread memos of node ranks key on it */
    reg->id = __atomic_add_fetch(&next_registry_id, 1, __ATOMIC_RELAXED);
    if (!reg->index) {
        free(reg);
        return ps_error_set(PKGSTORE_EINVALID, "registry: the store has no index");
    }
    if (!(reg->buckets = calloc(reg->bucket_count, sizeof(*reg->buckets)))) {
        free(reg);
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    }
    if (pthread_rwlock_init(&reg->lock, NULL) != 0) {
        free(reg->buckets);
        free(reg);
        return ps_error_set(PKGSTORE_ENOMEM, "registry: cannot create a lock");
    }
    ps_registry_memo_acquire();
    *out = reg;
    return 0;
}

void pkgstore_registry_free(pkgstore_registry *reg)
{
    if (!reg)
        return;
    ps_registry_cache_free(reg);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
    ps_registry_memo_release();
}

/* ------------------------------------------------------------------ validation */

int ps_registry_check_name_version(char version_out[PKGSTORE_VERSION_MAX + 1], const char *name,
                                   const char *version)
{
    int error;
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    return ps_manifest_normalize_version(version_out, "version", version);
}

/* ------------------------------------------------------------------ reading a record */

typedef struct read_op {
    const char *key;
    size_t key_len;
    pkgstore_registry *reg;
    const char *name;
    const char *version;
    int found;                 /* out */
    pkgstore_digest digest;    /* out */
    pkgstore_manifest *manifest; /* out, when want_manifest */
    int want_manifest;
    int verify;
} read_op;

static int read_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    read_op *op = payload;
    MDB_val key = {op->key_len, (void *)op->key}, val;
    pkgstore_manifest_free(op->manifest);
    op->manifest = NULL;
    op->found = 0;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ps_index_error(rc, "read manifest record of %s %s", op->name, op->version);
    op->found = 1;
    if (!op->want_manifest) {
        if (val.mv_size < PKGSTORE_DIGEST_SIZE)
            return ps_error_set(PKGSTORE_ECORRUPT, "index: short manifest record of %s %s",
                                op->name, op->version);
        memcpy(op->digest.bytes, val.mv_data, PKGSTORE_DIGEST_SIZE);
        return 0;
    }
    return ps_registry_record_manifest(&op->manifest, &op->digest, op->reg, op->name, op->version,
                           val.mv_data, val.mv_size, op->verify);
}

int ps_registry_read(int *found, pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                     pkgstore_registry *reg, const char *name, const char *version, int verify)
{
    char key[PS_REGISTRY_KEY_MAX];
    read_op op = {key, ps_registry_manifest_key(key, name, version), reg, name, version, 0,
                  {{0}}, NULL, manifest_out != NULL, verify};
    int error;
    *found = 0;
    if (manifest_out)
        *manifest_out = NULL;
    memset(digest_out, 0, sizeof(*digest_out));
    if ((error = ps_index_read(reg->index, read_txn, &op)) < 0) {
        pkgstore_manifest_free(op.manifest);
        return error;
    }
    *found = op.found;
    *digest_out = op.digest;
    if (manifest_out)
        *manifest_out = op.manifest; /* now owned by the caller */
    return 0;
}

/* ------------------------------------------------------------------ read */

void pkgstore_registry_strings_free(char **strings, size_t count)
{
    if (!strings)
        return;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

typedef struct names_op {
    char **names;
    size_t count;
    size_t capacity;
} names_op;

static int names_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    names_op *op = payload;
    MDB_cursor *cursor = NULL;
    char next_key[PKGSTORE_NAME_MAX + 2];
    int rc, error = 0;

    pkgstore_registry_strings_free(op->names, op->count);
    memset(op, 0, sizeof(*op));
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &cursor)) != 0)
        return ps_index_error(rc, "open manifests cursor");
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;) {
        const char *name = key.mv_data;
        size_t name_len = strnlen(name, key.mv_size);
        if (name_len == key.mv_size || name_len > PKGSTORE_NAME_MAX) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "index: malformed manifest key");
            break;
        }
        if (op->count == op->capacity) {
            size_t capacity = op->capacity ? op->capacity * 2 : 32;
            char **grown = realloc(op->names, capacity * sizeof(*grown));
            if (!grown) {
                error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
                break;
            }
            op->names = grown;
            op->capacity = capacity;
        }
        if (!(op->names[op->count] = strndup(name, name_len))) {
            error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
            break;
        }
        op->count++;
        /* Skip this name's versions: jump to the first key above "name\1". */
        memcpy(next_key, name, name_len);
        next_key[name_len] = '\1';
        key.mv_data = next_key;
        key.mv_size = name_len + 1;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    }
    if (!error && rc != 0 && rc != MDB_NOTFOUND)
        error = ps_index_error(rc, "list package names");
    mdb_cursor_close(cursor);
    return error;
}

int pkgstore_registry_names(char ***names_out, size_t *count_out, pkgstore_registry *reg)
{
    names_op op = {NULL, 0, 0};
    int error;
    if (names_out)
        *names_out = NULL;
    if (count_out)
        *count_out = 0;
    if (!names_out || !count_out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if ((error = ps_index_read(reg->index, names_txn, &op)) < 0) {
        pkgstore_registry_strings_free(op.names, op.count);
        return error;
    }
    *names_out = op.names;
    *count_out = op.count;
    return 0;
}

int pkgstore_registry_get(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                          pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1];
    pkgstore_digest digest;
    int found, error;

    if (manifest_out)
        *manifest_out = NULL;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = ps_registry_check_name_version(normalized, name, version)) < 0)
        return error;
    if ((error = ps_registry_read(&found, manifest_out, &digest, reg, name, normalized, 1)) < 0)
        return error;
    if (!found)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no such version", name, normalized);
    if (digest_out)
        *digest_out = digest;
    return 0;
}
