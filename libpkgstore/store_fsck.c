/*
 * store_fsck: checking the whole store against the invariants of
 * docs/store-format.md. Every blob (and .zst copy) is re-hashed, every file
 * that has no business under blobs/ or tmp/ is a stray, and the index is
 * asked for records that point at nothing. Repair never deletes data it
 * cannot recreate: corrupt blobs and strays move to quarantine/, stale
 * temporary files of dead ingests are removed.
 */
#include "store_impl.h"
#include "error.h"

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

struct fsck_run {
    pkgstore_store *store;
    int repair;
    pkgstore_fsck_cb cb;
    void *payload;
    pkgstore_fsck_report report;
    int quarantine_fd;
    unsigned int quarantined;
};

static int report_problem(struct fsck_run *run, pkgstore_fsck_kind kind, const char *path,
                          const pkgstore_digest *digest, const char *detail, int repaired)
{
    pkgstore_fsck_problem problem;
    memset(&problem, 0, sizeof(problem));
    problem.kind = kind;
    problem.path = path;
    if (digest) {
        problem.has_digest = 1;
        problem.digest = *digest;
    }
    problem.detail = detail;
    problem.repaired = repaired;
    if (kind == PKGSTORE_FSCK_CORRUPT)
        run->report.corrupt++;
    else if (kind == PKGSTORE_FSCK_STRAY)
        run->report.stray++;
    else
        run->report.missing++;
    if (repaired)
        run->report.repaired++;
    return run->cb ? run->cb(&problem, run->payload) : 0;
}

