/*
 * pkgstore/manifest.h - the manifest v1 JSON (docs/manifest.md).
 *
 * A manifest describes one (name, version) of a package and maps platforms
 * to artifacts (blobs in the store):
 *
 *   {"annotations":{},"artifacts":[{"digest":"sha256:...","entrypoint":"otelcol",
 *    "format":"binary","platform":"linux/amd64","size":123}],"created":
 *    "2026-11-27T10:00:00Z","dependencies":[],"name":"otelcol","schemaVersion":1,
 *    "type":"primary","version":"0.98.0"}
 *
 * The canonical form (pkgstore_manifest_serialize() with flags 0) has sorted
 * keys, compact separators and UTF-8; its SHA-256 is the manifest digest.
 * Signing (pkgstore/trust.h) is a detached Ed25519 signature over exactly
 * those canonical bytes, so nothing here may change them once a manifest
 * exists.
 *
 * Parsing is strict and every error names the offending field, e.g.
 * "artifacts[1].digest: not a sha256 digest".
 *
 * A pkgstore_manifest is a plain value: not locked, safe to read from many
 * threads at once, but modifications need the caller's own exclusion.
 */
#ifndef PKGSTORE_MANIFEST_H
#define PKGSTORE_MANIFEST_H

#include "common.h"
#include "digest.h"
#include "index.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PKGSTORE_MANIFEST_SCHEMA_VERSION 1

/* Limits. Anything beyond them is refused with PKGSTORE_ELIMIT. */
#define PKGSTORE_MANIFEST_SIZE_MAX (1024 * 1024) /* bytes of JSON */
#define PKGSTORE_MANIFEST_ARTIFACTS_MAX 256
#define PKGSTORE_MANIFEST_DEPENDENCIES_MAX 64
#define PKGSTORE_MANIFEST_ANNOTATIONS_MAX 64
#define PKGSTORE_MANIFEST_DEPTH_MAX 8             /* JSON nesting */
#define PKGSTORE_MANIFEST_CONSTRAINT_MAX 256      /* a dependency's version constraint */
#define PKGSTORE_MANIFEST_ANNOTATION_KEY_MAX 256
#define PKGSTORE_MANIFEST_ANNOTATION_VALUE_MAX 4096
/* Room for "YYYY-MM-DDTHH:MM:SSZ" and its NUL. */
#define PKGSTORE_MANIFEST_TIME_SIZE 21

/** A manifest (opaque). */
typedef struct pkgstore_manifest pkgstore_manifest;

/** One artifact: the blob a node of `platform` installs. A small value. */
typedef struct pkgstore_artifact {
    char platform[PKGSTORE_PLATFORM_MAX + 1];     /* canonical os/arch[/variant] */
    pkgstore_digest digest;                       /* the blob */
    uint64_t size;                                /* the blob's size in bytes */
    char format[PKGSTORE_FORMAT_MAX + 1];         /* binary, tar, tar+gzip, tar+zstd, tar+xz, zip */
    char entrypoint[PKGSTORE_ENTRYPOINT_MAX + 1]; /* path in the archive, or file name */
} pkgstore_artifact;

/** One dependency: a version of a primary package this one needs. */
typedef struct pkgstore_dependency {
    char name[PKGSTORE_NAME_MAX + 1];
    char constraint[PKGSTORE_MANIFEST_CONSTRAINT_MAX + 1]; /* e.g. ">=0.90.0 <1.0.0" */
} pkgstore_dependency;

/* ---- names, formats, times ---- */

/**
 * 0 if name is a valid package name, [a-z0-9][a-z0-9._-]{0,127}; else
 * PKGSTORE_EINVALID with a detail naming the offending character.
 */
PKGSTORE_API int pkgstore_manifest_name_validate(const char *name);

/**
 * 0 if format is one of "binary", "tar", "tar+gzip", "tar+zstd", "tar+xz",
 * "zip"; else PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_manifest_format_validate(const char *format);

/**
 * Parse an RFC 3339 UTC time of the form "YYYY-MM-DDTHH:MM:SSZ" into Unix
 * seconds. Errors: PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_manifest_time_parse(int64_t *out, const char *str);

/** Format Unix seconds as "YYYY-MM-DDTHH:MM:SSZ". Errors: PKGSTORE_EINVALID
 * (outside the years 0000-9999). */
