/*
 * registry_write.c - every change to the registry: add an artifact to
 * (name, version), put a whole manifest, remove a version. What an upload
 * is checked for (blob, format from the content, archive safety,
 * entrypoint, dependencies, immutability) is here too.
 *
 * One change is one LMDB write transaction (change_txn): the manifest
 * blob's blob record, the manifest record, the version's package records
 * and the generation counter commit together or not at all, so no reader
 * ever sees records out of step with their manifest, and a crash leaves at
 * worst an unrecorded manifest blob for gc. Changes are optimistic: read
 * the record, build the new manifest, store its blob, then commit only if
 * the record is still the one read (a compare-and-swap inside the
 * transaction), else start over; so concurrent adds to one version from
 * many processes are all kept. Removing or replacing a version checks, in
 * that same transaction, that no policy references it (policy_refs.c).
 *
 * The store lock is held shared from the blob checks to the commit, so gc
 * (exclusive) never runs in between. Blobs a change records are durable
 * before the transaction that records them (invariant 2): in BATCH mode the
 * change syncs the store first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive_private.h"
#include "error.h"
#include "index.h"
#include "manifest.h"
#include "policy_refs.h"
#include "registry.h"
#include "pkgstore/archive.h"
#include "pkgstore/registry.h"
#include "store.h"
#include "trust_store.h"

/* Compare-and-swap attempts before giving up on a version that keeps
 * changing under concurrent writers. */
#define CHANGE_RETRIES 64

int pkgstore_registry_add_options_init(pkgstore_registry_add_options *opts, unsigned int version)
{
    /* version 1 ends before `replace`: write no further than it did */
    int error = ps_options_init(opts,
                                version == 1 ? offsetof(pkgstore_registry_add_options, replace)
                                             : sizeof(*opts),
                                "registry add", version, PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION);
    if (error == 0)
        opts->type = PKGSTORE_TYPE_PRIMARY;
    return error;
}

/* ------------------------------------------------------------------ the transaction */

typedef struct change_op {
    const char *name, *version; /* version normalized */
    const char *key;            /* "name\0version" */
    size_t key_len;
    int cas;          /* commit only if the record is still the one read: */
    int had_record;   /* absent (0), or */
    pkgstore_digest read_digest; /* this one */
    int must_exist;   /* remove: PKGSTORE_ENOTFOUND when there is no record */
    int check_policies; /* refuse while a policy references the version */
    /* the new manifest; NULL removes the version */
    const pkgstore_manifest *manifest;
    const pkgstore_digest *digest; /* of json, the manifest blob */
    const char *json;
    size_t json_len;
    int raced; /* out: the CAS failed */
} change_op;

int ps_registry_bump_generation(MDB_txn *txn, ps_index *index)
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

/* Delete the package records of the version whose platform the manifest
 * does not list (all of them when manifest is NULL). The keys are
 * collected first: deleting under a live cursor is LMDB's subtlest part. */
