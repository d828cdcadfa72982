/*
 * registry.c - packages: add an artifact to (name, version), list, get,
 * resolve (name, constraint, platform) to an artifact, remove, and the
 * dependency check.
 *
 * What it keeps in the index (docs/store-format.md):
 *   PS_DB_MANIFESTS  name\0version -> manifest digest (32 bytes) followed by
 *                    the canonical manifest bytes. The digest comes first
 *                    because gc and fsck read only that; the bytes are a copy
 *                    of the manifest blob so that loading a package needs no
 *                    file reads. The blob is stored before the record.
 *   PS_DB_META       "registry.generation" -> u64 (little endian), bumped in
 *                    the same transaction as every manifest change.
 *   PS_DB_PACKAGES   one record per artifact, via pkgstore_index_package_*.
 *                    These are a view of the manifests: re-synced after each
 *                    change from the manifest that is current at that time.
 *
 * Manifest changes are optimistic: read the record, build the new manifest,
 * store its blob, then commit only if the record is still the one read (else
 * start over), so concurrent adds to one version from many processes are all
 * kept. The store lock is held shared from the blob check to the last
 * package record, so gc (exclusive) never runs in between.
 *
 * resolve() is served from a per-handle cache of parsed versions per name,
 * dropped whenever the generation in the index moves (any process).
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
#include "pkgstore/archive.h"
#include "pkgstore/platform.h"
#include "pkgstore/registry.h"
#include "pkgstore/version.h"
#include "store.h"

#define GENERATION_KEY "registry.generation"
#define KEY_MAX (PKGSTORE_NAME_MAX + 1 + PKGSTORE_VERSION_MAX + 1) /* + a NUL for prefixes */
#define ADD_RETRIES 64

/* ------------------------------------------------------------------ cache */

/* Platforms are interned per package: resolve() ranks the node against
 * each distinct platform once, and a version whose platform bitmask has no
 * compatible bit is skipped without looking at its artifacts. */
#define MASK_OTHER 63 /* platform ids >= 63 share the last bit */

typedef struct cached_platform {
    pkgstore_platform parsed;
    char name[PKGSTORE_PLATFORM_MAX + 1];
} cached_platform;

typedef struct cached_artifact {
    uint16_t platform; /* index into the package's platforms */
    pkgstore_digest digest;
    uint64_t size;
    unsigned char format; /* index into format_names */
    char *entrypoint;     /* owned */
} cached_artifact;

typedef struct cached_version {
    pkgstore_semver semver;
    char *version; /* owned, normalized */
    pkgstore_package_type type;
    pkgstore_digest manifest_digest;
    cached_artifact *artifacts; /* owned, in manifest order */
    size_t artifact_count;
    uint64_t platform_mask; /* bit min(id, MASK_OTHER) per artifact */
} cached_version;

typedef struct cached_package {
    struct cached_package *next; /* hash chain */
    char *name;                  /* owned */
    cached_version *versions;    /* highest precedence first */
    size_t version_count;
    cached_platform *platforms;  /* distinct platforms of all versions */
    size_t platform_count;
    size_t platform_capacity;
} cached_package;

static const char *const format_names[] = {"binary", "tar", "tar+gzip", "tar+zstd", "tar+xz",
                                           "zip"};

struct pkgstore_registry {
    pkgstore_store *store;
    ps_index *index;
    pthread_rwlock_t lock; /* guards everything below */
    uint64_t generation;   /* of the cache contents */
    int generation_known;
    cached_package **buckets;
    size_t bucket_count; /* power of two */
    size_t package_count;
};

static uint64_t hash_name(const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++) {
        h ^= (unsigned char)*name;
        h *= 1099511628211ULL;
    }
    return h;
}

static void package_free(cached_package *pkg)
{
    if (!pkg)
        return;
    for (size_t i = 0; i < pkg->version_count; i++) {
        cached_version *v = &pkg->versions[i];
        for (size_t j = 0; j < v->artifact_count; j++)
            free(v->artifacts[j].entrypoint);
        free(v->artifacts);
        free(v->version);
    }
    free(pkg->versions);
    free(pkg->platforms);
    free(pkg->name);
    free(pkg);
}

/* Drop every cached package. Caller holds the write lock. */
static void cache_clear(pkgstore_registry *reg)
{
    for (size_t b = 0; b < reg->bucket_count; b++) {
        cached_package *pkg = reg->buckets[b];
        while (pkg) {
            cached_package *next = pkg->next;
            package_free(pkg);
            pkg = next;
        }
        reg->buckets[b] = NULL;
    }
    reg->package_count = 0;
}

static cached_package *cache_find(const pkgstore_registry *reg, const char *name)
{
    cached_package *pkg = reg->buckets[hash_name(name) & (reg->bucket_count - 1)];
    for (; pkg; pkg = pkg->next)
        if (strcmp(pkg->name, name) == 0)
            return pkg;
    return NULL;
}

/* Insert pkg (the caller holds the write lock). Grows the table when full;
 * a failed growth just leaves longer chains. */
static void cache_insert(pkgstore_registry *reg, cached_package *pkg)
{
    if (reg->package_count >= reg->bucket_count) {
        size_t count = reg->bucket_count * 2;
        cached_package **buckets = calloc(count, sizeof(*buckets));
        if (buckets) {
            for (size_t b = 0; b < reg->bucket_count; b++) {
                cached_package *p = reg->buckets[b];
                while (p) {
                    cached_package *next = p->next;
                    size_t at = hash_name(p->name) & (count - 1);
                    p->next = buckets[at];
                    buckets[at] = p;
                    p = next;
                }
            }
            free(reg->buckets);
            reg->buckets = buckets;
            reg->bucket_count = count;
        }
    }
    size_t at = hash_name(pkg->name) & (reg->bucket_count - 1);
    pkg->next = reg->buckets[at];
    reg->buckets[at] = pkg;
    reg->package_count++;
}

/* ------------------------------------------------------------------ index helpers */

static size_t manifest_key(char key[KEY_MAX], const char *name, const char *version)
{
    size_t name_len = strlen(name), version_len = strlen(version);
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    memcpy(key + name_len + 1, version, version_len);
    return name_len + 1 + version_len;
}

