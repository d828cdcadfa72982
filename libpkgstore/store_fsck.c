/*
 * store_fsck: checking the whole store against the invariants of
 * docs/store-format.md. Every blob (and .zst copy) is re-hashed, every file
 * that has no business under blobs/ or tmp/ is a stray, a blob without a
 * blob record is an orphan (what a failed or interrupted ingest leaves),
 * and the index is asked for records that point at nothing.
 *
 * Two phases, so that writers are kept out only while something is done:
 *   1. without the lock: walk and hash everything, and note each finding
 *      with the identity (inode, size, times) of the file it is about;
 *   2. under the store lock held exclusively, only when there is something
 *      to do (repair, or orphans to confirm): check each finding again
 *      (same file, still a problem) and act on it.
 * The exclusive lock waits for every writer between its link and its
 * record and for every batch not yet synced, so an orphan seen under it is
 * a real one. Repair never deletes data it cannot recreate: corrupt blobs,
 * strays and unreferenced orphans move to quarantine/, stale temporary
 * files of dead ingests are removed, orphans that something refers to get
 * their record back.
 */
#include "store_impl.h"
#include "error.h"
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

enum action {
    ACT_NONE = 0,
    ACT_CORRUPT_BLOB, /* drop its record, quarantine it and its .zst */
    ACT_QUARANTINE,   /* a stray or a corrupt .zst */
    ACT_LONE_ZST,     /* a .zst whose blob is missing: quarantine while it is */
    ACT_STALE_TMP,    /* a dead ingest's named temporary file: remove */
    ACT_ORPHAN        /* confirm; repair: record it (referenced) or quarantine */
};

struct finding {
    pkgstore_fsck_kind kind;
    enum action action;
    char *rel;    /* relative to the store */
    char *detail; /* what phase 1 found */
    int has_digest;
    pkgstore_digest digest;
    struct stat st; /* the file as phase 1 saw it */
};

struct fsck_run {
    pkgstore_store *store;
    int repair;
    pkgstore_fsck_cb cb;
    void *payload;
    pkgstore_fsck_report report;
    int quarantine_fd;
    unsigned int quarantined;
    struct finding *findings;
    size_t count, cap;
};

static int add_finding(struct fsck_run *run, pkgstore_fsck_kind kind, enum action action,
                       const char *rel, const pkgstore_digest *digest, const struct stat *st,
                       const char *detail)
{
    struct finding *f;
    if (run->count == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 16;
        struct finding *grown = realloc(run->findings, cap * sizeof(*grown));
        if (grown == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "fsck: out of memory");
        run->findings = grown;
        run->cap = cap;
    }
    f = &run->findings[run->count];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->action = action;
    f->rel = strdup(rel);
    f->detail = strdup(detail);
    if (f->rel == NULL || f->detail == NULL) {
        free(f->rel);
        free(f->detail);
        return ps_error_set(PKGSTORE_ENOMEM, "fsck: out of memory");
    }
    if (digest) {
        f->has_digest = 1;
        f->digest = *digest;
    }
    if (st)
        f->st = *st;
    run->count++;
    return 0;
}

static void free_findings(struct fsck_run *run)
{
    for (size_t i = 0; i < run->count; i++) {
        free(run->findings[i].rel);
        free(run->findings[i].detail);
    }
    free(run->findings);
    run->findings = NULL;
    run->count = run->cap = 0;
}

static int report_problem(struct fsck_run *run, const struct finding *f, const char *detail,
                          int repaired)
{
    pkgstore_fsck_problem problem;
    memset(&problem, 0, sizeof(problem));
    problem.kind = f->kind;
    problem.path = f->rel;
    problem.has_digest = f->has_digest;
    problem.digest = f->digest;
    problem.detail = detail;
    problem.repaired = repaired;
    switch (f->kind) {
    case PKGSTORE_FSCK_CORRUPT: run->report.corrupt++; break;
    case PKGSTORE_FSCK_STRAY: run->report.stray++; break;
    case PKGSTORE_FSCK_ORPHAN: run->report.orphaned++; break;
    default: run->report.missing++; break;
    }
    if (repaired)
        run->report.repaired++;
    return run->cb ? run->cb(&problem, run->payload) : 0;
}

