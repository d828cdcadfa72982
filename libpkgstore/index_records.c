/*
 * index records: the blob and package records (their binary layouts are in
 * docs/index-format.md), the public pkgstore_index_* API over a store, and
 * fsck's check that every record's blob exists. The environment itself is
 * index.c.
 */
#include "index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "store.h"

#define BLOB_LAYOUT 1u
#define BLOB_VALUE_SIZE 24
#define PACKAGE_LAYOUT 1u
#define PACKAGE_FIXED_SIZE 56

/* ---------------------------------------------------------------- little endian */

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* ---------------------------------------------------------------- blob records */

static void blob_encode(unsigned char value[BLOB_VALUE_SIZE], uint64_t size, int64_t added)
{
    memset(value, 0, BLOB_VALUE_SIZE);
    value[0] = BLOB_LAYOUT;
    put_u64(value + 8, size);
    put_u64(value + 16, (uint64_t)added);
}

static int blob_decode(pkgstore_blob_record *out, const pkgstore_digest *digest, const MDB_val *val)
{
    const unsigned char *p = val->mv_data;
    char hex[PKGSTORE_DIGEST_STR_SIZE];

    if (val->mv_size < BLOB_VALUE_SIZE || p[0] != BLOB_LAYOUT) {
        pkgstore_digest_format(hex, digest);
        return ps_error_set(PKGSTORE_ECORRUPT, "index: blob record %s: unknown layout", hex);
    }
    out->digest = *digest;
    out->size = get_u64(p + 8);
    out->added = (int64_t)get_u64(p + 16);
    return 0;
}

struct blob_op {
    const pkgstore_digest *digest;
    uint64_t size;
    pkgstore_blob_record *out;
};

int ps_index_blob_put_txn(MDB_txn *txn, ps_index *index, const pkgstore_digest *digest,
                          uint64_t size)
{
    struct blob_op op = {digest, size, NULL};
    MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)digest->bytes}, val;
    unsigned char value[BLOB_VALUE_SIZE];
    int64_t added = (int64_t)time(NULL);
    int rc;

    rc = mdb_get(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, &val);
    if (rc == 0 && val.mv_size >= BLOB_VALUE_SIZE && ((unsigned char *)val.mv_data)[0] == BLOB_LAYOUT) {
        int64_t first = (int64_t)get_u64((const unsigned char *)val.mv_data + 16);
        uint64_t old_size = get_u64((const unsigned char *)val.mv_data + 8);
        if (old_size == op.size)
            return 0; /* nothing to change: keep the txn empty */
        added = first;
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return ps_index_error(rc, "read blob record");
    }
    blob_encode(value, op.size, added);
    val.mv_size = sizeof(value);
    val.mv_data = value;
    if ((rc = mdb_put(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, &val, 0)) != 0) {
        char hex[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(hex, digest);
        return ps_index_error(rc, "while recording blob %s", hex);
    }
    return 0;
}

static int blob_put_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct blob_op *op = payload;
    return ps_index_blob_put_txn(txn, index, op->digest, op->size);
}

int ps_index_blob_put(ps_index *index, const pkgstore_digest *digest, uint64_t size)
{
    struct blob_op op = {digest, size, NULL};
    if (digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL digest");
    return ps_index_write(index, blob_put_txn, &op);
}

static int blob_del_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct blob_op *op = payload;
    MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)op->digest->bytes};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return ps_index_error(rc, "delete blob record");
    return 0;
}

int ps_index_blob_del(ps_index *index, const pkgstore_digest *digest)
{
    struct blob_op op = {digest, 0, NULL};
    if (digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL digest");
    return ps_index_write(index, blob_del_txn, &op);
}

static int blob_get_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct blob_op *op = payload;
    MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)op->digest->bytes}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, &val);
    if (rc != 0) {
        char hex[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(hex, op->digest);
        if (rc == MDB_NOTFOUND)
            return ps_error_set(PKGSTORE_ENOTFOUND, "index: no blob record for %s", hex);
        return ps_index_error(rc, "read blob record %s", hex);
    }
    return blob_decode(op->out, op->digest, &val);
}

