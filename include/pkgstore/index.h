/*
 * pkgstore/index.h - the records kept in the store's LMDB index.
 *
 * The index lives in <store>/index/ and is opened with the store. Blob
 * records are written by the store after a blob is durable; package records
 * are keyed by (name, version, platform), are written only by the registry
 * (pkgstore/registry.h) and only point at blobs that exist (invariant 2).
 * This header reads them.
 */
#ifndef PKGSTORE_INDEX_H
#define PKGSTORE_INDEX_H

#include "common.h"
#include "digest.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PKGSTORE_NAME_MAX 128        /* [a-z0-9][a-z0-9._-]{0,127} */
#define PKGSTORE_VERSION_MAX 128     /* a SemVer string */
#define PKGSTORE_PLATFORM_MAX 64     /* os/arch[/variant] */
#define PKGSTORE_FORMAT_MAX 16       /* binary, tar, tar+gzip, tar+zstd, tar+xz, zip */
#define PKGSTORE_ENTRYPOINT_MAX 1024 /* path inside an archive, or a file name */

typedef enum pkgstore_package_type {
    PKGSTORE_TYPE_PRIMARY = 0,
    PKGSTORE_TYPE_ADDON = 1
} pkgstore_package_type;

/** "primary" or "addon"; NULL for an unknown value. */
PKGSTORE_API const char *pkgstore_package_type_name(pkgstore_package_type type);

/** Parse "primary" or "addon" into *out. Errors: PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_package_type_parse(pkgstore_package_type *out, const char *str);

typedef struct pkgstore_blob_record {
    pkgstore_digest digest;
    uint64_t size;
    int64_t added; /* Unix time (seconds) the blob was first recorded */
} pkgstore_blob_record;

/**
 * A package record (opaque): one artifact of one (name, version), keyed by
 * (name, version, platform). The registry writes them, one per artifact of
 * every manifest, in the same transaction as the manifest; they are the
 * index's flat view of the manifests, for listing and for gc.
 */
typedef struct pkgstore_package_record pkgstore_package_record;

/* Accessors. Strings and the digest are owned by the record and live as
 * long as it. */
PKGSTORE_API const char *pkgstore_package_record_name(const pkgstore_package_record *record);
PKGSTORE_API const char *pkgstore_package_record_version(const pkgstore_package_record *record);
/** The canonical os/arch[/variant]. */
PKGSTORE_API const char *pkgstore_package_record_platform(const pkgstore_package_record *record);
PKGSTORE_API pkgstore_package_type
pkgstore_package_record_type(const pkgstore_package_record *record);
/** The artifact's blob. */
PKGSTORE_API const pkgstore_digest *
pkgstore_package_record_digest(const pkgstore_package_record *record);
/** The blob's size in bytes. */
PKGSTORE_API uint64_t pkgstore_package_record_size(const pkgstore_package_record *record);
/** "binary", "tar", "tar+gzip", "tar+zstd", "tar+xz" or "zip". */
PKGSTORE_API const char *pkgstore_package_record_format(const pkgstore_package_record *record);
/** The path inside the archive, or the binary's file name. */
PKGSTORE_API const char *
pkgstore_package_record_entrypoint(const pkgstore_package_record *record);
/** The manifest's creation time, Unix seconds. */
PKGSTORE_API int64_t pkgstore_package_record_created(const pkgstore_package_record *record);

/** Free a record from pkgstore_index_package_get(). Accepts NULL. */
PKGSTORE_API void pkgstore_package_record_free(pkgstore_package_record *record);

/**
 * The blob record for digest into *out.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EIO (LMDB failure, quoted).
 */
PKGSTORE_API int pkgstore_index_blob_get(pkgstore_blob_record *out, pkgstore_store *store,
                                         const pkgstore_digest *digest);

/** Called once per record; a non-zero return stops the walk and is returned. */
typedef int (*pkgstore_index_blob_cb)(const pkgstore_blob_record *record, void *payload);

/** Walk every blob record in digest order. */
PKGSTORE_API int pkgstore_index_blob_foreach(pkgstore_store *store, pkgstore_index_blob_cb cb,
                                             void *payload);

/**
 * The record for (name, version, platform) into *out (free with
 * pkgstore_package_record_free()). Errors: PKGSTORE_ENOTFOUND,
 * PKGSTORE_EINVALID (empty or over-long name, version or platform),
 * PKGSTORE_ECORRUPT, PKGSTORE_EIO, PKGSTORE_ENOMEM. On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_index_package_get(pkgstore_package_record **out, pkgstore_store *store,
                                            const char *name, const char *version,
                                            const char *platform);

/** Called once per record; record is borrowed, valid during the call only.
 * A non-zero return stops the walk and is returned. */
typedef int (*pkgstore_index_package_cb)(const pkgstore_package_record *record, void *payload);

/**
 * Walk package records in (name, version, platform) byte order; name NULL
 * walks all of them, otherwise only that package's. The walk reads in
 * batches, not from one snapshot. Errors: PKGSTORE_EINVALID (NULL cb, bad
 * name), PKGSTORE_ECORRUPT, PKGSTORE_EIO, PKGSTORE_ENOMEM, or cb's return.
 */
PKGSTORE_API int pkgstore_index_package_foreach(pkgstore_store *store, const char *name,
                                                pkgstore_index_package_cb cb, void *payload);

#ifdef __cplusplus
}
#endif

#endif
