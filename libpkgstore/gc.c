/*
 * gc: pins, and mark-and-sweep of the blobs nothing refers to.
 *
 * The roots are the package records (their artifact digest), the manifest
 * records (the manifest blob, the first 32 bytes of the value, and the
 * artifacts of the manifest bytes the registry keeps after it), the pins and
 * the signature records (the envelope blob, the second digest of the key).
 * A run has two phases so that adders are blocked only briefly:
 *   1. without the lock: mark, walk blobs/ and tmp/, and list candidates;
 *   2. under the store lock (exclusive): mark again, and delete each
 *      candidate only if it is still unreferenced, still there and still
 *      old enough.
 * Adders hold the store lock shared from the blob write to the record that
 * refers to it, so phase 2 sees either no trace of an add or all of it. A
 * blob whose record or file is dated at or after the start of the run is
 * never deleted, whatever the grace.
 */
#include "gc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "index.h"
#include "pkgstore/manifest.h"
#include "store.h"

#ifdef PKGSTORE_TEST_HOOKS
static _Atomic int64_t clock_skew;

void ps_gc_set_clock_skew(int64_t seconds)
{
    clock_skew = seconds;
}
#else
#define clock_skew 0
#endif

/* ---------------------------------------------------------------- pins */

struct pin_op {
    const pkgstore_digest *digest;
    const char *reason;
    size_t reason_len;
};

static int pin_put_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct pin_op *op = payload;
    MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)op->digest->bytes};
    MDB_val val = {op->reason_len, (void *)(op->reason_len ? op->reason : "")};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_PINS), &key, &val, 0);
    if (rc != 0) {
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, op->digest);
        return ps_index_error(rc, "while pinning %s", text);
    }
    return 0;
}

static int pin_del_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct pin_op *op = payload;
    MDB_val key = {PKGSTORE_DIGEST_SIZE, (void *)op->digest->bytes};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_PINS), &key, NULL);
    if (rc != 0) {
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, op->digest);
        if (rc == MDB_NOTFOUND)
            return ps_error_set(PKGSTORE_ENOTFOUND, "%s: not pinned", text);
        return ps_index_error(rc, "while unpinning %s", text);
    }
    return 0;
}

static int store_index(ps_index **out, pkgstore_store *store)
{
    if (store == NULL || (*out = ps_store_index(store)) == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "gc: NULL store");
    return 0;
}

PKGSTORE_API int pkgstore_gc_pin(pkgstore_store *store, const pkgstore_digest *digest,
                                 const char *reason)
{
    struct pin_op op = {digest, reason, 0};
    ps_index *index;
    int error;

    if ((error = store_index(&index, store)) < 0)
        return error;
    if (digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "pin: NULL digest");
    if (reason != NULL) {
        op.reason_len = strnlen(reason, PKGSTORE_PIN_REASON_MAX + 1);
        if (op.reason_len > PKGSTORE_PIN_REASON_MAX)
            return ps_error_set(PKGSTORE_EINVALID, "pin: reason longer than %d bytes",
                                PKGSTORE_PIN_REASON_MAX);
    }
    /* Shared lock: gc cannot delete the blob between the check and the pin. */
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        return error;
    if ((error = pkgstore_store_blob_exists(store, digest)) == 0) {
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, digest);
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: no such blob in the store", text);
    }
    if (error > 0)
        error = ps_index_write(index, pin_put_txn, &op);
    ps_store_unlock(store);
    return error;
}

PKGSTORE_API int pkgstore_gc_unpin(pkgstore_store *store, const pkgstore_digest *digest)
{
    struct pin_op op = {digest, NULL, 0};
    ps_index *index;
    int error;

    if ((error = store_index(&index, store)) < 0)
        return error;
    if (digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "unpin: NULL digest");
    return ps_index_write(index, pin_del_txn, &op);
}

struct pin_walk {
    pkgstore_gc_pin_cb cb;
    void *payload;
    char reason[PKGSTORE_PIN_REASON_MAX + 1];
};