int ps_index_blob_get(pkgstore_blob_record *out, ps_index *index, const pkgstore_digest *digest)
{
    struct blob_op op = {digest, 0, out};
    int error;
    if (out == NULL || digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    if ((error = ps_index_read(index, blob_get_txn, &op)) < 0)
        memset(out, 0, sizeof(*out));
    return error;
}

/* ---------------------------------------------------------------- package records */

/* "name\0version\0platform" into key; returns its length or an error. */
static int package_key(unsigned char *key, size_t key_size, const char *name, const char *version,
                       const char *platform)
{
    size_t name_len, version_len, platform_len;

    if (name == NULL || version == NULL || platform == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "package: NULL name, version or platform");
    name_len = strnlen(name, PKGSTORE_NAME_MAX + 1);
    version_len = strnlen(version, PKGSTORE_VERSION_MAX + 1);
    platform_len = strnlen(platform, PKGSTORE_PLATFORM_MAX + 1);
    if (name_len == 0 || name_len > PKGSTORE_NAME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "package: name: empty or longer than %d bytes",
                            PKGSTORE_NAME_MAX);
    if (version_len == 0 || version_len > PKGSTORE_VERSION_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "package %s: version: empty or longer than %d bytes",
                            name, PKGSTORE_VERSION_MAX);
    if (platform_len == 0 || platform_len > PKGSTORE_PLATFORM_MAX)
        return ps_error_set(PKGSTORE_EINVALID,
                            "package %s %s: platform: empty or longer than %d bytes", name,
                            version, PKGSTORE_PLATFORM_MAX);
    if (name_len + version_len + platform_len + 2 > key_size)
        return ps_error_set(PKGSTORE_EINVALID, "package: key too long");
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    memcpy(key + name_len + 1, version, version_len);
    key[name_len + 1 + version_len] = '\0';
    memcpy(key + name_len + version_len + 2, platform, platform_len);
    return (int)(name_len + version_len + platform_len + 2);
}

#define PACKAGE_KEY_MAX (PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + PKGSTORE_PLATFORM_MAX + 2)
#define PACKAGE_VALUE_MAX (PACKAGE_FIXED_SIZE + PKGSTORE_FORMAT_MAX + PKGSTORE_ENTRYPOINT_MAX)

static int package_encode(unsigned char *value, size_t *value_len,
                          const pkgstore_package_record *record)
{
    size_t format_len = strnlen(record->format, sizeof(record->format));
    size_t entry_len = strnlen(record->entrypoint, sizeof(record->entrypoint));

    if (record->type != PKGSTORE_TYPE_PRIMARY && record->type != PKGSTORE_TYPE_ADDON)
        return ps_error_set(PKGSTORE_EINVALID, "package %s %s: type: unknown value %d",
                            record->name, record->version, (int)record->type);
    if (format_len == 0 || format_len > PKGSTORE_FORMAT_MAX)
        return ps_error_set(PKGSTORE_EINVALID,
                            "package %s %s: format: empty or longer than %d bytes", record->name,
                            record->version, PKGSTORE_FORMAT_MAX);
    if (entry_len > PKGSTORE_ENTRYPOINT_MAX)
        return ps_error_set(PKGSTORE_EINVALID,
                            "package %s %s: entrypoint: longer than %d bytes", record->name,
                            record->version, PKGSTORE_ENTRYPOINT_MAX);
    memset(value, 0, PACKAGE_FIXED_SIZE);
    value[0] = PACKAGE_LAYOUT;
    value[1] = (unsigned char)record->type;
    value[2] = (unsigned char)format_len;
    put_u16(value + 4, (uint16_t)entry_len);
    memcpy(value + 8, record->digest.bytes, PKGSTORE_DIGEST_SIZE);
    put_u64(value + 40, record->size);
    put_u64(value + 48, (uint64_t)record->created);
    memcpy(value + PACKAGE_FIXED_SIZE, record->format, format_len);
    memcpy(value + PACKAGE_FIXED_SIZE + format_len, record->entrypoint, entry_len);
    *value_len = PACKAGE_FIXED_SIZE + format_len + entry_len;
    return 0;
}

int ps_index_package_decode(pkgstore_package_record *out, const void *key, size_t key_len,
                            const void *val, size_t val_len)
{
    const unsigned char *k = key, *v = val;
    const unsigned char *name = k, *version, *platform, *end = k + key_len, *nul;
    size_t name_len, version_len, platform_len, format_len, entry_len;

    if ((nul = memchr(name, '\0', key_len)) == NULL)
        goto corrupt;
    name_len = (size_t)(nul - name);
    version = nul + 1;
    if ((nul = memchr(version, '\0', (size_t)(end - version))) == NULL)
        goto corrupt;
    version_len = (size_t)(nul - version);
    platform = nul + 1;
    platform_len = (size_t)(end - platform);
    if (name_len == 0 || name_len > PKGSTORE_NAME_MAX || version_len == 0 ||
        version_len > PKGSTORE_VERSION_MAX || platform_len == 0 ||
        platform_len > PKGSTORE_PLATFORM_MAX || memchr(platform, '\0', platform_len) != NULL)
        goto corrupt;
    if (val_len < PACKAGE_FIXED_SIZE || v[0] != PACKAGE_LAYOUT || v[1] > PKGSTORE_TYPE_ADDON)
        goto corrupt;
    format_len = v[2];
    entry_len = get_u16(v + 4);
    if (format_len > PKGSTORE_FORMAT_MAX || entry_len > PKGSTORE_ENTRYPOINT_MAX ||
        PACKAGE_FIXED_SIZE + format_len + entry_len != val_len)
        goto corrupt;

    memset(out, 0, sizeof(*out)); /* records compare equal byte for byte */
    memcpy(out->name, name, name_len);
    out->name[name_len] = '\0';
    memcpy(out->version, version, version_len);
    out->version[version_len] = '\0';
    memcpy(out->platform, platform, platform_len);
    out->platform[platform_len] = '\0';
    out->type = (pkgstore_package_type)v[1];
    memcpy(out->digest.bytes, v + 8, PKGSTORE_DIGEST_SIZE);
    out->size = get_u64(v + 40);
    out->created = (int64_t)get_u64(v + 48);
    memcpy(out->format, v + PACKAGE_FIXED_SIZE, format_len);
    out->format[format_len] = '\0';
    memcpy(out->entrypoint, v + PACKAGE_FIXED_SIZE + format_len, entry_len);
    out->entrypoint[entry_len] = '\0';
    return 0;
corrupt:
    return ps_error_set(PKGSTORE_ECORRUPT, "index: malformed package record");
}

struct package_op {
    unsigned char key[PACKAGE_KEY_MAX];
    size_t key_len;
    unsigned char value[PACKAGE_VALUE_MAX];
    size_t value_len;
    pkgstore_package_record *out;
};

static int package_prepare(struct package_op *op, const pkgstore_package_record *record);

static int package_write(MDB_txn *txn, ps_index *index, const struct package_op *op)
{
    MDB_val key = {op->key_len, (void *)op->key}, val = {op->value_len, (void *)op->value};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_PACKAGES), &key, &val, 0);
    if (rc != 0)
        return ps_index_error(rc, "while adding %s %s", (const char *)op->key,
                              (const char *)op->key + strlen((const char *)op->key) + 1);
    return 0;
}

