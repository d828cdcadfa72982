/*
 * pkgstore/registry.h - packages: (name, version) -> manifest -> artifacts.
 *
 * The registry keeps, in the store's index:
 *   - one manifest record per (name, version): the manifest digest (the
 *     manifest itself is a blob in the store, in canonical form);
 *   - one package record per artifact (pkgstore/index.h), so that
 *     pkgstore_index_package_foreach() sees every artifact;
 *   - a generation counter bumped by every change, so that every handle (in
 *     any process) notices changes made elsewhere.
 *
 * Names match [a-z0-9][a-z0-9._-]{0,127}; versions are SemVer 2.0.0 and are
 * normalized (a leading "v" dropped) before use, so "v1.2.3" and "1.2.3" are
 * the same version.
 *
 * A registry handle borrows its store (which must outlive it) and is safe to
 * share between threads. It caches parsed versions and artifacts per name
 * for pkgstore_registry_resolve(); the cache is invalidated through the
 * generation counter, so changes by other handles and processes are seen.
 */
#ifndef PKGSTORE_REGISTRY_H
#define PKGSTORE_REGISTRY_H

#include "common.h"
#include "digest.h"
#include "index.h"
#include "manifest.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pkgstore_registry pkgstore_registry;

/**
 * Open a registry over store into *out. Free with pkgstore_registry_free()
 * before the store. Errors: PKGSTORE_EINVALID, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_registry_open(pkgstore_registry **out, pkgstore_store *store);

/** Free a registry (not its store). Accepts NULL. */
PKGSTORE_API void pkgstore_registry_free(pkgstore_registry *reg);

/* ---- add ---- */

typedef struct pkgstore_registry_add_options {
    unsigned int version;        /* PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION */
    pkgstore_package_type type;  /* for a new version; must equal an existing version's */
    int force;                   /* skip the dependency check */
    /* Dependencies to add to the manifest (an existing one of the same
     * name gets the new constraint). May be NULL with count 0. */
    const pkgstore_dependency *dependencies;
    size_t dependency_count;
    int64_t created;             /* for a new version: Unix seconds, 0 = now */
} pkgstore_registry_add_options;

#define PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION 1
#define PKGSTORE_REGISTRY_ADD_OPTIONS_INIT \
    { PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION, PKGSTORE_TYPE_PRIMARY, 0, NULL, 0, 0 }

/**
 * Add artifact to (name, version): the manifest is created, or regenerated
 * with the artifact added (or replacing the one of the same platform),
 * stored as a blob and indexed with one package record per artifact.
 *
 * The artifact's blob must already be in the store (pkgstore_store_add_*).
 * artifact->size 0 means "the blob's size", otherwise it must equal it.
 * An empty format is detected from the blob's content (pkgstore/archive.h);
 * a declared archive format must match the content. An archive is checked
 * entry by entry against the extraction safety rules before anything is
 * recorded, and its entrypoint must be a regular file in it; an empty
 * entrypoint means the archive's only executable file (refused when there
 * is not exactly one). An empty entrypoint of a binary means the package
 * name. The platform is normalized, "./" prefixes of the entrypoint are
 * dropped.
 *
 * Unless opts->force, every dependency of the resulting manifest must be
 * met by an existing version of the named primary package.
 * Concurrent adds to the same (name, version), from any thread or process,
 * are all kept. opts may be NULL for the defaults (a primary package).
 *
 * *manifest_out (may be NULL) receives the new manifest (free with
 * pkgstore_manifest_free()), *digest_out (may be NULL) its digest.
 * Errors: PKGSTORE_EINVALID (bad name, version, platform, format,
 * entrypoint or dependency; the detail says which), PKGSTORE_ENOTFOUND (the
 * blob is not in the store, or the entrypoint is not in the archive),
 * PKGSTORE_EUNSAFE (an archive entry breaks the safety rules),
 * PKGSTORE_EFORMAT (a malformed archive), PKGSTORE_ESIZE_MISMATCH,
 * PKGSTORE_ECONFLICT
 * (the version exists with the other type), PKGSTORE_EDEPENDENCY (the
 * detail lists every unmet dependency), PKGSTORE_ELIMIT, PKGSTORE_EIO,
 * PKGSTORE_ENOSPC, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_registry_add(pkgstore_manifest **manifest_out,
                                       pkgstore_digest *digest_out, pkgstore_registry *reg,
                                       const char *name, const char *version,
                                       const pkgstore_artifact *artifact,
                                       const pkgstore_registry_add_options *opts);

/**
 * Store a whole manifest as (name, version), replacing what was there.
 * Every artifact's blob must be in the store with the listed size, and
 * archives are checked as by pkgstore_registry_add() (their format and
 * entrypoint are taken as listed). The
 * dependency check is as for pkgstore_registry_add() (force skips it).
 * *digest_out (may be NULL) receives the manifest digest.
 * Errors: as pkgstore_registry_add().
 */
