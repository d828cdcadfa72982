/*
 * pkgstore/store.h - the content-addressed blob store.
 *
 * A store is a directory (see docs/store-format.md):
 *   pkgstore.json   {"format": 1}
 *   blobs/sha256/ab/<64 hex>       immutable blob, mode 0444
 *   blobs/sha256/ab/<64 hex>.zst   optional zstd transfer copy
 *   tmp/            in-progress ingests (same filesystem)
 *   index/          the LMDB environment (see pkgstore/index.h)
 *   lock            store-wide lock: writers shared; gc, repair, deletes exclusive
 *   lock.intent     taken by whoever waits for the lock exclusively
 *
 * A blob at blobs/sha256/xx/H always hashes to H: bytes go to an unnamed
 * temporary file, are fsynced, checked, then linked into place without
 * replacing anything, and the directory is fsynced. Handles are safe to
 * share between threads.
 *
 * The store lock: calls that change blobs take it (writers shared; gc,
 * repair and deletes exclusively) and wait for it up to the handle's lock
 * timeout (pkgstore_store_set_lock_timeout(); by default as long as it
 * takes), then fail with PKGSTORE_ELOCKED. Reading blobs never takes it.
 * A waiting exclusive locker goes before new shared holders, so a stream of
 * uploads cannot keep gc out.
 */
#ifndef PKGSTORE_STORE_H
#define PKGSTORE_STORE_H

#include "common.h"
#include "digest.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pkgstore_store pkgstore_store;
typedef struct pkgstore_store_writer pkgstore_store_writer;

typedef enum pkgstore_durability {
    PKGSTORE_DURABILITY_FSYNC = 0, /* fsync every blob and its directory (default) */
    PKGSTORE_DURABILITY_BATCH = 1, /* one sync for many blobs, at pkgstore_store_sync() */
    PKGSTORE_DURABILITY_NONE = 2   /* never fsync: benchmarks and tests only */
} pkgstore_durability;

typedef struct pkgstore_store_options {
    unsigned int version;           /* PKGSTORE_STORE_OPTIONS_VERSION */
    pkgstore_durability durability; /* default PKGSTORE_DURABILITY_FSYNC */
    int no_create;                  /* 1: PKGSTORE_ENOTFOUND where there is no store;
                                       0 (default): create it. (Version 1 called this
                                       field `create`, meaning the opposite.) */
    int read_only;                  /* no writes, no tmp/ cleanup */
    int zstd_copies;                /* write a .zst transfer copy beside each new blob */
    int zstd_level;                 /* 0 = the default level (3) */
    uint64_t index_map_size;        /* initial LMDB map size in bytes, 0 = default */
} pkgstore_store_options;

/* Every field zero but the version is the default: a zeroed struct with a
 * version is safe and useful. Version 1 is still accepted. */
#define PKGSTORE_STORE_OPTIONS_VERSION 2
#define PKGSTORE_STORE_OPTIONS_INIT \
    { PKGSTORE_STORE_OPTIONS_VERSION, PKGSTORE_DURABILITY_FSYNC, 0, 0, 0, 0, 0 }

/**
 * Fill *opts with the defaults of options version (1 to
 * PKGSTORE_STORE_OPTIONS_VERSION; pass PKGSTORE_STORE_OPTIONS_VERSION),
 * the same as PKGSTORE_STORE_OPTIONS_INIT. Errors: PKGSTORE_EINVALID (NULL
 * opts, a version this library does not know).
 */
PKGSTORE_API int pkgstore_store_options_init(pkgstore_store_options *opts, unsigned int version);

/**
 * Open (or create, unless opts->no_create) the store at path into *out.
 * Writes pkgstore.json on creation, refuses an unknown format, removes stale
 * files in tmp/ and opens the index (clearing stale LMDB readers).
 * opts may be NULL for the defaults.
 * Errors: PKGSTORE_ENOTFOUND (no store, and no_create or read_only),
 * PKGSTORE_EINVALID (bad options), PKGSTORE_EFORMAT
 * (unknown or malformed pkgstore.json), PKGSTORE_EDENIED, PKGSTORE_EIO,
 * PKGSTORE_ENOMEM. Free with pkgstore_store_free().
 */
PKGSTORE_API int pkgstore_store_open(pkgstore_store **out, const char *path,
                                     const pkgstore_store_options *opts);