static int package_put_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    return package_write(txn, index, payload);
}

int ps_index_package_put_txn(MDB_txn *txn, ps_index *index, const pkgstore_package_record *record)
{
    struct package_op *op;
    int error;
    /* (the op holds a key and a value of up to 1.4 KB: not on the stack of
     * a transaction that may run deep in a caller's) */
    if ((op = malloc(sizeof(*op))) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
    if ((error = package_prepare(op, record)) == 0)
        error = package_write(txn, index, op);
    free(op);
    return error;
}

static int package_prepare(struct package_op *op, const pkgstore_package_record *record)
{
    int key_len;
    if (record == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "package: NULL record");
    if (strnlen(record->name, sizeof(record->name)) == sizeof(record->name) ||
        strnlen(record->version, sizeof(record->version)) == sizeof(record->version) ||
        strnlen(record->platform, sizeof(record->platform)) == sizeof(record->platform))
        return ps_error_set(PKGSTORE_EINVALID, "package: unterminated name, version or platform");
    if ((key_len = package_key(op->key, sizeof(op->key), record->name, record->version,
                               record->platform)) < 0)
        return key_len;
    op->key_len = (size_t)key_len;
    return package_encode(op->value, &op->value_len, record);
}

int ps_index_package_put(ps_index *index, const pkgstore_package_record *record)
{
    struct package_op op;
    int error;
    if ((error = package_prepare(&op, record)) < 0)
        return error;
    return ps_index_write(index, package_put_txn, &op);
}

static int package_get_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct package_op *op = payload;
    MDB_val key = {op->key_len, op->key}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_PACKAGES), &key, &val);
    if (rc == MDB_NOTFOUND)
        return PKGSTORE_ENOTFOUND; /* the caller words the detail */
    if (rc != 0)
        return ps_index_error(rc, "read package record");
    return ps_index_package_decode(op->out, key.mv_data, key.mv_size, val.mv_data, val.mv_size);
}