static int drop_stale_records(MDB_txn *txn, ps_index *index, const change_op *op)
{
    char prefix[PS_REGISTRY_KEY_MAX];
    size_t prefix_len = op->key_len + 1;
    char (*stale)[PKGSTORE_PLATFORM_MAX + 1] = NULL;
    size_t count = 0, capacity = 0;
    MDB_cursor *cursor = NULL;
    int rc, error = 0;

    memcpy(prefix, op->key, op->key_len);
    prefix[op->key_len] = '\0'; /* "name\0version\0" */
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_PACKAGES), &cursor)) != 0)
        return ps_index_error(rc, "open packages cursor");
    MDB_val key = {prefix_len, prefix}, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= prefix_len || memcmp(key.mv_data, prefix, prefix_len) != 0)
            break;
        size_t len = key.mv_size - prefix_len;
        char platform[PKGSTORE_PLATFORM_MAX + 1];
        if (len > PKGSTORE_PLATFORM_MAX)
            continue; /* not a key the library writes: fsck's to report */
        memcpy(platform, (const char *)key.mv_data + prefix_len, len);
        platform[len] = '\0';
        int listed = 0;
        for (size_t i = 0; op->manifest && i < pkgstore_manifest_artifact_count(op->manifest); i++)
            listed = listed ||
                     strcmp(pkgstore_manifest_artifact(op->manifest, i)->platform, platform) == 0;
        if (listed)
            continue;
        if (count == capacity) {
            size_t grown_capacity = capacity ? capacity * 2 : 8;
            void *grown = realloc(stale, grown_capacity * sizeof(*stale));
            if (!grown) {
                error = ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
                goto out;
            }
            stale = grown;
            capacity = grown_capacity;
        }
        memcpy(stale[count++], platform, len + 1);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        error = ps_index_error(rc, "read package records of %s %s", op->name, op->version);
        goto out;
    }
    mdb_cursor_close(cursor);
    cursor = NULL;
    for (size_t i = 0; i < count && error == 0; i++) {
        error = ps_index_package_del_txn(txn, index, op->name, op->version, stale[i]);
        if (error == PKGSTORE_ENOTFOUND)
            error = 0;
    }
out:
    if (cursor)
        mdb_cursor_close(cursor);
    free(stale);
    return error;
}

static int put_records(MDB_txn *txn, ps_index *index, const pkgstore_manifest *m)
{
    pkgstore_package_record *record = malloc(sizeof(*record));
    int error = 0;
    if (!record)
        return ps_error_set(PKGSTORE_ENOMEM, "registry: out of memory");
    for (size_t i = 0; i < pkgstore_manifest_artifact_count(m) && error == 0; i++) {
        const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
        memset(record, 0, sizeof(*record));
        strcpy(record->name, pkgstore_manifest_name(m));
        strcpy(record->version, pkgstore_manifest_version(m));
        strcpy(record->platform, a->platform);
        record->type = pkgstore_manifest_type(m);
        record->digest = a->digest;
        record->size = a->size;
        strcpy(record->format, a->format);
        strcpy(record->entrypoint, a->entrypoint);
        record->created = pkgstore_manifest_created(m);
        error = ps_index_package_put_txn(txn, index, record);
    }
    free(record);
    return error;
}

static int change_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    change_op *op = payload;
    MDB_val key = {op->key_len, (void *)op->key}, val;
    MDB_dbi manifests = ps_index_dbi(index, PS_DB_MANIFESTS);
    int rc, error;

    op->raced = 0;
    rc = mdb_get(txn, manifests, &key, &val);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return ps_index_error(rc, "read manifest record of %s %s", op->name, op->version);
    if (rc == 0 && val.mv_size < PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: short manifest record of %s %s", op->name,
                            op->version);
    if (op->must_exist && rc == MDB_NOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no such version", op->name, op->version);
    if (op->cas && ((rc == 0) != op->had_record ||
                    (rc == 0 && memcmp(val.mv_data, op->read_digest.bytes,
                                       PKGSTORE_DIGEST_SIZE) != 0))) {
        op->raced = 1;
        return PKGSTORE_ECONFLICT; /* aborts; the caller starts over */
    }
    if (op->check_policies &&
        (error = ps_policy_refs_check(txn, index, op->name, op->version)) < 0)
        return error;
    /* Signatures are of the manifest's bytes: a removed or replaced
     * manifest takes its signature records with it (docs/trust.md). */
    if (rc == 0 && (!op->manifest || memcmp(val.mv_data, op->digest->bytes,
                                            PKGSTORE_DIGEST_SIZE) != 0)) {
        pkgstore_digest old_digest;
        memcpy(old_digest.bytes, val.mv_data, PKGSTORE_DIGEST_SIZE);
        if ((error = ps_trust_signatures_drop_txn(txn, index, &old_digest)) < 0)
            return error;
    }

    if (op->manifest) {
        /* the blob is durable (the caller synced in BATCH mode) */
        if ((error = ps_index_blob_put_txn(txn, index, op->digest, op->json_len)) < 0)
            return error;
        val.mv_size = PKGSTORE_DIGEST_SIZE + op->json_len;
        val.mv_data = NULL;
        /* MDB_RESERVE: LMDB hands us the space, we fill it */
        if ((rc = mdb_put(txn, manifests, &key, &val, MDB_RESERVE)) != 0)
            return ps_index_error(rc, "while adding %s %s", op->name, op->version);
        memcpy(val.mv_data, op->digest->bytes, PKGSTORE_DIGEST_SIZE);
        memcpy((unsigned char *)val.mv_data + PKGSTORE_DIGEST_SIZE, op->json, op->json_len);
    } else if ((rc = mdb_del(txn, manifests, &key, NULL)) != 0) {
        return ps_index_error(rc, "while removing %s %s", op->name, op->version);
    }
    if ((error = drop_stale_records(txn, index, op)) < 0)
        return error;
    if (op->manifest && (error = put_records(txn, index, op->manifest)) < 0)
        return error;
    return ps_registry_bump_generation(txn, index);
}