static int read_generation(uint64_t *out, MDB_txn *txn, ps_index *index)
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

static int bump_generation(MDB_txn *txn, ps_index *index)
{
    uint64_t generation;
    unsigned char bytes[8];
    int error, rc;
    if ((error = read_generation(&generation, txn, index)) < 0)
        return error;
    generation++;
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)(generation >> (8 * i));
    MDB_val key = {sizeof(GENERATION_KEY) - 1, (void *)GENERATION_KEY}, val = {8, bytes};
    if ((rc = mdb_put(txn, ps_index_dbi(index, PS_DB_META), &key, &val, 0)) != 0)
        return ps_index_error(rc, "write %s", GENERATION_KEY);
    return 0;
}

/* Parse a manifest record value (digest, then canonical bytes). A value of
 * only the digest (written by an older or foreign writer) is served from the
 * manifest blob. */
static int record_manifest(pkgstore_manifest **out, pkgstore_digest *digest_out,
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

/* ------------------------------------------------------------------ loading a package */

static int version_desc(const void *a, const void *b)
{
    const cached_version *va = a, *vb = b;
    int cmp = pkgstore_version_compare(&vb->semver, &va->semver);
    return cmp ? cmp : strcmp(vb->version, va->version);
}

/* The id of platform in pkg's table, adding it if new; -1 on error. */
static long intern_platform(cached_package *pkg, const char *platform)
{
    for (size_t i = 0; i < pkg->platform_count; i++)
        if (strcmp(pkg->platforms[i].name, platform) == 0)
            return (long)i;
    if (pkg->platform_count >= UINT16_MAX)
        return -1;
    if (pkg->platform_count == pkg->platform_capacity) {
        size_t capacity = pkg->platform_capacity ? pkg->platform_capacity * 2 : 8;
        cached_platform *grown = realloc(pkg->platforms, capacity * sizeof(*grown));
        if (!grown)
            return -1;
        pkg->platforms = grown;
        pkg->platform_capacity = capacity;
    }
    cached_platform *c = &pkg->platforms[pkg->platform_count];
    if (pkgstore_platform_parse(&c->parsed, platform) < 0 || strlen(platform) > PKGSTORE_PLATFORM_MAX)
        return -1;
    strcpy(c->name, platform);
    return (long)pkg->platform_count++;
}

static int cached_version_fill(cached_version *v, cached_package *pkg, const pkgstore_manifest *m,
                               const pkgstore_digest *digest)
{
    memset(v, 0, sizeof(*v));
    if (pkgstore_version_parse(&v->semver, pkgstore_manifest_version(m)) < 0)
        return PKGSTORE_ECORRUPT;
    if (!(v->version = strdup(pkgstore_manifest_version(m))))
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    v->type = pkgstore_manifest_type(m);
    v->manifest_digest = *digest;
    size_t count = pkgstore_manifest_artifact_count(m);
    if (!(v->artifacts = calloc(count ? count : 1, sizeof(*v->artifacts))))
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    for (size_t i = 0; i < count; i++) {
        const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
        cached_artifact *c = &v->artifacts[i];
        long id = intern_platform(pkg, a->platform);
        if (id < 0)
            return PKGSTORE_ECORRUPT;
        c->platform = (uint16_t)id;
        v->platform_mask |= 1ULL << (id < MASK_OTHER ? id : MASK_OTHER);
        c->digest = a->digest;
        c->size = a->size;
        for (size_t f = 0; f < sizeof(format_names) / sizeof(format_names[0]); f++)
            if (strcmp(format_names[f], a->format) == 0)
                c->format = (unsigned char)f;
        if (!(c->entrypoint = strdup(a->entrypoint)))
            return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        v->artifact_count = i + 1;
    }
    return 0;
}

typedef struct load_op {
    pkgstore_registry *reg;
    const char *name;
    cached_package *pkg; /* out */
    uint64_t generation; /* out */
} load_op;

static int load_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    load_op *op = payload;
    MDB_cursor *cursor = NULL;
    char prefix[PKGSTORE_NAME_MAX + 2];
    size_t prefix_len = strlen(op->name) + 1;
    cached_package *pkg = NULL;
    size_t capacity = 0;
    int error = 0, rc;

    package_free(op->pkg);
    op->pkg = NULL;
    if ((error = read_generation(&op->generation, txn, index)) < 0)
        return error;
    memcpy(prefix, op->name, prefix_len);
    if (!(pkg = calloc(1, sizeof(*pkg))) || !(pkg->name = strdup(op->name))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &cursor)) != 0) {
        error = ps_index_error(rc, "open manifests cursor");
        goto out;
    }
    MDB_val key = {prefix_len, prefix}, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0)
            break;
        char version[PKGSTORE_VERSION_MAX + 1];
        size_t version_len = key.mv_size - prefix_len;
        if (version_len > PKGSTORE_VERSION_MAX) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "index: over-long manifest key for %s",
                                 op->name);
            goto out;
        }
        memcpy(version, (char *)key.mv_data + prefix_len, version_len);
        version[version_len] = '\0';

        pkgstore_manifest *m = NULL;
        pkgstore_digest digest;
        if ((error = record_manifest(&m, &digest, op->reg, op->name, version, val.mv_data,
                                     val.mv_size, 0)) < 0)
            goto out;
        if (pkg->version_count == capacity) {
            size_t grown_capacity = capacity ? capacity * 2 : 8;
            cached_version *grown = realloc(pkg->versions, grown_capacity * sizeof(*grown));
            if (!grown) {
                pkgstore_manifest_free(m);
                error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
                goto out;
            }
            pkg->versions = grown;
            capacity = grown_capacity;
        }
        error = cached_version_fill(&pkg->versions[pkg->version_count++], pkg, m, &digest);
        pkgstore_manifest_free(m);
        if (error == PKGSTORE_ECORRUPT)
            error = ps_error_set(error, "index: manifest of %s %s does not parse", op->name,
                                 version);
        if (error < 0)
            goto out;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        error = ps_index_error(rc, "read manifests of %s", op->name);
        goto out;
    }
    if (pkg->version_count > 1)
        qsort(pkg->versions, pkg->version_count, sizeof(*pkg->versions), version_desc);
    op->pkg = pkg;
    pkg = NULL; /* now owned by op */