int ps_index_package_get(pkgstore_package_record *out, ps_index *index, const char *name,
                         const char *version, const char *platform)
{
    struct package_op op;
    int key_len, error;

    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "package: NULL out");
    if ((key_len = package_key(op.key, sizeof(op.key), name, version, platform)) < 0) {
        error = key_len;
        goto out;
    }
    op.key_len = (size_t)key_len;
    op.out = out;
    if ((error = ps_index_read(index, package_get_txn, &op)) == PKGSTORE_ENOTFOUND)
        ps_error_set(error, "package %s %s %s: not in the index", name, version, platform);
out:
    if (error < 0)
        memset(out, 0, sizeof(*out));
    return error;
}

int ps_index_package_del_txn(MDB_txn *txn, ps_index *index, const char *name,
                             const char *version, const char *platform)
{
    unsigned char key_bytes[PACKAGE_KEY_MAX];
    int key_len = package_key(key_bytes, sizeof(key_bytes), name, version, platform);
    if (key_len < 0)
        return key_len;
    MDB_val key = {(size_t)key_len, key_bytes};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_PACKAGES), &key, NULL);
    if (rc == MDB_NOTFOUND)
        return PKGSTORE_ENOTFOUND;
    if (rc != 0)
        return ps_index_error(rc, "delete package record %s %s %s", name, version, platform);
    return 0;
}

/* ---------------------------------------------------------------- public API */

static int store_index(ps_index **out, pkgstore_store *store)
{
    if (store == NULL || (*out = ps_store_index(store)) == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL store");
    return 0;
}

PKGSTORE_API const char *pkgstore_package_type_name(pkgstore_package_type type)
{
    switch (type) {
    case PKGSTORE_TYPE_PRIMARY:
        return "primary";
    case PKGSTORE_TYPE_ADDON:
        return "addon";
    }
    return NULL;
}

PKGSTORE_API int pkgstore_package_type_parse(pkgstore_package_type *out, const char *str)
{
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "package type: NULL out");
    *out = PKGSTORE_TYPE_PRIMARY;
    if (str != NULL && strcmp(str, "primary") == 0)
        return 0;
    if (str != NULL && strcmp(str, "addon") == 0) {
        *out = PKGSTORE_TYPE_ADDON;
        return 0;
    }
    return ps_error_set(PKGSTORE_EINVALID, "type: '%s' is not primary or addon",
                        str != NULL ? str : "(null)");
}

PKGSTORE_API int pkgstore_index_blob_get(pkgstore_blob_record *out, pkgstore_store *store,
                                         const pkgstore_digest *digest)
{
    ps_index *index;
    int error;
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if ((error = store_index(&index, store)) < 0)
        return error;
    return ps_index_blob_get(out, index, digest);
}

struct blob_walk {
    pkgstore_index_blob_cb cb;
    void *payload;
};