/**
 * Sync a pending batch, close the index and free. Accepts NULL. A failed
 * sync cannot be returned from here: its blobs stay unrecorded (fsck
 * reports them as orphans) and pkgstore_error_detail() says why. Call
 * pkgstore_store_sync() first to know.
 */
PKGSTORE_API void pkgstore_store_free(pkgstore_store *store);

/**
 * How long calls on this handle wait for the store lock: timeout_ms < 0
 * waits as long as it takes (the default), 0 does not wait, > 0 waits up to
 * that many milliseconds; then the call fails with PKGSTORE_ELOCKED and
 * changes nothing. A server sets a short timeout so that no request thread
 * waits behind gc or `pkgstore-verify --repair` (and answers 503). Errors:
 * PKGSTORE_EINVALID (NULL store).
 */
PKGSTORE_API int pkgstore_store_set_lock_timeout(pkgstore_store *store, int timeout_ms);

/** The store's directory. Valid while the store is open. */
PKGSTORE_API const char *pkgstore_store_path(const pkgstore_store *store);

/**
 * Make every blob committed so far durable and record it (batch mode: one
 * syncfs() and one index transaction for the batch). A batch handle holds
 * the store lock shared from its first commit to this sync, so call it
 * regularly: gc and repair wait for it (a commit that sees them waiting
 * syncs by itself). A no-op in the other modes. On failure the batch stays
 * pending for the next sync. Errors: PKGSTORE_EIO, PKGSTORE_ENOSPC.
 */
PKGSTORE_API int pkgstore_store_sync(pkgstore_store *store);

/**
 * Start a streaming write into *out. expected_digest may be NULL;
 * expected_size < 0 means unknown. The writer holds no lock while bytes
 * arrive, but open checks that the lock could be had now, so that an upload
 * is refused before its body while gc or repair has the store.
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ENOSPC (expected_size does not fit),
 * PKGSTORE_EIO, PKGSTORE_EDENIED (read-only store), PKGSTORE_ELOCKED. A
 * writer is finished by exactly one of commit, withdraw or abort.
 */
PKGSTORE_API int pkgstore_store_writer_open(pkgstore_store_writer **out, pkgstore_store *store,
                                            const pkgstore_digest *expected_digest,
                                            int64_t expected_size);

/**
 * Append len bytes. Errors: PKGSTORE_ENOSPC, PKGSTORE_EIO,
 * PKGSTORE_ESIZE_MISMATCH (more bytes than expected_size). After an error the
 * writer can only be aborted.
 */
PKGSTORE_API int pkgstore_store_writer_write(pkgstore_store_writer *writer, const void *data,
                                             size_t len);

/**
 * Append everything readable from fd (a regular file of 1 MiB or more, into
 * a writer still empty, is copied with copy_file_range() while it is
 * hashed). Errors as pkgstore_store_writer_write(), and PKGSTORE_EINVALID
 * for a directory; after an error the writer can only be aborted.
 */
PKGSTORE_API int pkgstore_store_writer_read_fd(pkgstore_store_writer *writer, int fd);

/**
 * Put the blob in place without recording it yet: check size and digest,
 * fsync (per the durability mode), write the .zst copy of a zstd_copies
 * store, link the blob without replacing anything and fsync the directory,
 * under the store lock held shared for the call. The blob can then be read
 * by digest (pkgstore_registry_add() checks an archive that way), and the
 * writer stays open: finish it with pkgstore_store_writer_commit() when
 * the upload is accepted, or pkgstore_store_writer_withdraw() when it is
 * refused, so that a refused upload leaves nothing that can be served.
 * Until then gc, repair and deletes leave the blob alone (the writer holds
 * an flock on it). A blob that exists already is a success that writes
 * nothing (and that withdraw will not take away). *digest_out and
 * *size_out (each may be NULL) receive the digest and size.
 * On failure nothing is linked and the writer can only be aborted.
 * Errors: PKGSTORE_EDIGEST_MISMATCH and PKGSTORE_ESIZE_MISMATCH (the detail
 * holds the expected and the actual value), PKGSTORE_ENOSPC (a full disk,
 * also for the .zst copy), PKGSTORE_ELOCKED, PKGSTORE_EIO, PKGSTORE_EINVALID
 * (linked already, or a write failed earlier).
 */
PKGSTORE_API int pkgstore_store_writer_link(pkgstore_digest *digest_out, uint64_t *size_out,
                                            pkgstore_store_writer *writer);