out:
    if (cursor)
        mdb_cursor_close(cursor);
    package_free(pkg);
    return error;
}

typedef struct generation_op {
    uint64_t generation;
} generation_op;

static int generation_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    generation_op *op = payload;
    return read_generation(&op->generation, txn, index);
}

/*
 * Find name in the cache, loading it when missing, after dropping the cache
 * if the generation moved. On success the lock is held (read or write, as
 * *write_locked says) and *out points into the cache until the unlock; a
 * package with no versions is a valid "no such package" answer. On failure
 * the lock is released.
 */
static int cache_acquire(cached_package **out, int *write_locked, pkgstore_registry *reg,
                         const char *name)
{
    generation_op gen;
    load_op load = {reg, name, NULL, 0};
    int error;

    *out = NULL;
    *write_locked = 0;
    if ((error = ps_index_read(reg->index, generation_txn, &gen)) < 0)
        return error;

    pthread_rwlock_rdlock(&reg->lock);
    if (reg->generation_known && reg->generation == gen.generation) {
        cached_package *pkg = cache_find(reg, name);
        if (pkg) {
            *out = pkg;
            return 0;
        }
    }
    pthread_rwlock_unlock(&reg->lock);

    /* Load outside the lock (it may parse many manifests), then insert. */
    if ((error = ps_index_read(reg->index, load_txn, &load)) < 0)
        return error;

    pthread_rwlock_wrlock(&reg->lock);
    if (!reg->generation_known || reg->generation != load.generation) {
        cache_clear(reg);
        reg->generation = load.generation;
        reg->generation_known = 1;
    }
    cached_package *pkg = cache_find(reg, name);
    if (pkg) {
        package_free(load.pkg); /* another thread was first */
    } else {
        pkg = load.pkg;
        cache_insert(reg, pkg);
    }
    *out = pkg;
    *write_locked = 1;
    return 0;
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
    *out = reg;
    return 0;
}

void pkgstore_registry_free(pkgstore_registry *reg)
{
    if (!reg)
        return;
    cache_clear(reg);
    free(reg->buckets);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
}

/* ------------------------------------------------------------------ validation */

static int check_name_version(char version_out[PKGSTORE_VERSION_MAX + 1], const char *name,
                              const char *version)
{
    pkgstore_semver parsed;
    char formatted[PKGSTORE_SEMVER_STR_SIZE];
    int error;
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    if (!version)
        return ps_error_set(PKGSTORE_EINVALID, "version: missing");
    if ((error = pkgstore_version_parse(&parsed, version)) < 0)
        return error; /* the detail starts with "version: " */
    if (pkgstore_version_format(formatted, &parsed) > PKGSTORE_VERSION_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "version: longer than %d characters",
                            PKGSTORE_VERSION_MAX);
    strcpy(version_out, formatted);
    return 0;
}

/* ------------------------------------------------------------------ dependency check */

/* Append to a growing detail buffer. */
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
    PS_PRINTF(4, 5);
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    if (*used >= size)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = *used + (size_t)n < size ? *used + (size_t)n : size;
}

int pkgstore_registry_check_dependencies(pkgstore_registry *reg,
                                         const pkgstore_manifest *manifest)
{
    char detail[2048];
    size_t used = 0, missing = 0;
    int error = 0;

    if (!reg || !manifest)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    detail[0] = '\0';
    for (size_t i = 0; i < pkgstore_manifest_dependency_count(manifest); i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(manifest, i);
        pkgstore_version_constraint *constraint = NULL;
        const char *reason = NULL;
        if ((error = pkgstore_version_constraint_parse(&constraint, dep->constraint)) < 0) {
            ps_error_prefix("dependencies[%zu].version", i);
            return error;
        }
        cached_package *pkg;
        int write_locked;
        if ((error = cache_acquire(&pkg, &write_locked, reg, dep->name)) < 0) {
            pkgstore_version_constraint_free(constraint);
            return error;
        }
        if (pkg->version_count == 0) {
            reason = "no such package";
        } else {
            int primary = 0, matched = 0;
            for (size_t v = 0; v < pkg->version_count && !matched; v++) {
                if (pkg->versions[v].type != PKGSTORE_TYPE_PRIMARY)
                    continue;
                primary = 1;
                matched = pkgstore_version_constraint_match(constraint, &pkg->versions[v].semver);
            }
            if (!primary)
                reason = "not a primary package";
            else if (!matched)
                reason = "no matching version";
        }
        pthread_rwlock_unlock(&reg->lock);
        pkgstore_version_constraint_free(constraint);
        if (reason) {
            append(detail, sizeof(detail), &used, "%s%s %s (%s)", missing ? "; " : "",
                   dep->name, dep->constraint, reason);
            missing++;
        }
    }
    if (missing)
        return ps_error_set(PKGSTORE_EDEPENDENCY, "%s %s: unmet dependenc%s: %s",
                            pkgstore_manifest_name(manifest), pkgstore_manifest_version(manifest),
                            missing == 1 ? "y" : "ies", detail);
    return 0;
}

/* ------------------------------------------------------------------ writing */

typedef struct put_op {
    const char *key;
    size_t key_len;
    /* Commit only if the record is still this one (has_expected 0: must be
     * absent); check 0 writes unconditionally. */
    int check;
    int has_expected;
    pkgstore_digest expected;
    const pkgstore_digest *digest;
    const char *json;
    size_t json_len;
    int raced; /* out */
} put_op;

