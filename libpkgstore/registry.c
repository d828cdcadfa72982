/*
 * registry.c - packages: add an artifact to (name, version), list, get,
 * resolve (name, constraint, platform) to an artifact, remove, and the
 * dependency check.
 *
 * What it keeps in the index (docs/index-format.md):
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
 * resolve(), the version lists and the dependency check are served from
 * a per-handle cache (registry_cache.c).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive_private.h"
#include "error.h"
#include "index.h"
#include "manifest.h"
#include "policy.h"
#include "registry.h"
#include "pkgstore/archive.h"
#include "pkgstore/platform.h"
#include "pkgstore/registry.h"
#include "pkgstore/version.h"
#include "store.h"

#define ADD_RETRIES 64

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

static int bump_generation(MDB_txn *txn, ps_index *index)
{
    uint64_t generation;
    unsigned char bytes[8];
    int error, rc;
    if ((error = ps_registry_read_generation(&generation, txn, index)) < 0)
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
}

/* ------------------------------------------------------------------ validation */

static int check_name_version(char version_out[PKGSTORE_VERSION_MAX + 1], const char *name,
                              const char *version)
{
    int error;
    if ((error = pkgstore_manifest_name_validate(name)) < 0)
        return error;
    return ps_manifest_normalize_version(version_out, "version", version);
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
    return ps_registry_record_manifest(&op->manifest, &op->digest, op->reg, op->name, op->version,
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
    char key[PS_REGISTRY_KEY_MAX];
    size_t key_len = ps_registry_manifest_key(key, name, version);
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

/* "./bin//otelcol/" -> "bin/otelcol": the archive module ignores these
 * spellings, the manifest keeps one. A path the archive module refuses is
 * left alone for validation to report. Normalizing never lengthens. */
static void normalize_entrypoint(char *path)
{
    char clean[PS_ARCHIVE_MAX_PATH_LEN + 1];
    if (ps_archive_normalize_path(clean, sizeof(clean), path, "entrypoint") == 0)
        strcpy(path, clean);
    else
        pkgstore_error_clear();
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
        strcpy(artifact->entrypoint, info->sole_executable); /* normalized by the scan */
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
    char key[PS_REGISTRY_KEY_MAX];
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
    op.key_len = ps_registry_manifest_key(key, pkgstore_manifest_name(m), pkgstore_manifest_version(m));
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
    char normalized[PKGSTORE_VERSION_MAX + 1], key[PS_REGISTRY_KEY_MAX];
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

    size_t key_len = ps_registry_manifest_key(key, name, normalized);
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
    const char *name, *version;
} remove_op;

static int remove_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    remove_op *op = payload;
    MDB_val key = {op->key_len, (void *)op->key};
    int error, rc = mdb_del(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, NULL);
    if (rc == MDB_NOTFOUND)
        return PKGSTORE_ENOTFOUND;
    if (rc != 0)
        return ps_index_error(rc, "delete manifest record");
    /* in the transaction of the delete (a refusal aborts it): a policy put
     * checks the version in its own, so neither can slip past the other */
    if ((error = ps_policy_check_unreferenced(txn, index, op->name, op->version)) < 0)
        return error;
    return bump_generation(txn, index);
}

int pkgstore_registry_remove(pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key[PS_REGISTRY_KEY_MAX];
    int error;

    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = check_name_version(normalized, name, version)) < 0)
        return error;
    remove_op op = {key, ps_registry_manifest_key(key, name, normalized), name, normalized};
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

int pkgstore_registry_get(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                          pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key[PS_REGISTRY_KEY_MAX];
    int error;

    if (manifest_out)
        *manifest_out = NULL;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = check_name_version(normalized, name, version)) < 0)
        return error;
    read_op op = {key, ps_registry_manifest_key(key, name, normalized), reg, name, normalized, 0, {{0}},
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