static int pin_walk_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                       void *payload)
{
    struct pin_walk *walk = payload;
    pkgstore_digest digest;

    if (key_len != PKGSTORE_DIGEST_SIZE)
        return ps_error_set(PKGSTORE_ECORRUPT, "index: pin with a %zu-byte key", key_len);
    if (val_len > PKGSTORE_PIN_REASON_MAX)
        val_len = PKGSTORE_PIN_REASON_MAX;
    memcpy(digest.bytes, key, PKGSTORE_DIGEST_SIZE);
    memcpy(walk->reason, val, val_len);
    walk->reason[val_len] = '\0';
    return walk->cb(&digest, walk->reason, walk->payload);
}

PKGSTORE_API int pkgstore_gc_pins_foreach(pkgstore_store *store, pkgstore_gc_pin_cb cb,
                                          void *payload)
{
    struct pin_walk *walk;
    ps_index *index;
    int error;

    if ((error = store_index(&index, store)) < 0)
        return error;
    if (cb == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "pins: NULL callback");
    if ((walk = malloc(sizeof(*walk))) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "pins: out of memory");
    walk->cb = cb;
    walk->payload = payload;
    error = ps_index_foreach(index, PS_DB_PINS, NULL, 0, pin_walk_cb, walk);
    free(walk);
    return error;
}

/* ---------------------------------------------------------------- mark set */

/* Open addressing over digests; SHA-256 is uniform, so its first bytes are
 * a good hash. */
struct mark_set {
    pkgstore_digest *slots;
    unsigned char *used;
    size_t cap, count;
};

static size_t mark_slot(const pkgstore_digest *digest, size_t cap)
{
    uint64_t h;
    memcpy(&h, digest->bytes, sizeof(h));
    return (size_t)h & (cap - 1);
}

static int mark_add(struct mark_set *set, const pkgstore_digest *digest)
{
    size_t i;

    if ((set->count + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 1024;
        struct mark_set grown = {calloc(cap, sizeof(pkgstore_digest)), calloc(cap, 1), cap, 0};
        if (grown.slots == NULL || grown.used == NULL) {
            free(grown.slots);
            free(grown.used);
            return ps_error_set(PKGSTORE_ENOMEM, "gc: out of memory");
        }
        for (size_t j = 0; j < set->cap; j++)
            if (set->used[j])
                mark_add(&grown, &set->slots[j]);
        free(set->slots);
        free(set->used);
        *set = grown;
    }
    for (i = mark_slot(digest, set->cap);; i = (i + 1) & (set->cap - 1)) {
        if (!set->used[i])
            break;
        if (memcmp(set->slots[i].bytes, digest->bytes, PKGSTORE_DIGEST_SIZE) == 0)
            return 0;
    }
    set->used[i] = 1;
    set->slots[i] = *digest;
    set->count++;
    return 0;
}

static int mark_has(const struct mark_set *set, const pkgstore_digest *digest)
{
    if (set->cap == 0)
        return 0;
    for (size_t i = mark_slot(digest, set->cap);; i = (i + 1) & (set->cap - 1)) {
        if (!set->used[i])
            return 0;
        if (memcmp(set->slots[i].bytes, digest->bytes, PKGSTORE_DIGEST_SIZE) == 0)
            return 1;
    }
}

static void mark_clear(struct mark_set *set)
{
    free(set->slots);
    free(set->used);
    memset(set, 0, sizeof(*set));
}

/* A walk over the roots: either marking every digest they name (set), or
 * looking for one (target), whose first referrer is described in why. */
struct mark_walk {
    struct mark_set *set;
    enum ps_index_db db;
    const pkgstore_digest *target;
    char *why;
    size_t why_size;
};

#define FOUND 1 /* stops the walk: the target is referenced */

static void key_text(char *out, size_t size, const void *key, size_t key_len)
{
    size_t n = key_len < size - 1 ? key_len : size - 1;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)key)[i];
        out[i] = c == '\0' ? ' ' : c;
    }
    out[n] = '\0';
}

static int mark_one(struct mark_walk *walk, const pkgstore_digest *digest, const char *what,
                    const void *key, size_t key_len)
{
    char name[300];
    if (walk->target == NULL)
        return mark_add(walk->set, digest);
    if (!pkgstore_digest_equal(digest, walk->target))
        return 0;
    key_text(name, sizeof(name), key, key_len);
    snprintf(walk->why, walk->why_size, "%s %s", what, name);
    return FOUND;
}