static int current_digest(int *found, pkgstore_digest *out, MDB_txn *txn, ps_index *index,
                          const char *key_bytes, size_t key_len)
{
    MDB_val key = {key_len, (void *)key_bytes}, val;
    int rc = mdb_get(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val);
    *found = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ps_index_error(rc, "read manifest record");
    if (val.mv_size < PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: short manifest record");
    memcpy(out->bytes, val.mv_data, PKGSTORE_DIGEST_SIZE);
    *found = 1;
    return 0;
}

static int put_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    put_op *op = payload;
    pkgstore_digest now;
    int found, error, rc;
    unsigned char *value = NULL;

    op->raced = 0;
    if (op->check) {
        if ((error = current_digest(&found, &now, txn, index, op->key, op->key_len)) < 0)
            return error;
        if (found != op->has_expected ||
            (found && !pkgstore_digest_equal(&now, &op->expected))) {
            op->raced = 1;
            return PKGSTORE_ECONFLICT;
        }
    }
    size_t value_len = PKGSTORE_DIGEST_SIZE + op->json_len;
    MDB_val key = {op->key_len, (void *)op->key}, val = {value_len, NULL};
    /* MDB_RESERVE: LMDB hands us the space, we fill it. */
    if ((rc = mdb_put(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val, MDB_RESERVE)) != 0)
        return ps_index_error(rc, "write manifest record");
    value = val.mv_data;
    memcpy(value, op->digest->bytes, PKGSTORE_DIGEST_SIZE);
    memcpy(value + PKGSTORE_DIGEST_SIZE, op->json, op->json_len);
    return bump_generation(txn, index);
}

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
    return record_manifest(&op->manifest, &op->digest, op->reg, op->name, op->version,
                           val.mv_data, val.mv_size, op->verify);
}

/* Make the package records of (name, version) match its current manifest:
 * put one per artifact, delete those of platforms it no longer has. Repeat
 * while another writer changed the manifest meanwhile, so the last writer's
 * view wins however the syncs interleave. */
typedef struct stale_walk {
    size_t prefix_len;                 /* of "name\0version\0" */
    const pkgstore_manifest *manifest; /* NULL: every record of version is stale */
    char (*stale)[PKGSTORE_PLATFORM_MAX + 1];
    size_t stale_count;
    size_t stale_capacity;
    int nomem;
} stale_walk;

/* Called for each PS_DB_PACKAGES key "name\0version\0platform" of one
 * version: remember the platforms the manifest no longer lists. */
static int stale_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                    void *payload)
{
    stale_walk *walk = payload;
    char platform[PKGSTORE_PLATFORM_MAX + 1];
    size_t len = key_len - walk->prefix_len;
    (void)val;
    (void)val_len;
    if (key_len <= walk->prefix_len || len > PKGSTORE_PLATFORM_MAX)
        return 0;
    memcpy(platform, (const char *)key + walk->prefix_len, len);
    platform[len] = '\0';
    if (walk->manifest) {
        for (size_t i = 0; i < pkgstore_manifest_artifact_count(walk->manifest); i++)
            if (strcmp(pkgstore_manifest_artifact(walk->manifest, i)->platform, platform) == 0)
                return 0;
    }
    if (walk->stale_count == walk->stale_capacity) {
        size_t capacity = walk->stale_capacity ? walk->stale_capacity * 2 : 8;
        void *grown = realloc(walk->stale, capacity * sizeof(*walk->stale));
        if (!grown) {
            walk->nomem = 1;
            return 1;
        }
        walk->stale = grown;
        walk->stale_capacity = capacity;
    }
    strcpy(walk->stale[walk->stale_count++], platform);
    return 0;
}

static int put_records(pkgstore_registry *reg, const pkgstore_manifest *m)
{
    int error;
    for (size_t i = 0; i < pkgstore_manifest_artifact_count(m); i++) {
        const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
        pkgstore_package_record record;
        memset(&record, 0, sizeof(record));
        strcpy(record.name, pkgstore_manifest_name(m));
        strcpy(record.version, pkgstore_manifest_version(m));
        strcpy(record.platform, a->platform);
        record.type = pkgstore_manifest_type(m);
        record.digest = a->digest;
        record.size = a->size;
        strcpy(record.format, a->format);
        strcpy(record.entrypoint, a->entrypoint);
        record.created = pkgstore_manifest_created(m);
        /* the blobs were checked (or the manifest is committed, which
         * implies they exist) and the caller holds the store lock */
        if ((error = ps_index_package_put(reg->index, &record)) < 0)
            return error;
    }
    return 0;
}

static int sync_records(pkgstore_registry *reg, const char *name, const char *version)
{
    char key[KEY_MAX];
    size_t key_len = manifest_key(key, name, version);
    int error = 0;

    for (int attempt = 0; attempt < ADD_RETRIES; attempt++) {
        read_op before = {key, key_len, reg, name, version, 0, {{0}}, NULL, 1, 0};
        read_op after = {key, key_len, reg, name, version, 0, {{0}}, NULL, 0, 0};
        stale_walk walk = {key_len + 1, NULL, NULL, 0, 0, 0};

        if ((error = ps_index_read(reg->index, read_txn, &before)) < 0)
            return error;
        const pkgstore_manifest *m = before.found ? before.manifest : NULL;
        if (m && (error = put_records(reg, m)) < 0)
            goto next;
        walk.manifest = m;
        /* the manifest key "name\0version" plus a NUL is the records' prefix */
        key[key_len] = '\0';
        if ((error = ps_index_foreach(reg->index, PS_DB_PACKAGES, key, key_len + 1, stale_cb,
                                      &walk)) < 0 &&
            !walk.nomem)
            goto next;
        if (walk.nomem) {
            error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
            goto next;
        }
        for (size_t i = 0; i < walk.stale_count; i++) {
            error = pkgstore_index_package_delete(reg->store, name, version, walk.stale[i]);
            if (error == PKGSTORE_ENOTFOUND)
                error = 0;
            if (error < 0)
                goto next;
        }
        if ((error = ps_index_read(reg->index, read_txn, &after)) < 0)
            goto next;
        int same = after.found == before.found &&
                   (!after.found || pkgstore_digest_equal(&after.digest, &before.digest));
        free(walk.stale);
        pkgstore_manifest_free(before.manifest);
        if (same)
            return 0;
        continue;
    next:
        free(walk.stale);
        pkgstore_manifest_free(before.manifest);
        return error;
    }
    return ps_error_set(PKGSTORE_ECONFLICT,
                        "%s %s: package records kept changing under concurrent writers", name,
                        version);
}