/* ------------------------------------------------------------------ phase 1 */

static int is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int dot(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static DIR *open_dir_at(int parent_fd, const char *name, int *fd_out)
{
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dir;
    *fd_out = -1;
    if (fd < 0)
        return NULL;
    dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    return dir;
}

static int check_blob(struct fsck_run *run, int fan_fd, const char *rel, const char *name)
{
    char detail[512], want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest digest, actual;
    pkgstore_blob_record record;
    struct stat st;
    uint64_t size = 0;
    int fd, error;

    pkgstore_digest_parse_hex(&digest, name);
    fd = openat(fan_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s: open", rel);
    if (fstat(fd, &st) < 0) {
        error = ps_error_errno(errno, "%s: fstat", rel);
        close(fd);
        return error;
    }
    error = ps_store_hash_fd(&actual, &size, fd);
    close(fd);
    if (error < 0) {
        ps_error_prefix("%s", rel);
        return error;
    }
    run->report.blobs_checked++;
    run->report.bytes_checked += size;
    if (!pkgstore_digest_equal(&actual, &digest)) {
        pkgstore_digest_format(want, &digest);
        pkgstore_digest_format(got, &actual);
        snprintf(detail, sizeof(detail), "content hashes to %s, expected %s (%llu bytes)", got,
                 want, (unsigned long long)size);
        return add_finding(run, PKGSTORE_FSCK_CORRUPT, ACT_CORRUPT_BLOB, rel, &digest, &st,
                           detail);
    }
    error = ps_index_blob_get(&record, ps_store_index(run->store), &digest);
    if (error != PKGSTORE_ENOTFOUND)
        return error;
    pkgstore_error_clear();
    snprintf(detail, sizeof(detail),
             "no blob record: left by a failed or interrupted ingest (%llu bytes)",
             (unsigned long long)size);
    return add_finding(run, PKGSTORE_FSCK_ORPHAN, ACT_ORPHAN, rel, &digest, &st, detail);
}

static int check_zstd(struct fsck_run *run, int fan_fd, const char *rel, const char *name,
                      const struct stat *st)
{
    char blob_name[PKGSTORE_DIGEST_HEX_LEN + 1], detail[512];
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest digest, actual;
    int fd, error;

    memcpy(blob_name, name, PKGSTORE_DIGEST_HEX_LEN);
    blob_name[PKGSTORE_DIGEST_HEX_LEN] = '\0';
    pkgstore_digest_parse_hex(&digest, blob_name);
    if (faccessat(fan_fd, blob_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
        return add_finding(run, PKGSTORE_FSCK_STRAY, ACT_LONE_ZST, rel, &digest, st,
                           "zstd copy without its blob");
    fd = openat(fan_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s: open", rel);
    error = ps_store_zstd_hash_fd(&actual, NULL, fd);
    close(fd);
    if (error == 0 && pkgstore_digest_equal(&actual, &digest))
        return 0;
    if (error < 0 && error != PKGSTORE_ECORRUPT) {
        ps_error_prefix("%s", rel);
        return error;
    }
    if (error == PKGSTORE_ECORRUPT) {
        snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
    } else {
        pkgstore_digest_format(want, &digest);
        pkgstore_digest_format(got, &actual);
        snprintf(detail, sizeof(detail), "decompresses to %s, expected %s", got, want);
    }
    pkgstore_error_clear();
    return add_finding(run, PKGSTORE_FSCK_CORRUPT, ACT_QUARANTINE, rel, &digest, st, detail);
}

static int stray(struct fsck_run *run, int dir_fd, const char *rel, const char *name,
                 const char *why)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* gone meanwhile */
    return add_finding(run, PKGSTORE_FSCK_STRAY, ACT_QUARANTINE, rel, NULL, &st, why);
}

static int check_fanout(struct fsck_run *run, int sha_fd, const char *fan)
{
    struct dirent *entry;
    int fan_fd, error = 0;
    DIR *dir = open_dir_at(sha_fd, fan, &fan_fd);
    if (dir == NULL)
        return 0;
    while (error == 0 && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        size_t len = strlen(name);
        char rel[PKGSTORE_DIGEST_HEX_LEN + 300];
        struct stat st;
        if (dot(name))
            continue;
        snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%.255s", fan, name);
        if (fstatat(fan_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* removed meanwhile by another process */
        if (len >= PKGSTORE_DIGEST_HEX_LEN && is_hex(name, PKGSTORE_DIGEST_HEX_LEN) &&
            strncmp(name, fan, 2) == 0 && S_ISREG(st.st_mode)) {
            if (len == PKGSTORE_DIGEST_HEX_LEN) {
                error = check_blob(run, fan_fd, rel, name);
                continue;
            }
            if (strcmp(name + PKGSTORE_DIGEST_HEX_LEN, ".zst") == 0) {
                error = check_zstd(run, fan_fd, rel, name, &st);
                continue;
            }
        }
        if (len >= PKGSTORE_DIGEST_HEX_LEN && is_hex(name, PKGSTORE_DIGEST_HEX_LEN) &&
            strncmp(name, fan, 2) != 0)
            error = stray(run, fan_fd, rel, name, "blob in the wrong directory");
        else if (!S_ISREG(st.st_mode))
            error = stray(run, fan_fd, rel, name, "not a regular file");
        else
            error = stray(run, fan_fd, rel, name, "not a blob name");
    }
    closedir(dir);
    return error;
}

static int check_blobs(struct fsck_run *run)
{
    struct dirent *entry;
    int blobs_fd, sha_fd, error = 0;
    DIR *blobs = open_dir_at(run->store->root_fd, "blobs", &blobs_fd), *sha;

    if (blobs == NULL)
        return 0;
    while (error == 0 && (entry = readdir(blobs)) != NULL) {
        char rel[300];
        if (dot(entry->d_name) || strcmp(entry->d_name, "sha256") == 0)
            continue;
        snprintf(rel, sizeof(rel), "blobs/%s", entry->d_name);
        error = stray(run, blobs_fd, rel, entry->d_name, "unknown entry in blobs/");
    }
    sha = error == 0 ? open_dir_at(blobs_fd, "sha256", &sha_fd) : NULL;
    while (sha != NULL && error == 0 && (entry = readdir(sha)) != NULL) {
        char rel[300];
        struct stat st;
        if (dot(entry->d_name))
            continue;
        if (strlen(entry->d_name) == 2 && is_hex(entry->d_name, 2) &&
            fstatat(sha_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            error = check_fanout(run, sha_fd, entry->d_name);
            continue;
        }
        snprintf(rel, sizeof(rel), "blobs/sha256/%s", entry->d_name);
        error = stray(run, sha_fd, rel, entry->d_name, "unknown entry in blobs/sha256/");
    }
    if (sha != NULL)
        closedir(sha);
    closedir(blobs);
    return error;
}

/* 1 when the named temporary file's writer is gone (its flock is free). */
static int tmp_is_stale(int tmp_fd, const char *name, struct stat *st)
{
    int fd = openat(tmp_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), stale;
    if (fd < 0)
        return 0;
    stale = fstat(fd, st) == 0 && S_ISREG(st->st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return stale;
}

static int check_tmp(struct fsck_run *run)
{
    struct dirent *entry;
    int tmp_fd, error = 0;
    DIR *tmp = open_dir_at(run->store->root_fd, "tmp", &tmp_fd);
    if (tmp == NULL)
        return 0;
    while (error == 0 && (entry = readdir(tmp)) != NULL) {
        char rel[300], detail[300];
        struct stat st;
        if (dot(entry->d_name))
            continue;
        snprintf(rel, sizeof(rel), "tmp/%s", entry->d_name);
        if (strncmp(entry->d_name, PS_STORE_TMP_PREFIX, PS_STORE_TMP_PREFIX_LEN) != 0) {
            error = stray(run, tmp_fd, rel, entry->d_name, "unknown entry in tmp/");
            continue;
        }
        if (!tmp_is_stale(tmp_fd, entry->d_name, &st))
            continue; /* alive: an ingest in progress */
        /* a dead ingest: its bytes were never committed, nothing to keep */
        snprintf(detail, sizeof(detail), "stale temporary file of a dead ingest (%lld bytes)",
                 (long long)st.st_size);
        error = add_finding(run, PKGSTORE_FSCK_STRAY, ACT_STALE_TMP, rel, NULL, &st, detail);
    }
    closedir(tmp);
    return error;
}

/* ------------------------------------------------------------------ phase 2 */

/* The file is still the one phase 1 looked at (any write moves ctime). */
static int unchanged(pkgstore_store *store, const struct finding *f)
{
    struct stat st;
    if (fstatat(store->root_fd, f->rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    return st.st_dev == f->st.st_dev && st.st_ino == f->st.st_ino &&
           st.st_size == f->st.st_size && st.st_mtim.tv_sec == f->st.st_mtim.tv_sec &&
           st.st_mtim.tv_nsec == f->st.st_mtim.tv_nsec &&
           st.st_ctim.tv_sec == f->st.st_ctim.tv_sec && st.st_ctim.tv_nsec == f->st.st_ctim.tv_nsec;
}

/* Move the file at f->rel to quarantine/<name>.<time>.<pid>.<n>; 1 on
 * success, else 0 with the reason in note. */
static int quarantine(struct fsck_run *run, const char *rel, char *note, size_t note_size)
{
    char target[PKGSTORE_DIGEST_HEX_LEN + 96], err[128];
    pkgstore_store *store = run->store;
    const char *name = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;

    if (run->quarantine_fd < 0) {
        if (mkdirat(store->root_fd, "quarantine", 0755) < 0 && errno != EEXIST) {
            snprintf(note, note_size, "; quarantine/: mkdir: %s",
                     strerror_r(errno, err, sizeof(err)));
            return 0;
        }
        run->quarantine_fd = openat(store->root_fd, "quarantine",
                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (run->quarantine_fd < 0) {
            snprintf(note, note_size, "; quarantine/: open: %s",
                     strerror_r(errno, err, sizeof(err)));
            return 0;
        }
    }
    snprintf(target, sizeof(target), "%.*s.%lld.%ld.%u", PKGSTORE_DIGEST_HEX_LEN + 8, name,
             (long long)time(NULL), (long)getpid(), run->quarantined++);
    if (renameat(store->root_fd, rel, run->quarantine_fd, target) < 0) {
        snprintf(note, note_size, "; quarantine: rename: %s", strerror_r(errno, err, sizeof(err)));
        return 0;
    }
    if (store->opts.durability != PKGSTORE_DURABILITY_NONE) {
        char dir[300];
        (void)fsync(run->quarantine_fd);
        snprintf(dir, sizeof(dir), "%.*s", (int)(name - rel > 0 ? name - rel - 1 : 0), rel);
        (void)ps_store_fsync_dir(store, dir);
        pkgstore_error_clear();
    }
    snprintf(note, note_size, "; moved to quarantine/%s", target);
    return 1;
}

static int act_orphan(struct fsck_run *run, const struct finding *f, char *note, size_t size,
                      int *repaired, int *still)
{
    pkgstore_store *store = run->store;
    pkgstore_blob_record record;
    char why[512];
    int error, referenced;

    *still = 0;
    if (!unchanged(store, f))
        return 0; /* gone or replaced: not an orphan of ours to judge */
    error = ps_index_blob_get(&record, ps_store_index(store), &f->digest);
    if (error == 0)
        return 0; /* recorded since */
    if (error != PKGSTORE_ENOTFOUND)
        return error;
    pkgstore_error_clear();
    if (ps_store_blob_in_flight(store->root_fd, f->rel))
        return 0; /* a writer between link and commit holds it */
    *still = 1;
    if (!run->repair)
        return 0;
    if ((referenced = ps_gc_blob_referenced(why, sizeof(why), store, &f->digest)) < 0)
        return referenced;
    if (referenced) {
        /* something needs it: heal the record instead */
        if ((error = ps_index_blob_put(ps_store_index(store), &f->digest,
                                       (uint64_t)f->st.st_size)) < 0)
            return error;
        if (store->opts.durability == PKGSTORE_DURABILITY_BATCH)
            ps_store_mark_dirty(store);
        snprintf(note, size, "; recorded (%.400s refers to it)", why);
        *repaired = 1;
        return 0;
    }
    *repaired = quarantine(run, f->rel, note, size);
    return 0;
}

static int act(struct fsck_run *run, const struct finding *f)
{
    pkgstore_store *store = run->store;
    char note[512] = "", detail[1100];
    int error = 0, repaired = 0, still = 1;
    struct stat st;

    switch (f->action) {
    case ACT_ORPHAN:
        if ((error = act_orphan(run, f, note, sizeof(note), &repaired, &still)) < 0)
            return error;
        break;
    case ACT_STALE_TMP:
        if (!run->repair)
            break;
        if (store->tmp_fd >= 0 && tmp_is_stale(store->tmp_fd, f->rel + 4, &st))
            repaired = unlinkat(store->tmp_fd, f->rel + 4, 0) == 0;
        if (repaired)
            snprintf(note, sizeof(note), "; removed");
        break;
    case ACT_CORRUPT_BLOB:
    case ACT_QUARANTINE:
    case ACT_LONE_ZST:
        if (!run->repair)
            break;
        if (!unchanged(store, f)) {
            snprintf(note, sizeof(note), "; changed since it was checked: left alone");
            break;
        }
        if (f->action == ACT_LONE_ZST) {
            char blob_rel[128];
            ps_store_blob_relpath(blob_rel, sizeof(blob_rel), &f->digest, "");
            if (faccessat(store->root_fd, blob_rel, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                snprintf(note, sizeof(note), "; its blob came back: left alone");
                break;
            }
        }
        if (f->action == ACT_CORRUPT_BLOB) {
            char zst[128];
            /* the record goes first: it must not outlive the file */
            error = ps_index_blob_del(ps_store_index(store), &f->digest);
            if (error < 0 && error != PKGSTORE_ENOTFOUND) {
                snprintf(note, sizeof(note), "; index: %s", pkgstore_error_detail());
                error = 0;
                break;
            }
            error = 0;
            repaired = quarantine(run, f->rel, note, sizeof(note));
            ps_store_blob_relpath(zst, sizeof(zst), &f->digest, ".zst");
            (void)unlinkat(store->root_fd, zst, 0); /* made from the corrupt bytes, or not at all */
            break;
        }
        repaired = quarantine(run, f->rel, note, sizeof(note));
        break;
    default:
        break;
    }
    if (!still)
        return 0;
    snprintf(detail, sizeof(detail), "%s%s", f->detail, note);
    return report_problem(run, f, detail, repaired);
}

PKGSTORE_API int pkgstore_store_fsck(pkgstore_fsck_report *report_out, pkgstore_store *store,
                                     unsigned int flags, pkgstore_fsck_cb cb, void *payload)
{
    struct fsck_run run;
    uint64_t missing = 0, repaired = 0;
    int error, locked = 0, need_lock = 0;

    if (report_out)
        memset(report_out, 0, sizeof(*report_out));
    if (store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "fsck: NULL store");
    memset(&run, 0, sizeof(run));
    run.store = store;
    run.repair = (flags & PKGSTORE_FSCK_REPAIR) != 0;
    run.cb = cb;
    run.payload = payload;
    run.quarantine_fd = -1;
    if (run.repair && store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: cannot repair a store opened read-only",
                            store->path);

    /* phase 1: hash and look, without the lock */
    if ((error = check_blobs(&run)) != 0 || (error = check_tmp(&run)) != 0)
        goto out;

    /* phase 2: confirm and act under the exclusive lock, when needed */
    need_lock = run.repair;
    for (size_t i = 0; i < run.count && !need_lock; i++)
        need_lock = run.findings[i].action == ACT_ORPHAN;
    if (need_lock) {
        if ((error = ps_store_lock(store, 1, 0)) < 0)
            goto out;
        locked = 1;
    }
    for (size_t i = 0; i < run.count && error == 0; i++)
        error = act(&run, &run.findings[i]);
    if (error != 0)
        goto out;
    error = ps_index_check_refs(store->index, store, run.repair, cb, payload, &missing, &repaired);
    run.report.missing += missing;
    run.report.repaired += repaired;
    if (run.repair && store->opts.durability == PKGSTORE_DURABILITY_BATCH)
        ps_store_mark_dirty(store);
out:
    if (run.quarantine_fd >= 0)
        close(run.quarantine_fd);
    if (locked)
        ps_store_unlock(store);
    free_findings(&run);
    if (report_out)
        *report_out = run.report;
    return error;
}