static int mark_manifest_artifacts(struct mark_walk *walk, const void *key, size_t key_len,
                                   const void *data, size_t len)
{
    pkgstore_manifest *manifest = NULL;
    int error;

    if ((error = pkgstore_manifest_parse(&manifest, data, len)) < 0) {
        char name[300];
        key_text(name, sizeof(name), key, key_len);
        ps_error_prefix("gc: refusing to sweep: manifest record %s", name);
        return error; /* an unreadable root must stop gc, not free its blobs */
    }
    for (size_t i = 0; i < pkgstore_manifest_artifact_count(manifest) && error == 0; i++)
        error = mark_one(walk, &pkgstore_manifest_artifact(manifest, i)->digest,
                         "an artifact of", key, key_len);
    pkgstore_manifest_free(manifest);
    return error;
}

static int mark_cb(const void *key, size_t key_len, const void *val, size_t val_len,
                   void *payload)
{
    struct mark_walk *walk = payload;
    pkgstore_package_record *record;
    pkgstore_digest digest;
    const char *what;
    int error;

    switch (walk->db) {
    case PS_DB_PACKAGES:
        /* decode rather than peek, so a future layout is still marked */
        if ((record = malloc(sizeof(*record))) == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "gc: out of memory");
        error = ps_index_package_decode(record, key, key_len, val, val_len);
        if (error == 0)
            digest = record->digest;
        free(record);
        if (error < 0) {
            ps_error_prefix("gc: refusing to sweep");
            return error; /* an unreadable root must stop gc, not free its blob */
        }
        what = "package";
        break;
    case PS_DB_MANIFESTS:
        if (val_len < PKGSTORE_DIGEST_SIZE)
            return ps_error_set(PKGSTORE_ECORRUPT,
                                "gc: refusing to sweep: malformed manifest record");
        memcpy(digest.bytes, val, PKGSTORE_DIGEST_SIZE);
        /* The registry keeps the manifest's bytes after its digest: mark its
         * artifacts too, so they survive even a crash that left the package
         * records behind the manifest. */
        if (val_len > PKGSTORE_DIGEST_SIZE &&
            (error = mark_manifest_artifacts(walk, key, key_len,
                                             (const unsigned char *)val + PKGSTORE_DIGEST_SIZE,
                                             val_len - PKGSTORE_DIGEST_SIZE)) != 0)
            return error;
        what = "the manifest of";
        break;
    case PS_DB_SIGNATURES:
        /* manifest digest, then the envelope's blob digest */
        if (key_len != 2 * PKGSTORE_DIGEST_SIZE)
            return ps_error_set(PKGSTORE_ECORRUPT,
                                "gc: refusing to sweep: malformed signature record");
        memcpy(digest.bytes, (const unsigned char *)key + PKGSTORE_DIGEST_SIZE,
               PKGSTORE_DIGEST_SIZE);
        if (walk->target != NULL && pkgstore_digest_equal(&digest, walk->target)) {
            char manifest_hex[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest manifest;
            memcpy(manifest.bytes, key, PKGSTORE_DIGEST_SIZE);
            pkgstore_digest_format(manifest_hex, &manifest);
            snprintf(walk->why, walk->why_size, "a signature of manifest %s", manifest_hex);
            return FOUND;
        }
        return walk->target != NULL ? 0 : mark_add(walk->set, &digest);
    case PS_DB_PINS:
        if (key_len != PKGSTORE_DIGEST_SIZE)
            return ps_error_set(PKGSTORE_ECORRUPT, "gc: refusing to sweep: malformed pin");
        memcpy(digest.bytes, key, PKGSTORE_DIGEST_SIZE);
        if (walk->target != NULL && pkgstore_digest_equal(&digest, walk->target)) {
            snprintf(walk->why, walk->why_size, "a pin");
            return FOUND;
        }
        return walk->target != NULL ? 0 : mark_add(walk->set, &digest);
    default:
        return 0;
    }
    return mark_one(walk, &digest, what, key, key_len);
}

static const enum ps_index_db roots[] = {PS_DB_PACKAGES, PS_DB_MANIFESTS, PS_DB_PINS,
                                         PS_DB_SIGNATURES};

static int mark_all(struct mark_set *set, ps_index *index)
{
    int error;

    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        struct mark_walk walk = {set, roots[i], NULL, NULL, 0};
        if ((error = ps_index_foreach(index, roots[i], NULL, 0, mark_cb, &walk)) < 0)
            return error;
    }
    return 0;
}