/* After a failed change that may have written package records already:
 * bring them back in line with the manifest, keeping the original error. */
static int undo_records(int error, pkgstore_registry *reg, const char *name, const char *version)
{
    char detail[1024];
    snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
    (void)sync_records(reg, name, version);
    return ps_error_set(error, "%s", detail);
}

/* Check that every artifact's blob is in the store with the listed size.
 * size 0 in *sizes_from_store mode takes the blob's size. */
static int check_blob(pkgstore_registry *reg, const pkgstore_digest *digest, uint64_t *size,
                      int take_size, const char *field)
{
    uint64_t actual;
    char shown[PKGSTORE_DIGEST_STR_SIZE];
    int error = pkgstore_store_blob_stat(&actual, reg->store, digest);
    pkgstore_digest_format(shown, digest);
    if (error == PKGSTORE_ENOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s: blob %s is not in the store", field, shown);
    if (error < 0)
        return error;
    if (take_size && *size == 0) {
        *size = actual;
        return 0;
    }
    if (*size != actual)
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH, "%s: size %llu, but blob %s has %llu bytes",
                            field, (unsigned long long)*size, shown, (unsigned long long)actual);
    return 0;
}

/* "./bin//otelcol" -> "bin/otelcol": the archive module ignores these
 * spellings, the manifest keeps one. */
static void normalize_entrypoint(char *path)
{
    char *out = path;
    const char *in = path;
    while (in[0] == '.' && in[1] == '/') {
        in += 2;
        while (*in == '/')
            in++;
    }
    for (; *in; in++) {
        if (*in == '/' && in[1] == '/')
            continue;
        *out++ = *in;
    }
    *out = '\0';
}

/*
 * Look at the artifact's blob (the caller holds the store lock and has
 * checked that it exists): detect the format when none is given, and for an
 * archive check every entry against the safety rules and the entrypoint
 * (or take the archive's only executable when none is given). An unsafe
 * archive is refused here, at upload, not at extraction on a node.
 */