/**
 * Finish the blob: link it as pkgstore_store_writer_link() does, unless
 * that was done, then record it in the index (in batch mode, at the next
 * pkgstore_store_sync()). A blob that already exists is a success that
 * writes nothing. *digest_out and *size_out (each may be NULL) receive the
 * blob's digest and size. Always frees the writer. On failure nothing is
 * left under tmp/ and nothing partial under blobs/; a blob this call linked
 * but could not record is taken back as by withdraw (where the calling
 * thread holds no store lock); if even that cannot be done it stays,
 * unrecorded, and fsck reports it as an orphan.
 * Errors: as pkgstore_store_writer_link().
 */
PKGSTORE_API int pkgstore_store_writer_commit(pkgstore_digest *digest_out, uint64_t *size_out,
                                              pkgstore_store_writer *writer);

/**
 * Take back a blob that pkgstore_store_writer_link() put in place, because
 * the upload failed after it (the registry refused the archive, the client
 * went away): under the store lock held exclusively (the calling thread
 * must hold none), the blob and its .zst copy are removed unless someone
 * relies on it by now: another writer found it present and recorded or
 * holds it, or a package, manifest or pin refers to it; it then stays
 * theirs. A writer that was not linked is aborted. Always frees the writer;
 * accepts NULL. Returns 0 when nothing of this upload is left to serve.
 * Errors: PKGSTORE_ELOCKED (the lock timeout ran out: the blob stays,
 * unrecorded; fsck reports it as an orphan and gc removes it after its
 * grace period), PKGSTORE_EINVALID (the calling thread holds the store
 * lock), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_writer_withdraw(pkgstore_store_writer *writer);

/** Discard the writer and its temporary file (withdrawing a linked blob,
 * see pkgstore_store_writer_withdraw(), keeping the current error detail).
 * Accepts NULL. */
PKGSTORE_API void pkgstore_store_writer_abort(pkgstore_store_writer *writer);

/**
 * Add everything readable from fd in one pass and record it (a regular
 * file under 1 MiB is read and hashed in memory first: a blob that exists
 * costs no write). expected_digest may be NULL, expected_size < 0 means
 * unknown. Output and errors as pkgstore_store_writer_commit().
 */
PKGSTORE_API int pkgstore_store_add_fd(pkgstore_digest *digest_out, uint64_t *size_out,
                                       pkgstore_store *store, int fd,
                                       const pkgstore_digest *expected_digest,
                                       int64_t expected_size);

/** As pkgstore_store_add_fd() for a file path; adds PKGSTORE_ENOTFOUND. */
PKGSTORE_API int pkgstore_store_add_file(pkgstore_digest *digest_out, uint64_t *size_out,
                                         pkgstore_store *store, const char *path,
                                         const pkgstore_digest *expected_digest,
                                         int64_t expected_size);

/** As pkgstore_store_add_fd() for a buffer in memory. */
PKGSTORE_API int pkgstore_store_add_buffer(pkgstore_digest *digest_out, pkgstore_store *store,
                                           const void *data, size_t len);

/**
 * Open a blob read-only into *fd_out (suitable for sendfile; the caller
 * closes it) and its size into *size_out (may be NULL).
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EIO. On failure *fd_out is -1.
 */
PKGSTORE_API int pkgstore_store_blob_open(int *fd_out, uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest);

/**
 * Read a whole blob of at most max_len bytes into a new buffer *data_out
 * (NUL-terminated for convenience, free with pkgstore_free()), its length in
 * *len_out. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_ELIMIT (larger than max_len),
 * PKGSTORE_ENOMEM, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_blob_read(void **data_out, size_t *len_out, pkgstore_store *store,
                                          const pkgstore_digest *digest, size_t max_len);

/** Size of a blob into *size_out. Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EIO. */
PKGSTORE_API int pkgstore_store_blob_stat(uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest);

/** 1 if the blob exists, 0 if not, or a negative error. */
PKGSTORE_API int pkgstore_store_blob_exists(pkgstore_store *store, const pkgstore_digest *digest);