/* Store m's canonical bytes as its blob (durable once this returns) and
 * commit the change if the version's record is still the one read
 * (had_record, read_digest); *raced says it was not. */
static int commit_manifest(int *raced, pkgstore_digest *digest_out, pkgstore_registry *reg,
                           const pkgstore_manifest *m, int had_record,
                           const pkgstore_digest *read_digest, int check_policies)
{
    change_op op;
    char key[PS_REGISTRY_KEY_MAX];
    char *json = NULL;
    size_t json_len = 0;
    int error;

    *raced = 0;
    if ((error = pkgstore_manifest_serialize(&json, &json_len, m, 0)) < 0)
        return error;
    if ((error = ps_store_add_buffer_unrecorded(digest_out, reg->store, json, json_len)) < 0) {
        ps_error_prefix("manifest of %s %s", pkgstore_manifest_name(m),
                        pkgstore_manifest_version(m));
        goto out;
    }
    /* BATCH mode: the manifest blob (and the artifacts added before) become
     * durable here, before a record names them. A no-op otherwise. */
    if ((error = pkgstore_store_sync(reg->store)) < 0)
        goto out;
    memset(&op, 0, sizeof(op));
    op.name = pkgstore_manifest_name(m);
    op.version = pkgstore_manifest_version(m);
    op.key = key;
    op.key_len = ps_registry_manifest_key(key, op.name, op.version);
    op.cas = 1;
    op.had_record = had_record;
    if (had_record)
        op.read_digest = *read_digest;
    op.check_policies = check_policies;
    op.manifest = m;
    op.digest = digest_out;
    op.json = json;
    op.json_len = json_len;
    error = ps_index_write(reg->index, change_txn, &op);
    if (op.raced) {
        *raced = 1;
        error = 0;
        pkgstore_error_clear();
    } else if (error == 0) {
        ps_store_mark_dirty(reg->store); /* BATCH: the index is synced at the next sync */
    }
out:
    pkgstore_free(json);
    return error;
}

/* ------------------------------------------------------------------ checking an artifact */