static int inspect_artifact(pkgstore_registry *reg, pkgstore_artifact *artifact,
                            const char *field)
{
    pkgstore_archive_format declared = PKGSTORE_ARCHIVE_UNKNOWN, detected;
    pkgstore_archive_info *info = NULL;
    char shown[PKGSTORE_DIGEST_STR_SIZE];
    int fd = -1, error;

    pkgstore_digest_format(shown, &artifact->digest);
    if (artifact->format[0] &&
        (error = pkgstore_archive_format_parse(&declared, artifact->format)) < 0) {
        ps_error_prefix("%s.format", field);
        return error;
    }
    if (declared == PKGSTORE_ARCHIVE_BINARY)
        return 0; /* a binary is any bytes at all */
    if ((error = pkgstore_store_blob_open(&fd, NULL, reg->store, &artifact->digest)) < 0)
        return error;
    if (declared == PKGSTORE_ARCHIVE_UNKNOWN) {
        if ((error = pkgstore_archive_detect_fd(&detected, fd)) < 0) {
            ps_error_prefix("%s: blob %s", field, shown);
            goto out;
        }
        strcpy(artifact->format, pkgstore_archive_format_name(detected));
        if (detected == PKGSTORE_ARCHIVE_BINARY)
            goto out;
    }
    if (!(info = calloc(1, sizeof(*info)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    normalize_entrypoint(artifact->entrypoint);
    error = pkgstore_archive_validate_fd(info, fd, artifact->entrypoint[0] ? artifact->entrypoint
                                                                           : NULL,
                                         NULL);
    if (error < 0) {
        ps_error_prefix("%s: archive %s", field, shown);
        goto out;
    }
    if (declared != PKGSTORE_ARCHIVE_UNKNOWN && info->format != declared) {
        error = ps_error_set(PKGSTORE_EINVALID, "%s.format: declared %s, but blob %s is %s",
                             field, artifact->format, shown,
                             pkgstore_archive_format_name(info->format));
        goto out;
    }
    if (!artifact->entrypoint[0]) {
        if (info->executables != 1) {
            error = ps_error_set(PKGSTORE_EINVALID,
                                 "%s.entrypoint: required: archive %s holds %llu executable "
                                 "files, not exactly one",
                                 field, shown, (unsigned long long)info->executables);
            goto out;
        }
        if (strlen(info->sole_executable) > PKGSTORE_ENTRYPOINT_MAX) {
            error = ps_error_set(PKGSTORE_ELIMIT, "%s.entrypoint: longer than %d bytes", field,
                                 PKGSTORE_ENTRYPOINT_MAX);
            goto out;
        }
        strcpy(artifact->entrypoint, info->sole_executable);
        normalize_entrypoint(artifact->entrypoint);
    }
out:
    free(info);
    if (fd >= 0)
        close(fd);
    return error;
}

/* Store m's blob and commit its record if the record is still `expected`
 * (when check). *raced is set when it was not. */
static int store_manifest(pkgstore_digest *digest_out, int *raced, pkgstore_registry *reg,
                          const pkgstore_manifest *m, int check, int has_expected,
                          const pkgstore_digest *expected)
{
    char *json = NULL;
    size_t json_len = 0;
    char key[KEY_MAX];
    pkgstore_digest digest;
    int error;

    *raced = 0;
    if ((error = pkgstore_manifest_serialize(&json, &json_len, m, 0)) < 0)
        return error;
    /* The artifacts get their package records before the manifest record
     * exists: gc marks artifact blobs through package records, so a crash
     * between the two leaves at worst a record of an unlisted artifact,
     * never a listed artifact without one. */
    if ((error = put_records(reg, m)) < 0)
        goto out;
    if ((error = pkgstore_store_add_buffer(&digest, reg->store, json, json_len)) < 0) {
        ps_error_prefix("manifest of %s %s", pkgstore_manifest_name(m),
                        pkgstore_manifest_version(m));
        goto out;
    }
    put_op op;
    memset(&op, 0, sizeof(op));
    op.key = key;
    op.key_len = manifest_key(key, pkgstore_manifest_name(m), pkgstore_manifest_version(m));
    op.check = check;
    op.has_expected = has_expected;
    if (expected)
        op.expected = *expected;
    op.digest = &digest;
    op.json = json;
    op.json_len = json_len;
    error = ps_index_write(reg->index, put_txn, &op);
    if (op.raced) {
        *raced = 1;
        error = 0;
        goto out;
    }
    if (error < 0) {
        ps_error_prefix("%s %s", pkgstore_manifest_name(m), pkgstore_manifest_version(m));
        goto out;
    }
    if (digest_out)
        *digest_out = digest;
out:
    pkgstore_free(json);
    return error;
}

int pkgstore_registry_add(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                          pkgstore_registry *reg, const char *name, const char *version,
                          const pkgstore_artifact *artifact,
                          const pkgstore_registry_add_options *opts)
{
    pkgstore_registry_add_options defaults = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    char normalized[PKGSTORE_VERSION_MAX + 1], key[KEY_MAX];
    pkgstore_artifact wanted;
    pkgstore_manifest *m = NULL;
    pkgstore_digest digest;
    int locked = 0, touched = 0, error;

    if (manifest_out)
        *manifest_out = NULL;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg || !artifact)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if (!opts)
        opts = &defaults;
    if (opts->version != PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION)
        return ps_error_set(PKGSTORE_EINVALID, "registry: unknown add options version %u",
                            opts->version);
    if (opts->type != PKGSTORE_TYPE_PRIMARY && opts->type != PKGSTORE_TYPE_ADDON)
        return ps_error_set(PKGSTORE_EINVALID, "type: neither primary nor addon");
    if ((error = check_name_version(normalized, name, version)) < 0)
        return error;

    /* From here on gc waits: the blob checked now stays until we are done. */
    if ((error = ps_store_lock(reg->store, 0, 0)) < 0)
        goto out;
    locked = 1;
    wanted = *artifact;
    if (memchr(wanted.format, '\0', sizeof(wanted.format)) == NULL ||
        memchr(wanted.entrypoint, '\0', sizeof(wanted.entrypoint)) == NULL) {
        error = ps_error_set(PKGSTORE_EINVALID, "artifact: unterminated format or entrypoint");
        goto out;
    }
    if ((error = check_blob(reg, &wanted.digest, &wanted.size, 1, "artifact")) < 0 ||
        (error = inspect_artifact(reg, &wanted, "artifact")) < 0)
        goto out;

    /* Validate the rest on a scratch manifest before touching anything. */
    if ((error = pkgstore_manifest_new(&m, name, normalized, opts->type)) < 0 ||
        (error = pkgstore_manifest_add_artifact(m, &wanted)) < 0)
        goto out;
    wanted = *pkgstore_manifest_artifact(m, 0);
    for (size_t i = 0; i < opts->dependency_count; i++)
        if ((error = pkgstore_manifest_add_dependency(m, opts->dependencies[i].name,
                                                      opts->dependencies[i].constraint)) < 0)
            goto out;
    pkgstore_manifest_free(m);
    m = NULL;

    size_t key_len = manifest_key(key, name, normalized);
    int attempt;
    for (attempt = 0; attempt < ADD_RETRIES; attempt++) {
        read_op current = {key, key_len, reg, name, normalized, 0, {{0}}, NULL, 1, 1};
        int raced;
        if ((error = ps_index_read(reg->index, read_txn, &current)) < 0)
            goto out;
        if (current.found) {
            m = current.manifest;
            if (pkgstore_manifest_type(m) != opts->type) {
                error = ps_error_set(PKGSTORE_ECONFLICT, "%s %s: already exists as %s, not %s",
                                     name, normalized,
                                     pkgstore_package_type_name(pkgstore_manifest_type(m)),
                                     pkgstore_package_type_name(opts->type));
                goto out;
            }
        } else {
            if ((error = pkgstore_manifest_new(&m, name, normalized, opts->type)) < 0)
                goto out;
            if (opts->created && (error = pkgstore_manifest_set_created(m, opts->created)) < 0)
                goto out;
        }
        if ((error = pkgstore_manifest_add_artifact(m, &wanted)) < 0)
            goto out;
        for (size_t i = 0; i < opts->dependency_count; i++)
            if ((error = pkgstore_manifest_add_dependency(m, opts->dependencies[i].name,
                                                          opts->dependencies[i].constraint)) < 0)
                goto out;
        if (!opts->force && (error = pkgstore_registry_check_dependencies(reg, m)) < 0)
            goto out;
        touched = 1;
        if ((error = store_manifest(&digest, &raced, reg, m, 1, current.found,
                                    &current.digest)) < 0)
            goto out;
        if (!raced)
            break;
        pkgstore_manifest_free(m);
        m = NULL;
    }
    if (attempt == ADD_RETRIES) {
        error = ps_error_set(PKGSTORE_ECONFLICT,
                             "%s %s: the manifest kept changing under concurrent writers", name,
                             normalized);
        goto out;
    }
    touched = 0;
    if ((error = sync_records(reg, name, normalized)) < 0)
        goto out;
    if (digest_out)
        *digest_out = digest;
    if (manifest_out) {
        *manifest_out = m;
        m = NULL; /* now owned by the caller */
    }
out:
    if (error < 0 && touched)
        error = undo_records(error, reg, name, normalized);
    if (locked)
        ps_store_unlock(reg->store);
    pkgstore_manifest_free(m);
    return error;
}

int pkgstore_registry_put(pkgstore_digest *digest_out, pkgstore_registry *reg,
                          const pkgstore_manifest *manifest, int force)
{
    pkgstore_digest digest;
    int raced, error;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg || !manifest)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if ((error = ps_store_lock(reg->store, 0, 0)) < 0)
        return error;
    for (size_t i = 0; i < pkgstore_manifest_artifact_count(manifest); i++) {
        const pkgstore_artifact *a = pkgstore_manifest_artifact(manifest, i);
        char field[32];
        uint64_t size = a->size;
        pkgstore_artifact inspected = *a;
        snprintf(field, sizeof(field), "artifacts[%zu]", i);
        if ((error = check_blob(reg, &a->digest, &size, 0, field)) < 0 ||
            (error = inspect_artifact(reg, &inspected, field)) < 0)
            goto out;
    }
    if (!force && (error = pkgstore_registry_check_dependencies(reg, manifest)) < 0)
        goto out;
    if ((error = store_manifest(&digest, &raced, reg, manifest, 0, 0, NULL)) < 0) {
        error = undo_records(error, reg, pkgstore_manifest_name(manifest),
                             pkgstore_manifest_version(manifest));
        goto out;
    }
    if ((error = sync_records(reg, pkgstore_manifest_name(manifest),
                              pkgstore_manifest_version(manifest))) < 0)
        goto out;
    if (digest_out)
        *digest_out = digest;
out:
    ps_store_unlock(reg->store);
    return error;
}

/* ------------------------------------------------------------------ remove */

typedef struct remove_op {
    const char *key;
    size_t key_len;
} remove_op;

static int remove_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    remove_op *op = payload;
    MDB_val key = {op->key_len, (void *)op->key};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, NULL);
    if (rc == MDB_NOTFOUND)
        return PKGSTORE_ENOTFOUND;
    if (rc != 0)
        return ps_index_error(rc, "delete manifest record");
    return bump_generation(txn, index);
}