/* Move dir_fd/name to quarantine/<name>.<time>.<n>; 1 on success. */
static int quarantine(struct fsck_run *run, int dir_fd, const char *name, char *why,
                      size_t why_size)
{
    char target[PKGSTORE_DIGEST_HEX_LEN + 96], text[256];
    pkgstore_store *store = run->store;
    if (run->quarantine_fd < 0) {
        if (mkdirat(store->root_fd, "quarantine", 0755) < 0 && errno != EEXIST) {
            snprintf(why, why_size, "; quarantine/: mkdir: %s",
                     ps_error_errno_text(errno, text, sizeof(text)));
            return 0;
        }
        run->quarantine_fd = openat(store->root_fd, "quarantine",
                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (run->quarantine_fd < 0) {
            snprintf(why, why_size, "; quarantine/: open: %s",
                     ps_error_errno_text(errno, text, sizeof(text)));
            return 0;
        }
    }
    snprintf(target, sizeof(target), "%.*s.%lld.%ld.%u", PKGSTORE_DIGEST_HEX_LEN + 8, name,
             (long long)time(NULL), (long)getpid(), run->quarantined++);
    if (renameat(dir_fd, name, run->quarantine_fd, target) < 0) {
        snprintf(why, why_size, "; quarantine: rename: %s",
                 ps_error_errno_text(errno, text, sizeof(text)));
        return 0;
    }
    if (store->opts.durability != PKGSTORE_DURABILITY_NONE) {
        (void)fsync(run->quarantine_fd);
        (void)fsync(dir_fd);
    }
    snprintf(why, why_size, "; moved to quarantine/%s", target);
    return 1;
}

static int check_blob(struct fsck_run *run, int fan_fd, const char *fan, const char *name)
{
    char rel[128], detail[512], repair_note[256] = "";
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest digest, actual;
    uint64_t size = 0;
    int fd, error, repaired = 0;

    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%.80s", fan, name);
    pkgstore_digest_parse_hex(&digest, name);
    fd = openat(fan_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s: open", rel);
    error = ps_store_hash_fd(&actual, &size, fd);
    close(fd);
    if (error < 0) {
        ps_error_prefix("%s", rel);
        return error;
    }
    run->report.blobs_checked++;
    run->report.bytes_checked += size;
    if (pkgstore_digest_equal(&actual, &digest))
        return 0;
    pkgstore_digest_format(want, &digest);
    pkgstore_digest_format(got, &actual);
    if (run->repair) {
        /* the record goes first: it must not outlive the file */
        error = ps_index_blob_del(run->store->index, &digest);
        if (error == 0 || error == PKGSTORE_ENOTFOUND) {
            char zst[PKGSTORE_DIGEST_HEX_LEN + 8];
            repaired = quarantine(run, fan_fd, name, repair_note, sizeof(repair_note));
            snprintf(zst, sizeof(zst), "%.64s.zst", name);
            (void)unlinkat(fan_fd, zst, 0); /* made from the corrupt bytes, or not at all */
        } else {
            snprintf(repair_note, sizeof(repair_note), "; index: %s", pkgstore_error_detail());
        }
    }
    snprintf(detail, sizeof(detail), "content hashes to %s, expected %s (%llu bytes)%s", got, want,
             (unsigned long long)size, repair_note);
    return report_problem(run, PKGSTORE_FSCK_CORRUPT, rel, &digest, detail, repaired);
}

static int check_zstd(struct fsck_run *run, int fan_fd, const char *fan, const char *name)
{
    char rel[128], blob_name[PKGSTORE_DIGEST_HEX_LEN + 1], detail[512], note[256] = "";
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest digest, actual;
    int fd, error, repaired = 0;

    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%.80s", fan, name);
    memcpy(blob_name, name, PKGSTORE_DIGEST_HEX_LEN);
    blob_name[PKGSTORE_DIGEST_HEX_LEN] = '\0';
    pkgstore_digest_parse_hex(&digest, blob_name);
    if (faccessat(fan_fd, blob_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        if (run->repair)
            repaired = quarantine(run, fan_fd, name, note, sizeof(note));
        snprintf(detail, sizeof(detail), "zstd copy without its blob%s", note);
        return report_problem(run, PKGSTORE_FSCK_STRAY, rel, &digest, detail, repaired);
    }
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
    if (run->repair)
        repaired = quarantine(run, fan_fd, name, note, sizeof(note));
    if (error == PKGSTORE_ECORRUPT) {
        snprintf(detail, sizeof(detail), "%s%s", pkgstore_error_detail(), note);
    } else {
        pkgstore_digest_format(want, &digest);
        pkgstore_digest_format(got, &actual);
        snprintf(detail, sizeof(detail), "decompresses to %s, expected %s%s", got, want, note);
    }
    pkgstore_error_clear();
    return report_problem(run, PKGSTORE_FSCK_CORRUPT, rel, &digest, detail, repaired);
}

static int stray(struct fsck_run *run, int dir_fd, const char *rel, const char *name,
                 const char *why)
{
    char detail[512], note[256] = "";
    int repaired = 0;
    if (run->repair)
        repaired = quarantine(run, dir_fd, name, note, sizeof(note));
    snprintf(detail, sizeof(detail), "%s%s", why, note);
    return report_problem(run, PKGSTORE_FSCK_STRAY, rel, NULL, detail, repaired);
}

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
                error = check_blob(run, fan_fd, fan, name);
                continue;
            }
            if (strcmp(name + PKGSTORE_DIGEST_HEX_LEN, ".zst") == 0) {
                error = check_zstd(run, fan_fd, fan, name);
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
        int fd, repaired = 0;
        if (dot(entry->d_name))
            continue;
        snprintf(rel, sizeof(rel), "tmp/%s", entry->d_name);
        if (strncmp(entry->d_name, PS_STORE_TMP_PREFIX, PS_STORE_TMP_PREFIX_LEN) != 0) {
            error = stray(run, tmp_fd, rel, entry->d_name, "unknown entry in tmp/");
            continue;
        }
        fd = openat(tmp_fd, entry->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd); /* alive: an ingest in progress */
            continue;
        }
        /* a dead ingest: its bytes were never committed, nothing to keep */
        if (run->repair)
            repaired = unlinkat(tmp_fd, entry->d_name, 0) == 0;
        close(fd);
        snprintf(detail, sizeof(detail), "stale temporary file of a dead ingest (%lld bytes)%s",
                 (long long)st.st_size, repaired ? "; removed" : "");
        error = report_problem(run, PKGSTORE_FSCK_STRAY, rel, NULL, detail, repaired);
    }
    closedir(tmp);
    return error;
}

PKGSTORE_API int pkgstore_store_fsck(pkgstore_fsck_report *report_out, pkgstore_store *store,
                                     unsigned int flags, pkgstore_fsck_cb cb, void *payload)
{
    struct fsck_run run;
    uint64_t missing = 0, repaired = 0;
    int error, locked = 0;

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
    if (run.repair) {
        if (store->opts.read_only)
            return ps_error_set(PKGSTORE_EDENIED, "%s: cannot repair a store opened read-only",
                                store->path);
        if ((error = ps_store_lock(store, 1, 0)) < 0)
            return error;
        locked = 1;
    }
    if ((error = check_blobs(&run)) != 0)
        goto out;
    if ((error = check_tmp(&run)) != 0)
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
    if (report_out)
        *report_out = run.report;
    return error;
}
