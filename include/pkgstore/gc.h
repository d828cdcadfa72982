/*
 * pkgstore/gc.h - garbage collection of unreferenced blobs, and pins.
 *
 * A blob is live when a package record, a manifest record or a pin refers
 * to it. gc deletes the other blobs once they are older than a grace period,
 * along with stale temporary files of dead ingests in tmp/ and .zst copies
 * whose blob is gone. gc is
 * safe to run while other processes add: it sweeps under the store lock
 * held exclusively, re-marks under that lock, and never deletes a blob
 * recorded at or after the moment it started.
 */
#ifndef PKGSTORE_GC_H
#define PKGSTORE_GC_H

#include "common.h"
#include "digest.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PKGSTORE_PIN_REASON_MAX 1024 /* bytes */

/**
 * Pin a blob so that gc keeps it even when nothing else refers to it.
 * reason (may be NULL) is a short note kept with the pin; pinning again
 * replaces it. Errors: PKGSTORE_ENOTFOUND (the blob is not in the store),
 * PKGSTORE_EINVALID (NULL digest, reason over PKGSTORE_PIN_REASON_MAX),
 * PKGSTORE_EDENIED (read-only store), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_gc_pin(pkgstore_store *store, const pkgstore_digest *digest,
                                 const char *reason);

/** Remove a pin. Errors: PKGSTORE_ENOTFOUND (not pinned), PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_gc_unpin(pkgstore_store *store, const pkgstore_digest *digest);

/** Called once per pin; reason is valid during the call. A non-zero return
 * stops the walk and is returned. */
typedef int (*pkgstore_gc_pin_cb)(const pkgstore_digest *digest, const char *reason,
                                  void *payload);

/** Walk every pin in digest order. Errors: PKGSTORE_EINVALID, PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_gc_pins_foreach(pkgstore_store *store, pkgstore_gc_pin_cb cb,
                                          void *payload);

typedef enum pkgstore_gc_kind {
    PKGSTORE_GC_BLOB = 1, /* an unreferenced blob (with its .zst copy, if any) */
    PKGSTORE_GC_ZST = 2,  /* a .zst copy whose blob is gone */
    PKGSTORE_GC_TMP = 3   /* a stale tmp/ingest-* file of a dead ingest */
} pkgstore_gc_kind;

typedef struct pkgstore_gc_item {
    pkgstore_gc_kind kind;
    const char *path;       /* relative to the store; valid during the callback */
    int has_digest;
    pkgstore_digest digest; /* the blob concerned, when has_digest */
    uint64_t bytes;         /* bytes freed by this item (blob and its copy together) */
    int64_t age_time;       /* the time its age was measured from (Unix seconds) */
} pkgstore_gc_item;

/** Called once per item deleted (or, in a dry run, that would be). A
 * non-zero return stops gc and is returned; what was deleted stays deleted. */
typedef int (*pkgstore_gc_cb)(const pkgstore_gc_item *item, void *payload);

typedef struct pkgstore_gc_options {
    unsigned int version;  /* PKGSTORE_GC_OPTIONS_VERSION */
    int64_t grace_seconds; /* keep what is younger than this (default 3600; 0 allowed) */
    int dry_run;           /* delete nothing, report the same */
    pkgstore_gc_cb cb;     /* may be NULL */
    void *payload;
} pkgstore_gc_options;

#define PKGSTORE_GC_OPTIONS_VERSION 1
#define PKGSTORE_GC_GRACE_DEFAULT 3600
#define PKGSTORE_GC_OPTIONS_INIT \
    { PKGSTORE_GC_OPTIONS_VERSION, PKGSTORE_GC_GRACE_DEFAULT, 0, NULL, NULL }

/**
 * Fill *opts with the defaults of options version (1 to
 * PKGSTORE_GC_OPTIONS_VERSION), the same as PKGSTORE_GC_OPTIONS_INIT.
 * Errors: PKGSTORE_EINVALID (NULL opts, a version this library does not
 * know).
 */
PKGSTORE_API int pkgstore_gc_options_init(pkgstore_gc_options *opts, unsigned int version);

typedef struct pkgstore_gc_report {
    uint64_t blobs_total;      /* blob files found */
    uint64_t blobs_referenced; /* kept: referenced by a package, a manifest or a pin */
    uint64_t blobs_young;      /* kept: unreferenced but within the grace period */
    uint64_t blobs_deleted;    /* unreferenced blobs deleted */
    uint64_t zst_deleted;      /* .zst copies deleted (beside deleted blobs, and orphans) */
    uint64_t tmp_deleted;      /* stale tmp/ files deleted */
    uint64_t bytes_freed;      /* everything above together */
    int dry_run;               /* 1 if nothing was actually deleted */
} pkgstore_gc_report;

/**
 * Mark every blob that a package record, a manifest record or a pin refers
 * to, then delete the unreferenced blobs, orphaned .zst copies and unlocked
 * tmp/ingest-* files older than the grace period (a blob's age counts from
 * its index record, else from its file's mtime; other files in tmp/ are not
 * the store's and stay for fsck to report). Blobs recorded at or after the start
 * of the run are never deleted. The sweep holds the store lock exclusively
 * (shared for a dry run), so it waits for adds in progress.
 * *report_out (may be NULL) receives the counts; opts NULL means defaults.
 * Errors: PKGSTORE_EINVALID (bad options), PKGSTORE_EDENIED (read-only store
 * and not a dry run), PKGSTORE_EIO; a callback's non-zero return.
 */
PKGSTORE_API int pkgstore_gc_run(pkgstore_gc_report *report_out, pkgstore_store *store,
                                 const pkgstore_gc_options *opts);

#ifdef __cplusplus
}
#endif

#endif