int pkgstore_registry_remove(pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key[KEY_MAX];
    int error;

    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = check_name_version(normalized, name, version)) < 0)
        return error;
    remove_op op = {key, manifest_key(key, name, normalized)};
    if ((error = ps_store_lock(reg->store, 0, 0)) < 0)
        return error;
    error = ps_index_write(reg->index, remove_txn, &op);
    if (error == PKGSTORE_ENOTFOUND)
        ps_error_set(error, "%s %s: no such version", name, normalized);
    else if (error == 0)
        error = sync_records(reg, name, normalized);
    ps_store_unlock(reg->store);
    return error;
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

int pkgstore_registry_versions(char ***versions_out, size_t *count_out, pkgstore_registry *reg,
                               const char *name)
{
    cached_package *pkg;
    int write_locked, error;
    char **versions = NULL;

    if (versions_out)
        *versions_out = NULL;
    if (count_out)
        *count_out = 0;
    if (!versions_out || !count_out || !reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    if ((error = cache_acquire(&pkg, &write_locked, reg, name)) < 0)
        return error;
    size_t count = pkg->version_count;
    if (count == 0) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no such package", name);
        goto out;
    }
    if (!(versions = calloc(count, sizeof(*versions)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        /* the cache is highest first; the list is lowest first */
        if (!(versions[i] = strdup(pkg->versions[count - 1 - i].version))) {
            pkgstore_registry_strings_free(versions, i);
            versions = NULL;
            error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
            goto out;
        }
    }
    *versions_out = versions;
    *count_out = count;
out:
    pthread_rwlock_unlock(&reg->lock);
    return error;
}

int pkgstore_registry_get(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                          pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key[KEY_MAX];
    int error;

    if (manifest_out)
        *manifest_out = NULL;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = check_name_version(normalized, name, version)) < 0)
        return error;
    read_op op = {key, manifest_key(key, name, normalized), reg, name, normalized, 0, {{0}},
                  NULL, manifest_out != NULL, 1};
    if ((error = ps_index_read(reg->index, read_txn, &op)) < 0) {
        pkgstore_manifest_free(op.manifest);
        return error;
    }
    if (!op.found)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no such version", name, normalized);
    if (digest_out)
        *digest_out = op.digest;
    if (manifest_out)
        *manifest_out = op.manifest; /* now owned by the caller */
    return 0;
}

/* ------------------------------------------------------------------ resolve */

/* Per-thread memo of recently parsed constraints and node platforms: a
 * fleet asks the same few questions over and over, and parsing them is a
 * large part of a resolve. Freed by the key's destructor at thread exit
 * (the main thread's stays reachable until the process ends). */
#define MEMO_CONSTRAINTS 8
#define MEMO_PLATFORMS 4
#define MEMO_TEXT_MAX 160

typedef struct memo {
    struct {
        char text[MEMO_TEXT_MAX];
        pkgstore_version_constraint *constraint;
    } constraints[MEMO_CONSTRAINTS];
    unsigned next_constraint;
    struct {
        char text[MEMO_TEXT_MAX];
        pkgstore_platform platform;
    } platforms[MEMO_PLATFORMS];
    unsigned next_platform;
} memo;

static pthread_key_t memo_key;
static int memo_key_ok;
static pthread_once_t memo_once = PTHREAD_ONCE_INIT;

static void memo_free(void *ptr)
{
    memo *cache = ptr;
    if (!cache)
        return;
    for (size_t i = 0; i < MEMO_CONSTRAINTS; i++)
        pkgstore_version_constraint_free(cache->constraints[i].constraint);
    free(cache);
}

static void memo_init(void)
{
    memo_key_ok = pthread_key_create(&memo_key, memo_free) == 0;
}

static memo *memo_get(void)
{
    pthread_once(&memo_once, memo_init);
    if (!memo_key_ok)
        return NULL;
    memo *cache = pthread_getspecific(memo_key);
    if (!cache && (cache = calloc(1, sizeof(*cache))) &&
        pthread_setspecific(memo_key, cache) != 0) {
        free(cache);
        cache = NULL;
    }
    return cache;
}

/* A parsed constraint for text into *out. *owned says whether the caller
 * must free it (it is not in the memo). */
static int constraint_get(const pkgstore_version_constraint **out, int *owned, const char *text)
{
    pkgstore_version_constraint *parsed = NULL;
    memo *cache = memo_get();
    size_t len = strlen(text);
    int error;

    *out = NULL;
    *owned = 0;
    if (cache && len < MEMO_TEXT_MAX) {
        for (size_t i = 0; i < MEMO_CONSTRAINTS; i++) {
            if (cache->constraints[i].constraint &&
                memcmp(cache->constraints[i].text, text, len + 1) == 0) {
                *out = cache->constraints[i].constraint;
                return 0;
            }
        }
    }
    if ((error = pkgstore_version_constraint_parse(&parsed, text)) < 0)
        return error;
    if (cache && len < MEMO_TEXT_MAX) {
        unsigned slot = cache->next_constraint++ % MEMO_CONSTRAINTS;
        pkgstore_version_constraint_free(cache->constraints[slot].constraint);
        memcpy(cache->constraints[slot].text, text, len + 1);
        cache->constraints[slot].constraint = parsed;
    } else {
        *owned = 1;
    }
    *out = parsed;
    return 0;
}