PKGSTORE_API int pkgstore_manifest_time_format(char out[PKGSTORE_MANIFEST_TIME_SIZE],
                                               int64_t seconds);

/* ---- build and modify ---- */

/**
 * A new manifest without artifacts into *out. name is validated; version
 * must be SemVer and is stored normalized (a leading "v" dropped); created
 * is set to the current time. Free with pkgstore_manifest_free().
 * Errors: PKGSTORE_EINVALID (the detail names the field), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_manifest_new(pkgstore_manifest **out, const char *name,
                                       const char *version, pkgstore_package_type type);

/** A deep copy of m into *out. Errors: PKGSTORE_EINVALID, PKGSTORE_ENOMEM. */
PKGSTORE_API int pkgstore_manifest_dup(pkgstore_manifest **out, const pkgstore_manifest *m);

/** Free a manifest. Accepts NULL. */
PKGSTORE_API void pkgstore_manifest_free(pkgstore_manifest *m);

/* Accessors. Strings are owned by m and valid until m is modified or freed. */
PKGSTORE_API const char *pkgstore_manifest_name(const pkgstore_manifest *m);
PKGSTORE_API const char *pkgstore_manifest_version(const pkgstore_manifest *m);
PKGSTORE_API pkgstore_package_type pkgstore_manifest_type(const pkgstore_manifest *m);
/** Creation time in Unix seconds. */
PKGSTORE_API int64_t pkgstore_manifest_created(const pkgstore_manifest *m);

PKGSTORE_API void pkgstore_manifest_set_type(pkgstore_manifest *m, pkgstore_package_type type);
/** Errors: PKGSTORE_EINVALID (outside the years 0000-9999). */
PKGSTORE_API int pkgstore_manifest_set_created(pkgstore_manifest *m, int64_t seconds);

/** The number of artifacts. */
PKGSTORE_API size_t pkgstore_manifest_artifact_count(const pkgstore_manifest *m);

/** Artifact i (in listed order), or NULL when out of range. Borrowed: valid
 * until m is modified or freed. */
PKGSTORE_API const pkgstore_artifact *pkgstore_manifest_artifact(const pkgstore_manifest *m,
                                                                 size_t i);

/** The artifact for exactly this platform (normalized first), or NULL. */
PKGSTORE_API const pkgstore_artifact *pkgstore_manifest_artifact_find(const pkgstore_manifest *m,
                                                                      const char *platform);

/**
 * Add a copy of artifact, or replace the artifact of the same platform in
 * place (keeping its position). The platform is normalized; the format must
 * be valid; an empty entrypoint becomes the manifest's name for a "binary"
 * and is refused for an archive. Returns 0 when added, 1 when replaced.
 * Errors: PKGSTORE_EINVALID (detail names the field), PKGSTORE_ELIMIT (more
 * than PKGSTORE_MANIFEST_ARTIFACTS_MAX), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_manifest_add_artifact(pkgstore_manifest *m,
                                                const pkgstore_artifact *artifact);

/** Remove the artifact for platform. Errors: PKGSTORE_ENOTFOUND. */
PKGSTORE_API int pkgstore_manifest_remove_artifact(pkgstore_manifest *m, const char *platform);

/**
 * The artifact a node of node_platform should install: the best platform
 * rank (exact, then compatible fallbacks, then "any"); ties go to the first
 * listed. *out is borrowed from m. Errors: PKGSTORE_EINVALID (bad
 * platform), PKGSTORE_ENOTFOUND (nothing compatible; *out is NULL).
 */
PKGSTORE_API int pkgstore_manifest_best_artifact(const pkgstore_artifact **out,
                                                 const pkgstore_manifest *m,
                                                 const char *node_platform);

PKGSTORE_API size_t pkgstore_manifest_dependency_count(const pkgstore_manifest *m);
/** Dependency i, or NULL when out of range. Borrowed like artifacts. */
PKGSTORE_API const pkgstore_dependency *pkgstore_manifest_dependency(const pkgstore_manifest *m,
                                                                     size_t i);