/* Check that the artifact's blob is in the store with the listed size.
 * take_size: a size of 0 takes the blob's. */
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
 * checked that it exists). The format always comes from the content: an
 * empty format is filled in, a declared one must be what the content is (a
 * tar declared "binary" would be installed whole, unchecked, and offered to
 * every node). An archive is checked entry by entry against the safety
 * rules and for its entrypoint (or its only executable is taken when none
 * is given), so an unsafe archive is refused here, at upload, not at
 * extraction on a node.
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
    if ((error = pkgstore_store_blob_open(&fd, NULL, reg->store, &artifact->digest)) < 0)
        return error;
    if ((error = pkgstore_archive_detect_fd(&detected, fd)) < 0) {
        ps_error_prefix("%s: blob %s", field, shown);
        goto out;
    }
    /* (a declared archive format is compared with the one validation reads) */
    if (declared == PKGSTORE_ARCHIVE_BINARY && detected != PKGSTORE_ARCHIVE_BINARY) {
        error = ps_error_set(PKGSTORE_EINVALID,
                             "%s.format: declared binary, but blob %s is a %s archive", field,
                             shown, pkgstore_archive_format_name(detected));
        goto out;
    }
    if (declared != PKGSTORE_ARCHIVE_UNKNOWN && declared != PKGSTORE_ARCHIVE_BINARY &&
        detected == PKGSTORE_ARCHIVE_BINARY) {
        error = ps_error_set(PKGSTORE_EFORMAT,
                             "%s.format: declared %s, but blob %s is not an archive", field,
                             artifact->format, shown);
        goto out;
    }
    if (declared == PKGSTORE_ARCHIVE_UNKNOWN)
        strcpy(artifact->format, pkgstore_archive_format_name(detected));
    if (detected == PKGSTORE_ARCHIVE_BINARY)
        goto out; /* a binary is any bytes that are no archive */
    normalize_entrypoint(artifact->entrypoint);
    error = pkgstore_archive_validate_fd(&info, fd, artifact->entrypoint[0] ? artifact->entrypoint
                                                                            : NULL,
                                         NULL);
    if (error < 0) {
        ps_error_prefix("%s: archive %s", field, shown);
        goto out;
    }
    if (declared != PKGSTORE_ARCHIVE_UNKNOWN && pkgstore_archive_info_format(info) != declared) {
        error = ps_error_set(PKGSTORE_EINVALID, "%s.format: declared %s, but blob %s is %s",
                             field, artifact->format, shown,
                             pkgstore_archive_format_name(pkgstore_archive_info_format(info)));
        goto out;
    }
    if (!artifact->entrypoint[0]) {
        const char *sole = pkgstore_archive_info_sole_executable(info);
        if (pkgstore_archive_info_executables(info) != 1) {
            error = ps_error_set(PKGSTORE_EINVALID,
                                 "%s.entrypoint: required: archive %s holds %llu executable "
                                 "files, not exactly one",
                                 field, shown,
                                 (unsigned long long)pkgstore_archive_info_executables(info));
            goto out;
        }
        if (strlen(sole) > PKGSTORE_ENTRYPOINT_MAX) {
            error = ps_error_set(PKGSTORE_ELIMIT, "%s.entrypoint: longer than %d bytes", field,
                                 PKGSTORE_ENTRYPOINT_MAX);
            goto out;
        }
        strcpy(artifact->entrypoint, sole); /* normalized by the scan */
    }
out:
    pkgstore_archive_info_free(info);
    if (fd >= 0)
        close(fd);
    return error;
}

/* Whether an artifact already recorded is the one offered again: same
 * bytes, installed the same way. */
static int same_artifact(const pkgstore_artifact *a, const pkgstore_artifact *b)
{
    return pkgstore_digest_equal(&a->digest, &b->digest) && a->size == b->size &&
           strcmp(a->format, b->format) == 0 && strcmp(a->entrypoint, b->entrypoint) == 0;
}

/* The refusal of a changed artifact of an existing (name, version,
 * platform). */
