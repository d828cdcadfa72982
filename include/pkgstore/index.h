/*
 * pkgstore/index.h - the records kept in the store's LMDB index.
 *
 * The index lives in <store>/index/ and is opened with the store. Blob
 * records are written by the store after a blob is durable; package records
 * are keyed by (name, version, platform) and may only point at blobs that
 * exist (invariant 2).
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

typedef struct pkgstore_package_record {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    char platform[PKGSTORE_PLATFORM_MAX + 1];
    pkgstore_package_type type;
    pkgstore_digest digest;
    uint64_t size;
    char format[PKGSTORE_FORMAT_MAX + 1];
    char entrypoint[PKGSTORE_ENTRYPOINT_MAX + 1];
    int64_t created; /* Unix time (seconds) */
} pkgstore_package_record;

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
 * Insert or replace the package record for (name, version, platform).
 * The blob it names must already be in the store.
 * Errors: PKGSTORE_EINVALID (empty or over-long field), PKGSTORE_ENOTFOUND
 * (the blob is missing), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_index_package_put(pkgstore_store *store,
                                            const pkgstore_package_record *record);

/** The record for (name, version, platform). Errors: PKGSTORE_ENOTFOUND. */
PKGSTORE_API int pkgstore_index_package_get(pkgstore_package_record *out, pkgstore_store *store,
                                            const char *name, const char *version,
                                            const char *platform);

/** Remove one record. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_index_package_delete(pkgstore_store *store, const char *name,
                                               const char *version, const char *platform);

typedef int (*pkgstore_index_package_cb)(const pkgstore_package_record *record, void *payload);

/**
 * Walk package records in (name, version, platform) byte order; name NULL
 * walks all of them, otherwise only that package's.
 */
PKGSTORE_API int pkgstore_index_package_foreach(pkgstore_store *store, const char *name,
                                                pkgstore_index_package_cb cb, void *payload);

#ifdef __cplusplus
}
#endif

#endif