int ps_gc_blob_referenced(char *why, size_t why_size, pkgstore_store *store,
                          const pkgstore_digest *digest)
{
    ps_index *index;
    int error;

    if ((error = store_index(&index, store)) < 0)
        return error;
    if (why_size > 0)
        why[0] = '\0';
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        struct mark_walk walk = {NULL, roots[i], digest, why, why_size};
        if ((error = ps_index_foreach(index, roots[i], NULL, 0, mark_cb, &walk)) != 0)
            return error;
    }
    return 0;
}

/* ---------------------------------------------------------------- candidates */

struct candidate {
    pkgstore_gc_kind kind;
    pkgstore_digest digest; /* BLOB and ZST */
    char name[256];         /* TMP: the name in tmp/ */
};

struct gc_run {
    pkgstore_store *store;
    ps_index *index;
    const pkgstore_gc_options *opts;
    pkgstore_gc_report report;
    int64_t start;  /* time the run started */
    int64_t cutoff; /* start - grace */
    int root_fd;
    struct mark_set marks;
    struct candidate *candidates;
    size_t count, cap;
    pkgstore_digest *doomed; /* blobs to delete at the next flush */
    size_t doomed_count;
};

#define DELETE_BATCH 256

static int old_enough(const struct gc_run *run, int64_t when)
{
    return when < run->start && when <= run->cutoff;
}

static int add_candidate(struct gc_run *run, const struct candidate *candidate)
{
    if (run->count == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 64;
        struct candidate *grown = realloc(run->candidates, cap * sizeof(*grown));
        if (grown == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "gc: out of memory");
        run->candidates = grown;
        run->cap = cap;
    }
    run->candidates[run->count++] = *candidate;
    return 0;
}

/* "<64 hex>" or "<64 hex>.zst" into digest; returns 1 (blob), 2 (zst) or 0. */
static int parse_blob_name(pkgstore_digest *digest, const char *name)
{
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1];
    size_t len = strlen(name);
    int kind;

    if (len == PKGSTORE_DIGEST_HEX_LEN)
        kind = 1;
    else if (len == PKGSTORE_DIGEST_HEX_LEN + 4 && strcmp(name + PKGSTORE_DIGEST_HEX_LEN, ".zst") == 0)
        kind = 2;
    else
        return 0;
    memcpy(hex, name, PKGSTORE_DIGEST_HEX_LEN);
    hex[PKGSTORE_DIGEST_HEX_LEN] = '\0';
    if (pkgstore_digest_parse_hex(digest, hex) < 0) {
        pkgstore_error_clear(); /* not a blob name: not ours to judge */
        return 0;
    }
    return kind;
}

/* The time a blob's age counts from: its record, else its file. */
static int blob_age_time(int64_t *out, struct gc_run *run, const pkgstore_digest *digest,
                         const struct stat *st)
{
    pkgstore_blob_record record;
    int error = ps_index_blob_get(&record, run->index, digest);
    if (error == 0) {
        /* the later of the two, to be safe against a clock step */
        *out = record.added > (int64_t)st->st_mtime ? record.added : (int64_t)st->st_mtime;
        return 0;
    }
    if (error != PKGSTORE_ENOTFOUND)
        return error;
    pkgstore_error_clear();
    *out = (int64_t)st->st_mtime;
    return 0;
}