/**
 * Delete a blob, its .zst copy and its blob record, under the store lock
 * held exclusively (so that no writer is between finding the blob present
 * and recording what refers to it), and only when nothing refers to it.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_ECONFLICT (a package, a manifest or
 * a pin refers to it; the detail names the first), PKGSTORE_ELOCKED (the
 * lock timeout ran out, or a writer is adding this blob right now),
 * PKGSTORE_EDENIED (read-only store), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_blob_delete(pkgstore_store *store, const pkgstore_digest *digest);

/**
 * Re-hash a blob (and check its .zst copy, if any, decompresses to the same
 * digest). Errors: PKGSTORE_ECORRUPT (detail has both digests),
 * PKGSTORE_ENOTFOUND, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_blob_verify(pkgstore_store *store, const pkgstore_digest *digest);

/** Called once per blob; a non-zero return stops the walk and is returned. */
typedef int (*pkgstore_store_foreach_cb)(const pkgstore_digest *digest, uint64_t size,
                                         void *payload);

/** Walk every blob file under blobs/ (in no particular order). */
PKGSTORE_API int pkgstore_store_foreach(pkgstore_store *store, pkgstore_store_foreach_cb cb,
                                        void *payload);

/**
 * Write the zstd transfer copy blobs/sha256/xx/<hex>.zst for an existing
 * blob, under the same durability rules. An existing copy is a success.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_ENOSPC, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_zstd_write(pkgstore_store *store, const pkgstore_digest *digest);

/**
 * Open the .zst copy read-only into *fd_out (the caller closes it), its
 * compressed size into *size_out (may be NULL). Errors: PKGSTORE_ENOTFOUND
 * when the blob has no copy, or the copy no blob (what a failed ingest or
 * a crash may leave: it is never served), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_store_zstd_open(int *fd_out, uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest);

/* ---- fsck ---- */

typedef enum pkgstore_fsck_kind {
    PKGSTORE_FSCK_MISSING = 1, /* an index record points at a blob that is not there */
    PKGSTORE_FSCK_CORRUPT = 2, /* a blob (or its .zst copy) does not hash to its name */
    PKGSTORE_FSCK_STRAY = 3,   /* a file that has no business in blobs/ or tmp/ */
    PKGSTORE_FSCK_ORPHAN = 4   /* a valid blob without a blob record: what a failed or
                                  interrupted ingest leaves */
} pkgstore_fsck_kind;

typedef struct pkgstore_fsck_problem {
    pkgstore_fsck_kind kind;
    const char *path;        /* relative to the store; valid during the callback */
    int has_digest;
    pkgstore_digest digest;  /* the blob concerned, when has_digest */
    const char *detail;      /* human-readable cause; valid during the callback */
    int repaired;            /* 1 if repair fixed it (quarantined, removed, dropped) */
} pkgstore_fsck_problem;

typedef struct pkgstore_fsck_report {
    uint64_t blobs_checked;
    uint64_t bytes_checked;
    uint64_t missing;
    uint64_t corrupt;
    uint64_t stray;
    uint64_t repaired;
    uint64_t orphaned;
} pkgstore_fsck_report;

#define PKGSTORE_FSCK_REPAIR 1u /* quarantine corrupt blobs, drop dangling records, ... */

/** Called once per problem found; a non-zero return stops fsck. */
typedef int (*pkgstore_fsck_cb)(const pkgstore_fsck_problem *problem, void *payload);

/**
 * Check the whole store: every blob re-hashed and recorded, every index
 * record's blob present, no stray files. Blobs are hashed without the store
 * lock. Orphans (blobs without a record) are confirmed under the lock held
 * exclusively, which waits for ingests between their link and their record
 * and for batches not yet synced. With PKGSTORE_FSCK_REPAIR, under that
 * lock and after checking that each file is still the one found: corrupt
 * blobs, stray files and orphans that nothing refers to move to
 * quarantine/, orphans that something refers to get their record back,
 * stale temporary files of dead ingests are removed and index records that
 * point at nothing are dropped. *report_out (may be NULL) receives the
 * counts; cb (may be NULL) sees each problem, once the lock phase is done.
 * Returns 0 even when problems were found: read the report.
 * Errors: PKGSTORE_EIO, PKGSTORE_EDENIED (repair on a read-only store),
 * PKGSTORE_ELOCKED (the lock timeout ran out; the report has what was
 * hashed), or cb's non-zero return.
 */
PKGSTORE_API int pkgstore_store_fsck(pkgstore_fsck_report *report_out, pkgstore_store *store,
                                     unsigned int flags, pkgstore_fsck_cb cb, void *payload);

#ifdef __cplusplus
}
#endif

#endif