static int immutable(const char *name, const char *version, const pkgstore_artifact *old,
                     const pkgstore_artifact *offered)
{
    char old_digest[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(old_digest, &old->digest);
    if (!offered)
        return ps_error_set(PKGSTORE_ECONFLICT,
                            "%s %s %s: the new manifest drops this artifact (%s); an existing "
                            "version changes its artifacts only with replace",
                            name, version, old->platform, old_digest);
    return ps_error_set(PKGSTORE_ECONFLICT,
                        "%s %s %s: already has a different artifact (%s, %s, entrypoint %s); an "
                        "existing version changes its artifacts only with replace",
                        name, version, old->platform, old_digest, old->format, old->entrypoint);
}

/* ------------------------------------------------------------------ add */

int pkgstore_registry_add(pkgstore_manifest **manifest_out, pkgstore_digest *digest_out,
                          pkgstore_registry *reg, const char *name, const char *version,
                          const pkgstore_artifact *artifact,
                          const pkgstore_registry_add_options *opts)
{
    pkgstore_registry_add_options defaults = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    char normalized[PKGSTORE_VERSION_MAX + 1];
    pkgstore_artifact wanted, previous;
    pkgstore_manifest *m = NULL;
    pkgstore_digest digest;
    int locked = 0, replaced = 0, replace, attempt, error;

    if (manifest_out)
        *manifest_out = NULL;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg || !artifact)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if (!opts)
        opts = &defaults;
    if ((error = ps_options_version("registry add", opts->version,
                                    PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION)) < 0)
        return error;
    /* fields of version 2 and later are read only from structs that have them */
    replace = opts->version >= 2 && opts->replace;
    if (opts->type != PKGSTORE_TYPE_PRIMARY && opts->type != PKGSTORE_TYPE_ADDON)
        return ps_error_set(PKGSTORE_EINVALID, "type: neither primary nor addon");
    if ((error = ps_registry_check_name_version(normalized, name, version)) < 0)
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
    wanted = *pkgstore_manifest_artifact(m, 0); /* normalized */
    for (size_t i = 0; i < opts->dependency_count; i++)
        if ((error = pkgstore_manifest_add_dependency(m, opts->dependencies[i].name,
                                                      opts->dependencies[i].constraint)) < 0)
            goto out;
    pkgstore_manifest_free(m);
    m = NULL;

    for (attempt = 0; attempt < CHANGE_RETRIES; attempt++) {
        pkgstore_digest read_digest, now;
        int found, raced;
        replaced = 0;
        if ((error = ps_registry_read(&found, &m, &read_digest, reg, name, normalized, 1)) < 0)
            goto out;
        if (found) {
            if (pkgstore_manifest_type(m) != opts->type) {
                error = ps_error_set(PKGSTORE_ECONFLICT, "%s %s: already exists as %s, not %s",
                                     name, normalized,
                                     pkgstore_package_type_name(pkgstore_manifest_type(m)),
                                     pkgstore_package_type_name(opts->type));
                goto out;
            }
            const pkgstore_artifact *old = pkgstore_manifest_artifact_find(m, wanted.platform);
            if (old && !same_artifact(old, &wanted)) {
                if (!replace) {
                    error = immutable(name, normalized, old, &wanted);
                    goto out;
                }
                previous = *old;
                replaced = 1;
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
        /* The same artifact again (and no new dependency): nothing to write. */
        if (found && (error = pkgstore_manifest_digest(&now, m)) == 0 &&
            pkgstore_digest_equal(&now, &read_digest)) {
            digest = read_digest;
            break;
        }
        if (error < 0)
            goto out;
        if (!opts->force && (error = pkgstore_registry_check_dependencies(reg, m)) < 0)
            goto out;
        if ((error = commit_manifest(&raced, &digest, reg, m, found, &read_digest, replaced)) < 0)
            goto out;
        if (!raced)
            break;
        pkgstore_manifest_free(m);
        m = NULL;
    }
    if (attempt == CHANGE_RETRIES) {
        error = ps_error_set(PKGSTORE_ECONFLICT,
                             "%s %s: the manifest kept changing under concurrent writers", name,
                             normalized);
        goto out;
    }
    if (replaced && opts->replaced)
        *opts->replaced = previous;
    if (digest_out)
        *digest_out = digest;
    if (manifest_out) {
        *manifest_out = m;
        m = NULL; /* now owned by the caller */
    }
    error = replaced;
out:
    if (locked)
        ps_store_unlock(reg->store);
    pkgstore_manifest_free(m);
    return error;
}

/* ------------------------------------------------------------------ put */

int pkgstore_registry_put(pkgstore_digest *digest_out, pkgstore_registry *reg,
                          const pkgstore_manifest *manifest, unsigned int flags)
{
    const char *name, *version;
    pkgstore_digest digest;
    int replacing = 0, attempt, error;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (!reg || !manifest)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL argument");
    if (flags & ~(PKGSTORE_REGISTRY_FORCE | PKGSTORE_REGISTRY_REPLACE))
        return ps_error_set(PKGSTORE_EINVALID, "registry put: unknown flags 0x%x", flags);
    name = pkgstore_manifest_name(manifest);
    version = pkgstore_manifest_version(manifest);
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
    if (!(flags & PKGSTORE_REGISTRY_FORCE) &&
        (error = pkgstore_registry_check_dependencies(reg, manifest)) < 0)
        goto out;
    if ((error = pkgstore_manifest_digest(&digest, manifest)) < 0)
        goto out;

    for (attempt = 0; attempt < CHANGE_RETRIES; attempt++) {
        pkgstore_manifest *current = NULL;
        pkgstore_digest read_digest;
        int found, raced;
        replacing = 0;
        if ((error = ps_registry_read(&found, &current, &read_digest, reg, name, version, 1)) < 0)
            goto out;
        if (found && pkgstore_digest_equal(&read_digest, &digest)) {
            pkgstore_manifest_free(current);
            break; /* already exactly this */
        }
        /* Immutability: every artifact of the version stays as it is. */
        for (size_t i = 0; found && i < pkgstore_manifest_artifact_count(current); i++) {
            const pkgstore_artifact *old = pkgstore_manifest_artifact(current, i);
            const pkgstore_artifact *offered = pkgstore_manifest_artifact_find(manifest,
                                                                               old->platform);
            if (offered && same_artifact(old, offered))
                continue;
            if (!(flags & PKGSTORE_REGISTRY_REPLACE)) {
                error = immutable(name, version, old, offered);
                pkgstore_manifest_free(current);
                goto out;
            }
            replacing = 1;
        }
        if (found && pkgstore_manifest_type(current) != pkgstore_manifest_type(manifest)) {
            if (!(flags & PKGSTORE_REGISTRY_REPLACE)) {
                error = ps_error_set(
                    PKGSTORE_ECONFLICT, "%s %s: already exists as %s, not %s", name, version,
                    pkgstore_package_type_name(pkgstore_manifest_type(current)),
                    pkgstore_package_type_name(pkgstore_manifest_type(manifest)));
                pkgstore_manifest_free(current);
                goto out;
            }
            replacing = 1;
        }
        pkgstore_manifest_free(current);
        if ((error = commit_manifest(&raced, &digest, reg, manifest, found, &read_digest,
                                     replacing)) < 0)
            goto out;
        if (!raced)
            break;
    }
    if (attempt == CHANGE_RETRIES) {
        error = ps_error_set(PKGSTORE_ECONFLICT,
                             "%s %s: the manifest kept changing under concurrent writers", name,
                             version);
        goto out;
    }
    if (digest_out)
        *digest_out = digest;
    error = replacing;
out:
    ps_store_unlock(reg->store);
    return error;
}

/* ------------------------------------------------------------------ remove */

int pkgstore_registry_remove(pkgstore_registry *reg, const char *name, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key[PS_REGISTRY_KEY_MAX];
    change_op op;
    int error;

    if (!reg)
        return ps_error_set(PKGSTORE_EINVALID, "registry: NULL");
    if ((error = ps_registry_check_name_version(normalized, name, version)) < 0)
        return error;
    memset(&op, 0, sizeof(op));
    op.name = name;
    op.version = normalized;
    op.key = key;
    op.key_len = ps_registry_manifest_key(key, name, normalized);
    op.must_exist = 1;
    op.check_policies = 1;
    if ((error = ps_store_lock(reg->store, 0, 0)) < 0)
        return error;
    if ((error = ps_index_write(reg->index, change_txn, &op)) == 0)
        ps_store_mark_dirty(reg->store);
    ps_store_unlock(reg->store);
    return error;
}