static int scan_fanout(struct gc_run *run, int fanout_fd, const char *fanout)
{
    DIR *dir = fdopendir(fanout_fd);
    struct dirent *entry;
    int error = 0;

    if (dir == NULL) {
        error = ps_error_errno(errno, "blobs/sha256/%s: opendir", fanout);
        close(fanout_fd);
        return error;
    }
    while ((errno = 0, entry = readdir(dir)) != NULL) {
        struct candidate candidate;
        struct stat st;
        int kind = parse_blob_name(&candidate.digest, entry->d_name);
        int64_t when = 0;

        if (kind == 0)
            continue; /* not ours to judge: fsck reports strays */
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            error = ps_error_errno(errno, "blobs/sha256/%s/%s: stat", fanout, entry->d_name);
            goto out;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (kind == 1) {
            run->report.blobs_total++;
            if (mark_has(&run->marks, &candidate.digest)) {
                run->report.blobs_referenced++;
                continue;
            }
            if ((error = blob_age_time(&when, run, &candidate.digest, &st)) < 0)
                goto out;
            if (!old_enough(run, when)) {
                run->report.blobs_young++;
                continue;
            }
            candidate.kind = PKGSTORE_GC_BLOB;
        } else {
            char blob_name[PKGSTORE_DIGEST_HEX_LEN + 1];
            memcpy(blob_name, entry->d_name, PKGSTORE_DIGEST_HEX_LEN);
            blob_name[PKGSTORE_DIGEST_HEX_LEN] = '\0';
            if (faccessat(dirfd(dir), blob_name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                continue; /* a copy beside its blob goes with the blob */
            if (!old_enough(run, (int64_t)st.st_mtime))
                continue;
            candidate.kind = PKGSTORE_GC_ZST;
        }
        candidate.name[0] = '\0';
        if ((error = add_candidate(run, &candidate)) < 0)
            goto out;
    }
    if (errno != 0)
        error = ps_error_errno(errno, "blobs/sha256/%s: readdir", fanout);
out:
    closedir(dir);
    return error;
}

static int scan_blobs(struct gc_run *run)
{
    DIR *dir;
    struct dirent *entry;
    int fd, error = 0;

    if ((fd = openat(run->root_fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return 0;
        return ps_error_errno(errno, "blobs/sha256: open");
    }
    if ((dir = fdopendir(fd)) == NULL) {
        error = ps_error_errno(errno, "blobs/sha256: opendir");
        close(fd);
        return error;
    }
    while ((errno = 0, entry = readdir(dir)) != NULL) {
        int fanout_fd;
        if (strlen(entry->d_name) != 2 || strspn(entry->d_name, "0123456789abcdef") != 2)
            continue;
        fanout_fd = openat(dirfd(dir), entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fanout_fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            error = ps_error_errno(errno, "blobs/sha256/%s: open", entry->d_name);
            break;
        }
        if ((error = scan_fanout(run, fanout_fd, entry->d_name)) < 0)
            break;
    }
    if (error == 0 && errno != 0)
        error = ps_error_errno(errno, "blobs/sha256: readdir");
    closedir(dir);
    return error;
}

static int scan_tmp(struct gc_run *run)
{
    DIR *dir;
    struct dirent *entry;
    int fd, error = 0;

    if ((fd = openat(run->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return 0;
        return ps_error_errno(errno, "tmp: open");
    }
    if ((dir = fdopendir(fd)) == NULL) {
        error = ps_error_errno(errno, "tmp: opendir");
        close(fd);
        return error;
    }
    while ((errno = 0, entry = readdir(dir)) != NULL) {
        struct candidate candidate;
        struct stat st;
        size_t len = strlen(entry->d_name);

        if (strncmp(entry->d_name, PS_STORE_TMP_PREFIX, PS_STORE_TMP_PREFIX_LEN) != 0)
            continue; /* not the store's: fsck reports it, nobody deletes it */
        if (len >= sizeof(candidate.name))
            continue;
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        if (!S_ISREG(st.st_mode) || !old_enough(run, (int64_t)st.st_mtime))
            continue;
        memset(&candidate, 0, sizeof(candidate));
        candidate.kind = PKGSTORE_GC_TMP;
        memcpy(candidate.name, entry->d_name, len + 1);
        if ((error = add_candidate(run, &candidate)) < 0)
            break;
    }
    if (error == 0 && errno != 0)
        error = ps_error_errno(errno, "tmp: readdir");
    closedir(dir);
    return error;
}

/* ---------------------------------------------------------------- sweep */

static int report_item(struct gc_run *run, pkgstore_gc_kind kind, const char *path,
                       const pkgstore_digest *digest, uint64_t bytes, int64_t when)
{
    pkgstore_gc_item item;

    run->report.bytes_freed += bytes;
    if (run->opts->cb == NULL)
        return 0;
    memset(&item, 0, sizeof(item));
    item.kind = kind;
    item.path = path;
    if (digest != NULL) {
        item.has_digest = 1;
        item.digest = *digest;
    }
    item.bytes = bytes;
    item.age_time = when;
    return run->opts->cb(&item, run->opts->payload);
}

static int drop_records_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct gc_run *run = payload;
    for (size_t i = 0; i < run->doomed_count; i++) {
        MDB_val key = {PKGSTORE_DIGEST_SIZE, run->doomed[i].bytes};
        int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_BLOBS), &key, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return ps_index_error(rc, "gc: drop blob records");
    }
    return 0;
}

/* Delete the blobs collected so far: their records in one transaction
 * first (a record must never outlive its file), then the files. The
 * directories are not fsynced: a deletion lost in a crash only brings back
 * a file without a record, which the next gc deletes again. One commit per
 * batch instead of one per blob is what makes a large sweep fast. */
static int flush_doomed(struct gc_run *run)
{
    int error = 0;

    if (run->doomed_count == 0)
        return 0;
    if ((error = ps_index_write(run->index, drop_records_txn, run)) < 0)
        goto out;
    for (size_t i = 0; i < run->doomed_count; i++) {
        char path[128];
        ps_store_blob_relpath(path, sizeof(path), &run->doomed[i], ".zst");
        if (unlinkat(run->root_fd, path, 0) < 0 && errno != ENOENT) {
            error = ps_error_errno(errno, "%s: unlink", path);
            goto out;
        }
        ps_store_blob_relpath(path, sizeof(path), &run->doomed[i], "");
        if (unlinkat(run->root_fd, path, 0) < 0 && errno != ENOENT) {
            error = ps_error_errno(errno, "%s: unlink", path);
            goto out;
        }
    }
out:
    run->doomed_count = 0;
    return error;
}

static int sweep_blob(struct gc_run *run, const struct candidate *candidate)
{
    char path[128], zst_path[128];
    struct stat st, zst;
    int64_t when = 0;
    uint64_t bytes;
    int has_zst, error;

    if (mark_has(&run->marks, &candidate->digest)) {
        /* referenced since the scan */
        run->report.blobs_referenced++;
        return 0;
    }
    ps_store_blob_relpath(path, sizeof(path), &candidate->digest, "");
    ps_store_blob_relpath(zst_path, sizeof(zst_path), &candidate->digest, ".zst");
    if (fstatat(run->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) {
            run->report.blobs_total--; /* deleted by someone else meanwhile */
            return 0;
        }
        return ps_error_errno(errno, "%s: stat", path);
    }
    if ((error = blob_age_time(&when, run, &candidate->digest, &st)) < 0)
        return error;
    if (!old_enough(run, when)) {
        run->report.blobs_young++;
        return 0;
    }
    if (ps_store_blob_in_flight(run->root_fd, path)) {
        /* a writer linked it and is about to record it or take it back */
        run->report.blobs_young++;
        return 0;
    }
    has_zst = fstatat(run->root_fd, zst_path, &zst, AT_SYMLINK_NOFOLLOW) == 0;
    bytes = (uint64_t)st.st_size + (has_zst ? (uint64_t)zst.st_size : 0);
    run->report.blobs_deleted++;
    if (has_zst)
        run->report.zst_deleted++;
    if (!run->opts->dry_run) {
        if (run->doomed_count == DELETE_BATCH && (error = flush_doomed(run)) < 0)
            return error;
        run->doomed[run->doomed_count++] = candidate->digest;
    }
    return report_item(run, PKGSTORE_GC_BLOB, path, &candidate->digest, bytes, when);
}

static int sweep_zst(struct gc_run *run, const struct candidate *candidate)
{
    char path[128], blob_path[128];
    struct stat st;

    ps_store_blob_relpath(path, sizeof(path), &candidate->digest, ".zst");
    ps_store_blob_relpath(blob_path, sizeof(blob_path), &candidate->digest, "");
    if (faccessat(run->root_fd, blob_path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0; /* its blob came (back) */
    if (fstatat(run->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
        !old_enough(run, (int64_t)st.st_mtime))
        return 0;
    if (!run->opts->dry_run && unlinkat(run->root_fd, path, 0) < 0) {
        if (errno == ENOENT)
            return 0;
        return ps_error_errno(errno, "%s: unlink", path);
    }
    run->report.zst_deleted++;
    return report_item(run, PKGSTORE_GC_ZST, path, &candidate->digest, (uint64_t)st.st_size,
                       (int64_t)st.st_mtime);
}

static int sweep_tmp(struct gc_run *run, const struct candidate *candidate)
{
    char path[300];
    struct stat st;
    int fd, error = 0;

    snprintf(path, sizeof(path), "tmp/%s", candidate->name);
    fd = openat(run->root_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0; /* gone, or not a file we may open */
    /* A writer keeps its named temporary file flock()ed while in use. */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !old_enough(run, (int64_t)st.st_mtime) ||
        flock(fd, LOCK_EX | LOCK_NB) < 0)
        goto out;
    if (!run->opts->dry_run && unlinkat(run->root_fd, path, 0) < 0) {
        if (errno != ENOENT)
            error = ps_error_errno(errno, "%s: unlink", path);
        goto out;
    }
    run->report.tmp_deleted++;
    error = report_item(run, PKGSTORE_GC_TMP, path, NULL, (uint64_t)st.st_size,
                        (int64_t)st.st_mtime);
out:
    close(fd);
    return error;
}

PKGSTORE_API int pkgstore_gc_options_init(pkgstore_gc_options *opts, unsigned int version)
{
    int error = ps_options_init(opts, sizeof(*opts), "gc", version, PKGSTORE_GC_OPTIONS_VERSION);
    if (error == 0)
        opts->grace_seconds = PKGSTORE_GC_GRACE_DEFAULT;
    return error;
}

PKGSTORE_API int pkgstore_gc_run(pkgstore_gc_report *report_out, pkgstore_store *store,
                                 const pkgstore_gc_options *opts)
{
    static const pkgstore_gc_options defaults = PKGSTORE_GC_OPTIONS_INIT;
    struct gc_run run;
    int error, flush_error, locked = 0;

    if (report_out != NULL)
        memset(report_out, 0, sizeof(*report_out));
    memset(&run, 0, sizeof(run));
    run.root_fd = -1;
    if ((error = store_index(&run.index, store)) < 0)
        return error;
    if (opts == NULL)
        opts = &defaults;
    if ((error = ps_options_version("gc", opts->version, PKGSTORE_GC_OPTIONS_VERSION)) < 0)
        return error;
    if (opts->grace_seconds < 0)
        return ps_error_set(PKGSTORE_EINVALID, "gc: negative grace period %lld",
                            (long long)opts->grace_seconds);
    if (!opts->dry_run && !ps_index_writable(run.index))
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only (a dry run works)",
                            pkgstore_store_path(store));
    run.store = store;
    run.opts = opts;
    run.report.dry_run = opts->dry_run ? 1 : 0;
    run.start = (int64_t)time(NULL) + clock_skew;
    run.cutoff = run.start - opts->grace_seconds;
    if ((run.root_fd = open(pkgstore_store_path(store), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        error = ps_error_errno(errno, "%s: open", pkgstore_store_path(store));
        goto out;
    }

    /* Phase 1, unlocked: the candidates. */
    if ((error = mark_all(&run.marks, run.index)) < 0 || (error = scan_blobs(&run)) < 0 ||
        (error = scan_tmp(&run)) < 0)
        goto out;

    if (!opts->dry_run &&
        (run.doomed = malloc(DELETE_BATCH * sizeof(*run.doomed))) == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "gc: out of memory");
        goto out;
    }

    /* Phase 2, locked: adds in progress finish first, none starts, and the
     * marks are taken again so that whatever they registered is kept. */
    if ((error = ps_store_lock(store, opts->dry_run ? 0 : 1, 0)) < 0)
        goto out;
    locked = 1;
    mark_clear(&run.marks);
    if ((error = mark_all(&run.marks, run.index)) < 0)
        goto out;
    for (size_t i = 0; i < run.count && error == 0; i++) {
        switch (run.candidates[i].kind) {
        case PKGSTORE_GC_BLOB:
            error = sweep_blob(&run, &run.candidates[i]);
            break;
        case PKGSTORE_GC_ZST:
            error = sweep_zst(&run, &run.candidates[i]);
            break;
        case PKGSTORE_GC_TMP:
            error = sweep_tmp(&run, &run.candidates[i]);
            break;
        }
    }
    /* even after a callback stopped gc: what it was shown goes */
    if ((flush_error = flush_doomed(&run)) < 0 && error >= 0)
        error = flush_error;
out:
    if (locked)
        ps_store_unlock(store);
    if (report_out != NULL)
        *report_out = run.report;
    if (run.root_fd >= 0)
        close(run.root_fd);
    mark_clear(&run.marks);
    free(run.candidates);
    free(run.doomed);
    return error;
}