static int blob_walk_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                        void *payload)
{
    struct blob_walk *walk = payload;
    pkgstore_blob_record record;
    pkgstore_digest digest;
    MDB_val value = {val_len, (void *)val};
    int error;

    if (key_len != PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: blob record with a %zu-byte key", key_len);
    memcpy(digest.bytes, key, PKGSTORE_DIGEST_SIZE);
    if ((error = blob_decode(&record, &digest, &value)) < 0)
        return error;
    return walk->cb(&record, walk->payload);
}

PKGSTORE_API int pkgstore_index_blob_foreach(pkgstore_store *store, pkgstore_index_blob_cb cb,
                                             void *payload)
{
    struct blob_walk walk = {cb, payload};
    ps_index *index;
    int error;
    if (cb == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL callback");
    if ((error = store_index(&index, store)) < 0)
        return error;
    return ps_index_foreach(index, PS_DB_BLOBS, NULL, 0, blob_walk_cb, &walk);
}

PKGSTORE_API int pkgstore_index_package_get(pkgstore_package_record **out, pkgstore_store *store,
                                            const char *name, const char *version,
                                            const char *platform)
{
    pkgstore_package_record *record;
    ps_index *index;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "package: NULL out");
    *out = NULL;
    if ((error = store_index(&index, store)) < 0)
        return error;
    if ((record = malloc(sizeof(*record))) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
    if ((error = ps_index_package_get(record, index, name, version, platform)) < 0) {
        free(record);
        return error;
    }
    *out = record;
    return 0;
}

PKGSTORE_API void pkgstore_package_record_free(pkgstore_package_record *record)
{
    free(record);
}

PKGSTORE_API const char *pkgstore_package_record_name(const pkgstore_package_record *record)
{
    return record->name;
}

PKGSTORE_API const char *pkgstore_package_record_version(const pkgstore_package_record *record)
{
    return record->version;
}

PKGSTORE_API const char *pkgstore_package_record_platform(const pkgstore_package_record *record)
{
    return record->platform;
}

PKGSTORE_API pkgstore_package_type
pkgstore_package_record_type(const pkgstore_package_record *record)
{
    return record->type;
}

PKGSTORE_API const pkgstore_digest *
pkgstore_package_record_digest(const pkgstore_package_record *record)
{
    return &record->digest;
}

PKGSTORE_API uint64_t pkgstore_package_record_size(const pkgstore_package_record *record)
{
    return record->size;
}

PKGSTORE_API const char *pkgstore_package_record_format(const pkgstore_package_record *record)
{
    return record->format;
}

PKGSTORE_API const char *
pkgstore_package_record_entrypoint(const pkgstore_package_record *record)
{
    return record->entrypoint;
}

PKGSTORE_API int64_t pkgstore_package_record_created(const pkgstore_package_record *record)
{
    return record->created;
}

struct package_walk {
    pkgstore_index_package_cb cb;
    void *payload;
    pkgstore_package_record record;
};

static int package_walk_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                           void *payload)
{
    struct package_walk *walk = payload;
    int error;
    if ((error = ps_index_package_decode(&walk->record, key, key_len, val, val_len)) < 0)
        return error;
    return walk->cb(&walk->record, walk->payload);
}

PKGSTORE_API int pkgstore_index_package_foreach(pkgstore_store *store, const char *name,
                                                pkgstore_index_package_cb cb, void *payload)
{
    struct package_walk *walk;
    char prefix[PKGSTORE_NAME_MAX + 1];
    size_t prefix_len = 0;
    ps_index *index;
    int error;

    if (cb == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL callback");
    if ((error = store_index(&index, store)) < 0)
        return error;
    if (name != NULL) {
        size_t name_len = strnlen(name, PKGSTORE_NAME_MAX + 1);
        if (name_len == 0 || name_len > PKGSTORE_NAME_MAX)
            return ps_error_set(PKGSTORE_EINVALID, "package: name: empty or longer than %d bytes",
                                PKGSTORE_NAME_MAX);
        memcpy(prefix, name, name_len);
        prefix[name_len] = '\0'; /* the separator is part of the prefix */
        prefix_len = name_len + 1;
    }
    if ((walk = malloc(sizeof(*walk))) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
    walk->cb = cb;
    walk->payload = payload;
    error = ps_index_foreach(index, PS_DB_PACKAGES, prefix_len ? prefix : NULL, prefix_len,
                             package_walk_cb, walk);
    free(walk);
    return error;
}

/* ---------------------------------------------------------------- fsck */

struct dangling {
    enum ps_index_db db;
    unsigned char *key;
    size_t key_len;
    pkgstore_digest digest;
};

struct refs_check {
    pkgstore_store *store;
    enum ps_index_db db;
    struct dangling *items;
    size_t count, cap;
};

static int refs_check_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                         void *payload)
{
    struct refs_check *check = payload;
    pkgstore_digest digest;
    int exists;

    switch (check->db) {
    case PS_DB_BLOBS:
    case PS_DB_PINS:
        if (key_len != PKGSTORE_DIGEST_SIZE)
            return 0; /* not a digest: nothing it could point at */
        memcpy(digest.bytes, key, PKGSTORE_DIGEST_SIZE);
        break;
    case PS_DB_PACKAGES:
        if (val_len < PACKAGE_FIXED_SIZE)
            return 0;
        memcpy(digest.bytes, (const unsigned char *)val + 8, PKGSTORE_DIGEST_SIZE);
        break;
    case PS_DB_MANIFESTS:
        if (val_len < PKGSTORE_DIGEST_SIZE)
            return 0;
        memcpy(digest.bytes, val, PKGSTORE_DIGEST_SIZE);
        break;
    case PS_DB_SIGNATURES:
        /* the envelope's blob; its manifest is the manifests record's */
        if (key_len != 2 * PKGSTORE_DIGEST_SIZE)
            return 0;
        memcpy(digest.bytes, (const unsigned char *)key + PKGSTORE_DIGEST_SIZE,
               PKGSTORE_DIGEST_SIZE);
        break;
    default:
        return 0;
    }
    if ((exists = pkgstore_store_blob_exists(check->store, &digest)) < 0)
        return exists;
    if (exists)
        return 0;
    if (check->count == check->cap) {
        size_t cap = check->cap ? check->cap * 2 : 16;
        struct dangling *grown = realloc(check->items, cap * sizeof(*grown));
        if (grown == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
        check->items = grown;
        check->cap = cap;
    }
    if ((check->items[check->count].key = malloc(key_len ? key_len : 1)) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
    memcpy(check->items[check->count].key, key, key_len);
    check->items[check->count].key_len = key_len;
    check->items[check->count].db = check->db;
    check->items[check->count].digest = digest;
    check->count++;
    return 0;
}

struct refs_drop {
    struct dangling *item;
};

static int refs_drop_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct refs_drop *drop = payload;
    MDB_val key = {drop->item->key_len, drop->item->key};
    int rc = mdb_del(txn, ps_index_dbi(index, drop->item->db), &key, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return ps_index_error(rc, "drop dangling %s record", ps_index_db_name(drop->item->db));
    return 0;
}

/* "index/<db>/<key as text>" for the report. */
static void dangling_path(char *buf, size_t size, const struct dangling *item)
{
    char hex[PKGSTORE_DIGEST_STR_SIZE];
    size_t used;

    used = (size_t)snprintf(buf, size, "index/%s/", ps_index_db_name(item->db));
    if (used >= size)
        return;
    if (item->db == PS_DB_BLOBS || item->db == PS_DB_PINS) {
        pkgstore_digest_format(hex, &item->digest);
        snprintf(buf + used, size - used, "%s", hex);
        return;
    }
    if (item->db == PS_DB_SIGNATURES) { /* "<manifest digest>/<envelope digest>" */
        pkgstore_digest manifest;
        char manifest_hex[PKGSTORE_DIGEST_STR_SIZE];
        memcpy(manifest.bytes, item->key, PKGSTORE_DIGEST_SIZE);
        pkgstore_digest_format(manifest_hex, &manifest);
        pkgstore_digest_format(hex, &item->digest);
        snprintf(buf + used, size - used, "%s/%s", manifest_hex, hex);
        return;
    }
    /* name\0version[\0platform]: NULs become spaces */
    for (size_t i = 0; i < item->key_len && used + 1 < size; i++) {
        unsigned char c = item->key[i];
        buf[used++] = c == '\0' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[used] = '\0';
}

int ps_index_check_refs(ps_index *index, pkgstore_store *store, int repair, pkgstore_fsck_cb cb,
                        void *payload, uint64_t *missing, uint64_t *repaired)
{
    static const enum ps_index_db checked[] = {PS_DB_BLOBS, PS_DB_PACKAGES, PS_DB_MANIFESTS,
                                               PS_DB_PINS, PS_DB_SIGNATURES};
    struct refs_check check;
    int error = 0;

    if (index == NULL || store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    memset(&check, 0, sizeof(check));
    check.store = store;
    for (size_t i = 0; i < sizeof(checked) / sizeof(checked[0]); i++) {
        check.db = checked[i];
        if ((error = ps_index_foreach(index, check.db, NULL, 0, refs_check_cb, &check)) < 0)
            goto out;
    }

    for (size_t i = 0; i < check.count; i++) {
        struct dangling *item = &check.items[i];
        char path[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + PKGSTORE_PLATFORM_MAX + 2 * PKGSTORE_DIGEST_STR_SIZE];
        char hex[PKGSTORE_DIGEST_STR_SIZE], detail[128];
        pkgstore_fsck_problem problem;
        int dropped = 0;

        if (repair) {
            struct refs_drop drop = {item};
            if ((error = ps_index_write(index, refs_drop_txn, &drop)) < 0)
                goto out;
            dropped = 1;
        }
        if (missing != NULL)
            (*missing)++;
        if (dropped && repaired != NULL)
            (*repaired)++;
        if (cb == NULL)
            continue;
        dangling_path(path, sizeof(path), item);
        pkgstore_digest_format(hex, &item->digest);
        snprintf(detail, sizeof(detail), "blob %s is missing", hex);
        memset(&problem, 0, sizeof(problem));
        problem.kind = PKGSTORE_FSCK_MISSING;
        problem.path = path;
        problem.has_digest = 1;
        problem.digest = item->digest;
        problem.detail = detail;
        problem.repaired = dropped;
        if ((error = cb(&problem, payload)) != 0)
            goto out;
    }
out:
    for (size_t i = 0; i < check.count; i++)
        free(check.items[i].key);
    free(check.items);
    return error;
}