static int platform_get(pkgstore_platform *out, const char *text)
{
    memo *cache = memo_get();
    size_t len = strlen(text);
    int error;
    if (cache && len < MEMO_TEXT_MAX) {
        for (size_t i = 0; i < MEMO_PLATFORMS; i++) {
            if (memcmp(cache->platforms[i].text, text, len + 1) == 0 &&
                cache->platforms[i].platform.os[0]) {
                *out = cache->platforms[i].platform;
                return 0;
            }
        }
    }
    if ((error = pkgstore_platform_parse(out, text)) < 0)
        return error;
    if (cache && len < MEMO_TEXT_MAX) {
        unsigned slot = cache->next_platform++ % MEMO_PLATFORMS;
        memcpy(cache->platforms[slot].text, text, len + 1);
        cache->platforms[slot].platform = *out;
    }
    return 0;
}

/* The best artifact of v given the node's rank of each package platform:
 * index into v->artifacts, or -1. */
static long best_artifact(const cached_version *v, const int *ranks)
{
    long best = -1;
    int best_rank = 0;
    for (size_t i = 0; i < v->artifact_count; i++) {
        int rank = ranks[v->artifacts[i].platform];
        if (rank != PKGSTORE_PLATFORM_RANK_NONE && (best < 0 || rank < best_rank)) {
            best = (long)i;
            best_rank = rank;
            if (rank == 0)
                break;
        }
    }
    return best;
}

int pkgstore_registry_resolve(pkgstore_resolution *out, pkgstore_registry *reg, const char *name,
                              const char *constraint, const char *node_platform)
{
    pkgstore_platform node;
    const pkgstore_version_constraint *parsed = NULL;
    cached_package *pkg;
    int write_locked, owned = 0, error;

    if (!out || !reg) {
        if (out)
            memset(out, 0, sizeof(*out));
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    }
    int any_version = !constraint || !constraint[0];
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        goto out_unlocked;
    /* (the platform and version modules' details name the field already) */
    error = node_platform ? platform_get(&node, node_platform) : pkgstore_platform_host(&node);
    if (error < 0)
        goto out_unlocked;
    if (!any_version && (error = constraint_get(&parsed, &owned, constraint)) < 0)
        goto out_unlocked;
    if ((error = cache_acquire(&pkg, &write_locked, reg, name)) < 0)
        goto out_unlocked;

    if (pkg->version_count == 0) {
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no such package", name);
        goto out;
    }
    /* rank the node against each distinct platform of the package once */
    int ranks_small[64], *ranks = ranks_small;
    if (pkg->platform_count > 64 && !(ranks = malloc(pkg->platform_count * sizeof(*ranks)))) {
        error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
        goto out;
    }
    uint64_t compatible = 0;
    for (size_t i = 0; i < pkg->platform_count; i++) {
        ranks[i] = pkgstore_platform_rank(&node, &pkg->platforms[i].parsed);
        if (ranks[i] != PKGSTORE_PLATFORM_RANK_NONE)
            compatible |= 1ULL << (i < MASK_OTHER ? i : MASK_OTHER);
    }
    const cached_version *chosen = NULL;
    long artifact = -1;
    /* Without a constraint: releases first, pre-releases only as a last
     * resort. With one, the constraint decides (npm pre-release rule).
     * The platform mask is checked first: it is cheaper than matching. */
    for (int pass = any_version ? 0 : 1; pass < 2 && !chosen && compatible; pass++) {
        for (size_t i = 0; i < pkg->version_count; i++) {
            const cached_version *v = &pkg->versions[i];
            if (!(v->platform_mask & compatible))
                continue;
            if (any_version) {
                if ((pass == 0) == pkgstore_version_is_prerelease(&v->semver))
                    continue;
            } else if (!pkgstore_version_constraint_match(parsed, &v->semver)) {
                continue;
            }
            if ((artifact = best_artifact(v, ranks)) >= 0) {
                chosen = v;
                break;
            }
        }
    }
    if (!chosen) {
        /* say why: no version matches at all, or none for this platform */
        int matched_version = any_version;
        for (size_t i = 0; i < pkg->version_count && !matched_version; i++)
            matched_version = pkgstore_version_constraint_match(parsed, &pkg->versions[i].semver);
        char shown[PKGSTORE_PLATFORM_STR_SIZE];
        pkgstore_platform_format(shown, &node);
        if (!matched_version)
            error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no version matches %s", name,
                                 any_version ? "*" : constraint);
        else
            error = ps_error_set(PKGSTORE_ENOTFOUND,
                                 "%s: no version matching %s has an artifact for %s", name,
                                 any_version ? "*" : constraint, shown);
        if (ranks != ranks_small)
            free(ranks);
        goto out;
    }
    if (ranks != ranks_small)
        free(ranks);
    const cached_artifact *a = &chosen->artifacts[artifact];
    /* (no memset of the 1.5 KB result on the hot path: every field is set;
     * padding and the bytes after each string are left as they were) */
    strcpy(out->name, pkg->name);
    strcpy(out->version, chosen->version);
    out->type = chosen->type;
    out->manifest_digest = chosen->manifest_digest;
    strcpy(out->artifact.platform, pkg->platforms[a->platform].name);
    out->artifact.digest = a->digest;
    out->artifact.size = a->size;
    strcpy(out->artifact.format, format_names[a->format]);
    strcpy(out->artifact.entrypoint, a->entrypoint);
out:
    pthread_rwlock_unlock(&reg->lock);
out_unlocked:
    if (owned)
        pkgstore_version_constraint_free((pkgstore_version_constraint *)parsed);
    if (error < 0)
        memset(out, 0, sizeof(*out));
    return error;
}