/**
 * Add a dependency on a primary package, or replace the constraint of an
 * existing one with the same name. The constraint must parse.
 * Returns 0 when added, 1 when replaced. Errors: PKGSTORE_EINVALID,
 * PKGSTORE_ELIMIT, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_manifest_add_dependency(pkgstore_manifest *m, const char *name,
                                                  const char *constraint);

/**
 * Parse the text form of a dependency, "NAME CONSTRAINT" (the name, one or
 * more spaces, the constraint: "otelcol-contrib >=0.90.0 <1.0.0"), or NAME
 * alone for any version (constraint "*"), into *out. This is what
 * pkgstore-add --depends, pkgstore-push --depends and the upload route's
 * ?depends= take. The name is checked as pkgstore_manifest_name_validate()
 * does and the constraint as pkgstore_version_constraint_parse() does.
 * The detail starts with the part at fault: "name: invalid character '_'
 * at position 4 ...", "constraint: expected ...".
 * Errors: PKGSTORE_EINVALID (NULL, empty, a bad name, a space but no
 * constraint after it, a constraint that does not parse),
 * PKGSTORE_ELIMIT (a constraint longer than
 * PKGSTORE_MANIFEST_CONSTRAINT_MAX), PKGSTORE_ENOMEM. On failure *out is
 * zeroed.
 */
PKGSTORE_API int pkgstore_dependency_parse(pkgstore_dependency *out, const char *text);

PKGSTORE_API size_t pkgstore_manifest_annotation_count(const pkgstore_manifest *m);

/** Annotation i in key order into *key and *value (borrowed from m).
 * Errors: PKGSTORE_ENOTFOUND when out of range. */
PKGSTORE_API int pkgstore_manifest_annotation(const char **key, const char **value,
                                              const pkgstore_manifest *m, size_t i);

/** The value of annotation key, or NULL. Borrowed from m. */
PKGSTORE_API const char *pkgstore_manifest_annotation_get(const pkgstore_manifest *m,
                                                          const char *key);

/**
 * Set annotation key to value; value NULL removes it (absent is fine).
 * Both must be valid UTF-8 without NUL and within the limits.
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ELIMIT, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_manifest_annotation_set(pkgstore_manifest *m, const char *key,
                                                  const char *value);

/* ---- serialize and parse ---- */

/* pkgstore_manifest_serialize() flags. 0 means the canonical form. */
#define PKGSTORE_MANIFEST_PRETTY 1u /* indented for people; not canonical */

/**
 * Serialize m into a new NUL-terminated buffer *out (free with
 * pkgstore_free()), its length without the NUL in *len_out (may be NULL).
 * With flags 0 the bytes are canonical: hash them for the manifest digest,
 * store them as the manifest blob, sign them.
 * Errors: PKGSTORE_EINVALID (m has no artifact), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_manifest_serialize(char **out, size_t *len_out,
                                             const pkgstore_manifest *m, unsigned int flags);

/**
 * The manifest digest: SHA-256 of the canonical form.
 * Errors: as pkgstore_manifest_serialize().
 */
PKGSTORE_API int pkgstore_manifest_digest(pkgstore_digest *out, const pkgstore_manifest *m);

/**
 * Parse and validate len bytes of manifest JSON into *out (free with
 * pkgstore_manifest_free()). Strict: schemaVersion must be 1; unknown
 * fields, duplicate keys, wrong types, NUL characters and invalid UTF-8 are
 * refused; digests, names, versions, constraints, platforms (normalized),
 * formats and the time are checked; a platform may appear only once; at
 * least one artifact. Every detail starts with the field, e.g.
 * "artifacts[1].digest: not a sha256 digest".
 * Errors: PKGSTORE_EINVALID (malformed), PKGSTORE_ELIMIT (over
 * PKGSTORE_MANIFEST_SIZE_MAX bytes, nested deeper than
 * PKGSTORE_MANIFEST_DEPTH_MAX, too many artifacts, dependencies or
 * annotations, or an over-long string), PKGSTORE_EUNSUPPORTED (another
 * schemaVersion), PKGSTORE_ENOMEM. On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_manifest_parse(pkgstore_manifest **out, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
