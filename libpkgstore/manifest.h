/*
 * Private: the manifest as manifest.c and manifest_parse.c hold it, and the
 * checks they (and the registry) share.
 */
#ifndef PS_MANIFEST_H
#define PS_MANIFEST_H

#include "pkgstore/manifest.h"

/* The manifest, shared by manifest.c (build, serialize) and
 * manifest_parse.c. Everything in it has been validated. */
typedef struct ps_manifest_annotation {
    char *key;
    char *value;
} ps_manifest_annotation;

struct pkgstore_manifest {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    pkgstore_package_type type;
    int64_t created;
    pkgstore_artifact *artifacts;
    size_t artifact_count;
    pkgstore_dependency *dependencies;
    size_t dependency_count;
    ps_manifest_annotation *annotations; /* sorted by key (bytewise, as JSON_SORT_KEYS) */
    size_t annotation_count;
};

/* Validate and normalize an artifact into *out; prefix names it in details
 * ("artifacts[2]"). An empty format is "binary"; an empty entrypoint of a
 * binary is default_entrypoint. */
int ps_manifest_artifact_check(pkgstore_artifact *out, const char *prefix,
                               const pkgstore_artifact *in, const char *default_entrypoint);

/* A dependency constraint: UTF-8, within the limit, and it parses. */
int ps_manifest_check_constraint(const char *field, const char *constraint);

/* Normalize a SemVer version (no leading 'v') into out. */
int ps_manifest_normalize_version(char out[PKGSTORE_VERSION_MAX + 1], const char *field,
                                  const char *version);

/* Copy src into dst of size bytes, or PKGSTORE_ELIMIT naming field. */
int ps_manifest_copy_bounded(char *dst, size_t size, const char *field, const char *src);

/* 1 if format names an archive (anything but "binary"), else 0. */
int ps_manifest_format_is_archive(const char *format);

#endif