PKGSTORE_API int pkgstore_registry_put(pkgstore_digest *digest_out, pkgstore_registry *reg,
                                       const pkgstore_manifest *manifest, int force);

/**
 * Check that every dependency of manifest is met by an existing version of
 * the named primary package. Errors: PKGSTORE_EDEPENDENCY with a detail
 * listing everything missing, e.g. "unmet dependencies: otelcol-contrib
 * >=0.90.0 <1.0.0 (no matching version); foo ^1 (no such package)",
 * PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_registry_check_dependencies(pkgstore_registry *reg,
                                                      const pkgstore_manifest *manifest);

/* ---- read ---- */

/**
 * The package names, sorted bytewise, into a new array *names_out of
 * *count_out strings. Free with pkgstore_registry_strings_free(). An empty
 * registry gives count 0 (and a NULL array). Errors: PKGSTORE_EIO,
 * PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_registry_names(char ***names_out, size_t *count_out,
                                         pkgstore_registry *reg);

/**
 * The versions of name, lowest to highest SemVer precedence, into a new
 * array (free with pkgstore_registry_strings_free()).
 * Errors: PKGSTORE_EINVALID (bad name), PKGSTORE_ENOTFOUND (no such
 * package), PKGSTORE_EIO, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_registry_versions(char ***versions_out, size_t *count_out,
                                            pkgstore_registry *reg, const char *name);

/** Free an array from pkgstore_registry_names() or _versions(). Accepts NULL. */
PKGSTORE_API void pkgstore_registry_strings_free(char **strings, size_t count);

/**
 * The manifest of (name, version) into *manifest_out (may be NULL; free with
 * pkgstore_manifest_free()) and its digest into *digest_out (may be NULL).
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ENOTFOUND, PKGSTORE_ECORRUPT (the
 * manifest blob is missing or does not parse), PKGSTORE_EIO,
 * PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_registry_get(pkgstore_manifest **manifest_out,
                                       pkgstore_digest *digest_out, pkgstore_registry *reg,
                                       const char *name, const char *version);

/** What a node gets: a version of a package and the artifact for it. */
typedef struct pkgstore_resolution {
    char name[PKGSTORE_NAME_MAX + 1];
    char version[PKGSTORE_VERSION_MAX + 1];
    pkgstore_package_type type;
    pkgstore_digest manifest_digest;
    pkgstore_artifact artifact;
} pkgstore_resolution;

/**
 * Resolve (name, constraint, node platform) into *out: among the versions
 * that satisfy constraint and have an artifact the node can run, the one of
 * highest precedence, and its best artifact (platform rank: exact, then the
 * compatible fallbacks, then "any"; ties go to the first listed).
 * constraint NULL or "" means any version, preferring releases: a
 * pre-release is chosen only when no release qualifies. Otherwise the
 * constraint's own rules apply (pkgstore/version.h).
 * node_platform NULL means the host's platform.
 * Errors: PKGSTORE_EINVALID (bad name, constraint or platform),
 * PKGSTORE_ENOTFOUND (no such package, or nothing matches; the detail says
 * which), PKGSTORE_EIO, PKGSTORE_ENOMEM. On failure *out is zeroed.
 */
PKGSTORE_API int pkgstore_registry_resolve(pkgstore_resolution *out, pkgstore_registry *reg,
                                           const char *name, const char *constraint,
                                           const char *node_platform);

/**
 * The registry's generation into *out: a counter that every change to any
 * package version (add, put, remove), by any handle or process, moves. A
 * program that caches what it read from the registry compares it to know
 * when to read again. A cheap index read. Errors: PKGSTORE_EINVALID,
 * PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_registry_generation(uint64_t *out, pkgstore_registry *reg);

/* ---- remove ---- */

/**
 * Remove (name, version): its manifest record and its package records. The
 * blobs stay until gc finds them unreferenced. A version that a stored
 * policy names stays too (checked in the transaction of the removal).
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ENOTFOUND, PKGSTORE_ECONFLICT ("otelcol
 * 1.0.0 is referenced by policy canary ..."), PKGSTORE_ECORRUPT (a policy
 * record that cannot be read), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_registry_remove(pkgstore_registry *reg, const char *name,
                                          const char *version);

#ifdef __cplusplus
}
#endif

#endif
