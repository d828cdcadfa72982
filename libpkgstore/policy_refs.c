/*
 * policy_refs: the checks that tie policies and package versions together
 * inside one LMDB transaction (policy_refs.h). Policy records are JSON
 * values keyed by policy name in PS_DB_POLICIES; only their "package" and
 * "version" keys are read here, so fields added later do not matter.
 */
#include "policy_refs.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "manifest.h"
#include "pkgstore/manifest.h"
#include "pkgstore/store.h"

#define NAMED_MAX 5 /* policies named in the detail, at most */

/* The record's version, normalized when it parses (it should: the policy
 * module stores it normalized), else as written. */
static void record_version(char out[PKGSTORE_VERSION_MAX + 1], const char *version)
{
    if (ps_manifest_normalize_version(out, "version", version) < 0) {
        pkgstore_error_clear();
        snprintf(out, PKGSTORE_VERSION_MAX + 1, "%s", version);
    }
}

int ps_policy_refs_check(MDB_txn *txn, ps_index *index, const char *package, const char *version)
{
    char wanted[PKGSTORE_VERSION_MAX + 1], named[NAMED_MAX * 72 + 16];
    size_t count = 0, used = 0;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc, error = 0;

    record_version(wanted, version);
    named[0] = '\0';
    if ((rc = mdb_cursor_open(txn, ps_index_dbi(index, PS_DB_POLICIES), &cursor)) != 0)
        return ps_index_error(rc, "open policies cursor");
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        int policy_len = key.mv_size > 64 ? 64 : (int)key.mv_size;
        json_t *root = json_loadb(val.mv_data, val.mv_size, 0, NULL);
        const char *ref_package = json_string_value(json_object_get(root, "package"));
        const char *ref_version = json_string_value(json_object_get(root, "version"));
        if (!ref_package || !ref_version) {
            json_decref(root);
            error = ps_error_set(PKGSTORE_ECORRUPT,
                                 "index: policy record %.*s has no readable package and version, "
                                 "so it may reference %s %s",
                                 policy_len, (const char *)key.mv_data, package, wanted);
            goto out;
        }
        char ref[PKGSTORE_VERSION_MAX + 1];
        record_version(ref, ref_version);
        int match = strcmp(ref_package, package) == 0 && strcmp(ref, wanted) == 0;
        json_decref(root);
        if (!match)
            continue;
        if (count < NAMED_MAX)
            used += (size_t)snprintf(named + used, sizeof(named) - used, "%s%.*s",
                                     count ? ", " : "", policy_len, (const char *)key.mv_data);
        else if (count == NAMED_MAX)
            used += (size_t)snprintf(named + used, sizeof(named) - used, ", ...");
        count++;
    }
    if (rc != MDB_NOTFOUND) {
        error = ps_index_error(rc, "read policies");
        goto out;
    }
    if (count > 0)
        error = ps_error_set(PKGSTORE_ECONFLICT, "%s %s is referenced by polic%s %s", package,
                             wanted, count == 1 ? "y" : "ies", named);
out:
    mdb_cursor_close(cursor);
    return error;
}

int ps_policy_refs_target(pkgstore_package_type *type_out, MDB_txn *txn, ps_index *index,
                          pkgstore_store *store, const char *package, const char *version)
{
    char normalized[PKGSTORE_VERSION_MAX + 1], key_bytes[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + 2];
    pkgstore_manifest *manifest = NULL;
    void *blob = NULL;
    int rc, error;

    if (type_out)
        *type_out = PKGSTORE_TYPE_PRIMARY;
    if ((error = pkgstore_manifest_name_validate(package)) < 0 ||
        (error = ps_manifest_normalize_version(normalized, "version", version)) < 0)
        return error;
    size_t name_len = strlen(package), version_len = strlen(normalized);
    memcpy(key_bytes, package, name_len + 1);
    memcpy(key_bytes + name_len + 1, normalized, version_len);
    MDB_val key = {name_len + 1 + version_len, key_bytes}, val;
    if ((rc = mdb_get(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val)) == MDB_NOTFOUND)
        return ps_error_set(PKGSTORE_ENOTFOUND, "%s %s: no such version", package, normalized);
    if (rc != 0)
        return ps_index_error(rc, "read manifest record of %s %s", package, normalized);
    if (val.mv_size < PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: short manifest record of %s %s", package,
                            normalized);
    const void *json = (const unsigned char *)val.mv_data + PKGSTORE_DIGEST_SIZE;
    size_t json_len = val.mv_size - PKGSTORE_DIGEST_SIZE;
    if (json_len == 0) { /* an older writer's record: the bytes are in the blob */
        pkgstore_digest digest;
        memcpy(digest.bytes, val.mv_data, PKGSTORE_DIGEST_SIZE);
        if ((error = pkgstore_store_blob_read(&blob, &json_len, store, &digest,
                                              PKGSTORE_MANIFEST_SIZE_MAX)) < 0) {
            ps_error_prefix("manifest of %s %s", package, normalized);
            return error == PKGSTORE_ENOTFOUND ? PKGSTORE_ECORRUPT : error;
        }
        json = blob;
    }
    if ((error = pkgstore_manifest_parse(&manifest, json, json_len)) < 0) {
        ps_error_prefix("manifest of %s %s", package, normalized);
        error = error == PKGSTORE_ENOMEM ? error : PKGSTORE_ECORRUPT;
    } else if (type_out) {
        *type_out = pkgstore_manifest_type(manifest);
    }
    pkgstore_manifest_free(manifest);
    pkgstore_free(blob);
    return error;
}
