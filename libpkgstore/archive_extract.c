/*
 * archive_extract: validation and safe extraction.
 *
 * libarchive parses; this file decides what is safe and does every write
 * itself. Writes go through directory fds opened component by component
 * with O_NOFOLLOW, so no path is ever resolved through a symlink, whatever
 * the order of the entries. Every header is checked on the way (path,
 * type, link target, limits) and, once all headers are known, every
 * symlink is resolved through the archive's tree (archive_tree.c) to prove
 * that no chain leaves the directory. One pass over the data: extraction
 * costs one decompression, as `tar -x` does.
 */
#include "archive_private.h"

#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ the scan */

typedef enum scan_mode {
    SCAN_VALIDATE, /* check everything, read all data */
    SCAN_EXTRACT   /* check everything, write (all or only the entrypoint) */
} scan_mode;

typedef struct scan {
    scan_mode mode;
    ps_archive_limits lim;
    struct archive *a;
    ps_archive_source *src;
    uint64_t archive_size;
    pkgstore_archive_format format;
    uint64_t entries;
    uint64_t expanded;     /* file sizes as extraction makes them, holes included */
    uint64_t executables;
    char sole_executable[PS_ARCHIVE_MAX_PATH_LEN + 1];
    ps_archive_tree map;
    uint64_t *implied;             /* hash set of the directories earlier paths implied */
    size_t implied_cap, implied_count;
    ps_archive_resolver res;
    char path[PS_ARCHIVE_MAX_PATH_LEN + 1];   /* normalized path of the current entry */
    char target[PS_ARCHIVE_MAX_PATH_LEN + 1]; /* normalized hard link target */
    const char *entrypoint;        /* normalized, or NULL */
    int root_fd;                   /* extraction: the fresh directory */
    int entrypoint_written;
} scan;

static const ps_archive_node *tree_lookup(const ps_archive_tree *tree, const char *path)
{
    size_t len = strlen(path);
    return ps_archive_tree_find(tree, path, len, ps_archive_hash(PS_ARCHIVE_HASH_INIT, path, len));
}

/* ---- the directories that earlier entry paths implied ----
 * "o/x" implies a directory "o": extraction creates it on disk, so a later
 * non-directory entry "o" fails there ("replaces a directory") even when a
 * still later entry makes "o" a directory again, which the final-state
 * check sees. Validation must refuse it too. The set holds the hashes of
 * every proper prefix of the paths seen (no strings: 8 bytes a directory);
 * a hit is confirmed against the tree, which keeps every path seen. */
static uint64_t implied_key(uint64_t hash)
{
    return hash ? hash : 1; /* 0 marks an empty slot */
}

static int implied_has(const scan *s, uint64_t key)
{
    if (!s->implied_cap)
        return 0;
    for (size_t i = (size_t)key & (s->implied_cap - 1); s->implied[i];
         i = (i + 1) & (s->implied_cap - 1))
        if (s->implied[i] == key)
            return 1;
    return 0;
}

static int implied_add(scan *s, uint64_t key)
{
    if ((s->implied_count + 1) * 4 > s->implied_cap * 3) {
        size_t cap = s->implied_cap ? s->implied_cap * 2 : 64;
        uint64_t *keys = calloc(cap, sizeof(*keys));
        if (!keys)
            return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
        for (size_t j = 0; j < s->implied_cap; j++) {
            if (!s->implied[j])
                continue;
            size_t i = (size_t)s->implied[j] & (cap - 1);
            while (keys[i])
                i = (i + 1) & (cap - 1);
            keys[i] = s->implied[j];
        }
        free(s->implied);
        s->implied = keys;
        s->implied_cap = cap;
    }
    size_t i = (size_t)key & (s->implied_cap - 1);
    while (s->implied[i]) {
        if (s->implied[i] == key)
            return 0;
        i = (i + 1) & (s->implied_cap - 1);
    }
    s->implied[i] = key;
    s->implied_count++;
    return 0;
}

/* 1 when an earlier entry's path lies below s->path (s->path is a
 * directory on disk by now). */
static int implied_directory(const scan *s)
{
    size_t len = strlen(s->path);
    if (!len || !implied_has(s, implied_key(ps_archive_hash(PS_ARCHIVE_HASH_INIT, s->path, len))))
        return 0;
    for (size_t i = 0; i < s->map.cap; i++) {
        const char *p = s->map.slots[i].path;
        if (p && strncmp(p, s->path, len) == 0 && p[len] == '/')
            return 1;
    }
    return 0; /* a hash collision */
}

/* Record the proper prefixes of s->path, deepest first, up to one that is
 * known already (its own prefixes are then known too). */
static int implied_record(scan *s)
{
    uint64_t keys[PS_ARCHIVE_MAX_DEPTH + 1];
    size_t n = 0;
    uint64_t hash = PS_ARCHIVE_HASH_INIT;
    const char *done = s->path;
    for (const char *slash = strchr(s->path, '/'); slash && n < PS_ARCHIVE_MAX_DEPTH + 1;
         slash = strchr(slash + 1, '/')) {
        hash = ps_archive_hash(hash, done, (size_t)(slash - done));
        done = slash;
        keys[n++] = implied_key(hash);
    }
    while (n > 0) {
        uint64_t key = keys[--n];
        if (implied_has(s, key))
            break;
        int error = implied_add(s, key);
        if (error < 0)
            return error;
    }
    return 0;
}

static int check_size(scan *s, const char *path, uint64_t add)
{
    if (add > s->lim.max_total_size || s->expanded > s->lim.max_total_size - add)
        return ps_error_set(PKGSTORE_ELIMIT,
                            "%.512s: total expanded size exceeds the limit of %llu bytes", path,
                            (unsigned long long)s->lim.max_total_size);
    uint64_t total = s->expanded + add;
    if (total > s->lim.ratio_min_size) {
        uint64_t base = s->archive_size ? s->archive_size : 1;
        if (total / base >= s->lim.max_ratio && total > base * s->lim.max_ratio)
            return ps_error_set(PKGSTORE_ELIMIT,
                                "%.512s: expansion ratio exceeds %llu (%llu bytes from a "
                                "%llu-byte archive): a decompression bomb?",
                                path, (unsigned long long)s->lim.max_ratio,
                                (unsigned long long)total, (unsigned long long)s->archive_size);
    }
    return 0;
}

static const char *other_type_name(struct archive_entry *entry)
{
    switch (archive_entry_filetype(entry)) {
    case AE_IFCHR: return "character device";
    case AE_IFBLK: return "block device";
    case AE_IFIFO: return "FIFO";
    case AE_IFSOCK: return "socket";
    default: return "entry of unknown type";
    }
}

/* The first proper prefix of path that is a non-directory in the tree
 * (its length in *len_out), or NULL. */
static const ps_archive_node *non_dir_parent(const ps_archive_tree *tree, const char *path,
                                             size_t *len_out)
{
    uint64_t hash = PS_ARCHIVE_HASH_INIT;
    const char *done = path;
    for (const char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
        hash = ps_archive_hash(hash, done, (size_t)(slash - done));
        done = slash;
        const ps_archive_node *hit = ps_archive_tree_find(tree, path, (size_t)(slash - path), hash);
        if (hit && hit->type != PKGSTORE_ENTRY_DIR) {
            *len_out = (size_t)(slash - path);
            return hit;
        }
    }
    return NULL;
}

/* Check that no proper prefix of s->path is a symlink or a non-directory
 * in the tree built so far: extraction never walks through those. */
static int check_parents(scan *s)
{
    size_t len;
    const ps_archive_node *hit = non_dir_parent(&s->map, s->path, &len);
    if (!hit)
        return 0;
    if (hit->type == PKGSTORE_ENTRY_SYMLINK)
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path passes through symlink %.*s",
                            s->path, (int)len, s->path);
    return ps_error_set(PKGSTORE_EFORMAT, "%.512s: parent %.*s is not a directory", s->path,
                        (int)len, s->path);
}

/* ---- writing below root_fd, never through a symlink ---- */

/* Open the directory holding rel (creating missing directories when
 * create); *base_out points at the last component inside rel. */
static int open_parent(int *fd_out, const char **base_out, int root_fd, const char *rel,
                       int create)
{
    char comp[PS_ARCHIVE_MAX_NAME_LEN + 1];
    int fd = dup(root_fd);
    const char *p = rel;

    *fd_out = -1;
    if (fd < 0)
        return ps_error_errno(errno, "dup");
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            break;
        size_t len = (size_t)(slash - p);
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                int err = errno;
                close(fd);
                return ps_error_errno(err, "%.512s: mkdir %.*s", rel, (int)(slash - rel), rel);
            }
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int err = errno;
            close(fd);
            if (err == ELOOP || err == ENOTDIR)
                return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path passes through a non-directory %.*s",
                                    rel, (int)(slash - rel), rel);
            return ps_error_errno(err, "%.512s: open %.*s", rel, (int)(slash - rel), rel);
        }
        close(fd);
        fd = next;
        p = slash + 1;
    }
    *fd_out = fd;
    *base_out = p;
    return 0;
}

/* Make room for a new non-directory at (dirfd, name): remove whatever
 * non-directory is there (a later tar entry replaces an earlier one). */
static int clear_slot(int dirfd, const char *name, const char *rel)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%.512s: stat", rel);
    if (S_ISDIR(st.st_mode))
        return ps_error_set(PKGSTORE_EFORMAT, "%.512s: replaces a directory", rel);
    if (unlinkat(dirfd, name, 0) < 0)
        return ps_error_errno(errno, "%.512s: unlink", rel);
    return 0;
}

static int write_all_at(int fd, const void *data, size_t len, int64_t offset, const char *rel)
{
    const char *p = data;
    while (len) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ps_error_errno(errno, "%.512s: write", rel);
        }
        p += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

/* Count the bytes between *end and new_end as expanded. */
static int grow_to(scan *s, const char *rel, uint64_t *end, uint64_t new_end)
{
    if (new_end <= *end)
        return 0;
    int error = check_size(s, rel, new_end - *end);
    if (error < 0)
        return error;
    s->expanded += new_end - *end;
    *end = new_end;
    return 0;
}

/* Consume the current entry's data: write it to fd when fd >= 0, else just
 * count it. What counts against the limits, as it grows, is the size of
 * the file extraction makes: up to the last byte written or the declared
 * size, holes included, so a sparse entry whose data lies at a far
 * offset cannot make a terabyte file out of a kilobyte archive. */
static int consume_data(scan *s, int fd, const char *rel, int64_t declared)
{
    const void *buf;
    size_t len;
    la_int64_t offset;
    uint64_t end = 0;
    int error;
    for (;;) {
        int r = archive_read_data_block(s->a, &buf, &len, &offset);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return ps_archive_reader_error(s->a, s->src, rel);
        if (offset < 0)
            return ps_error_set(PKGSTORE_EFORMAT, "%.512s: data at a negative offset", rel);
        if ((error = grow_to(s, rel, &end, (uint64_t)offset + len)) < 0)
            return error;
        if (fd >= 0 && len && (error = write_all_at(fd, buf, len, offset, rel)) < 0)
            return error;
    }
    return declared > 0 ? grow_to(s, rel, &end, (uint64_t)declared) : 0;
}

static int extract_file(scan *s, struct archive_entry *entry)
{
    int dirfd = -1, fd = -1, error;
    const char *base;

    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    if ((error = clear_slot(dirfd, base, s->path)) < 0)
        goto out;
    fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = ps_error_errno(errno, "%.512s: create", s->path);
        goto out;
    }
    int64_t size = archive_entry_size(entry);
    if ((error = consume_data(s, fd, s->path, size)) < 0)
        goto out;
    struct stat st;
    if (size > 0 && fstat(fd, &st) == 0 && st.st_size < size && ftruncate(fd, size) < 0) {
        error = ps_error_errno(errno, "%.512s: truncate", s->path);
        goto out;
    }
    if (fchmod(fd, (mode_t)(archive_entry_perm(entry) & 0777)) < 0) {
        error = ps_error_errno(errno, "%.512s: chmod", s->path);
        goto out;
    }
out:
    if (fd >= 0 && close(fd) < 0 && error == 0)
        error = ps_error_errno(errno, "%.512s: close", s->path);
    close(dirfd);
    return error;
}

static int extract_dir(scan *s, struct archive_entry *entry)
{
    int dirfd = -1, error;
    const char *base;
    struct stat st;

    if (!s->path[0])
        return 0; /* "./": the root itself */
    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    mode_t mode = (mode_t)(archive_entry_perm(entry) & 0777) | 0700; /* we must be able to clean up */
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
        if ((error = clear_slot(dirfd, base, s->path)) < 0)
            goto out;
    }
    if (mkdirat(dirfd, base, 0700) < 0 && errno != EEXIST) {
        error = ps_error_errno(errno, "%.512s: mkdir", s->path);
        goto out;
    }
    /* chmod through an fd opened without following a symlink. */
    int fd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchmod(fd, mode) < 0)
        error = ps_error_errno(errno, "%.512s: chmod", s->path);
    if (fd >= 0)
        close(fd);
out:
    close(dirfd);
    return error;
}

static int extract_symlink(scan *s, const char *target)
{
    int dirfd = -1, error;
    const char *base;

    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    if ((error = clear_slot(dirfd, base, s->path)) < 0)
        goto out;
    if (symlinkat(target, dirfd, base) < 0)
        error = ps_error_errno(errno, "%.512s: symlink", s->path);
out:
    close(dirfd);
    return error;
}

static int extract_hardlink(scan *s)
{
    int tdir = -1, ndir = -1, error;
    const char *tbase, *nbase;
    struct stat st;

    if ((error = open_parent(&tdir, &tbase, s->root_fd, s->target, 0)) < 0)
        return error;
    if (fstatat(tdir, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
        error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: hard link target %.512s is not a regular file",
                             s->path, s->target);
        goto out;
    }
    if ((error = open_parent(&ndir, &nbase, s->root_fd, s->path, 1)) < 0)
        goto out;
    if ((error = clear_slot(ndir, nbase, s->path)) < 0)
        goto out;
    if (linkat(tdir, tbase, ndir, nbase, 0) < 0)
        error = ps_error_errno(errno, "%.512s: link to %.512s", s->path, s->target);
out:
    if (ndir >= 0)
        close(ndir);
    close(tdir);
    return error;
}

/* One header: check it, record it, and consume or write its data. */
static int scan_entry(scan *s, struct archive_entry *entry)
{
    const char *raw = archive_entry_pathname(entry);
    char what[64];
    int error;

    snprintf(what, sizeof(what), "entry #%llu", (unsigned long long)s->entries + 1);
    if (++s->entries > s->lim.max_entries)
        return ps_error_set(PKGSTORE_ELIMIT, "%.512s: more than %llu entries",
                            raw ? raw : what, (unsigned long long)s->lim.max_entries);
    if (!raw)
        return ps_error_set(PKGSTORE_EFORMAT, "%s: no path name (or not valid in this locale)",
                            what);
    if ((error = ps_archive_normalize_path(s->path, sizeof(s->path), raw, what)) < 0)
        return error;
    pkgstore_archive_entry_type type = ps_archive_entry_type(entry);
    const char *link = NULL;

    if (type == PKGSTORE_ENTRY_OTHER)
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: %s refused", raw, other_type_name(entry));
    if (!s->path[0] && type != PKGSTORE_ENTRY_DIR)
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: names the extraction directory itself", raw);
    if ((error = check_parents(s)) < 0)
        return error;
    if (type == PKGSTORE_ENTRY_SYMLINK) {
        link = archive_entry_symlink(entry);
        if (!link || !*link)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink with an empty target", raw);
        if (strlen(link) > PS_ARCHIVE_MAX_PATH_LEN)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink target too long", raw);
        /* Early, order-independent check; chains are checked at the end. */
        if ((error = ps_archive_resolve_symlink(&s->res, &(ps_archive_tree){0}, s->path, link)) < 0)
            return error;
    } else if (type == PKGSTORE_ENTRY_HARDLINK) {
        const char *hl = archive_entry_hardlink(entry);
        if (ps_archive_normalize_path(s->target, sizeof(s->target), hl, raw) < 0 || !s->target[0])
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: hard link to %.512s leaves the extraction directory",
                                raw, hl);
        /* Extraction would remove the file to make room for the link. */
        if (strcmp(s->target, s->path) == 0)
            return ps_error_set(PKGSTORE_EFORMAT, "%.512s: hard link to itself", raw);
        const ps_archive_node *t = tree_lookup(&s->map, s->target);
        if (!t || (t->type != PKGSTORE_ENTRY_FILE && t->type != PKGSTORE_ENTRY_HARDLINK))
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: hard link to %.512s, which is not an earlier regular file",
                                raw, hl);
    }
    /* Refuse early what the header admits to; the data is measured too. */
    if (type == PKGSTORE_ENTRY_FILE && archive_entry_size(entry) > 0 &&
        (error = check_size(s, raw, (uint64_t)archive_entry_size(entry))) < 0)
        return error;
    if (type == PKGSTORE_ENTRY_FILE && (archive_entry_perm(entry) & 0111)) {
        if (++s->executables == 1)
            snprintf(s->sole_executable, sizeof(s->sole_executable), "%s", s->path);
    }

    if (s->path[0] && type != PKGSTORE_ENTRY_DIR) {
        /* As on disk: a directory, named or implied by an earlier path, is
         * never replaced by a non-directory. */
        const ps_archive_node *old = tree_lookup(&s->map, s->path);
        if ((old && old->type == PKGSTORE_ENTRY_DIR) || implied_directory(s))
            return ps_error_set(PKGSTORE_EFORMAT, "%.512s: replaces a directory", raw);
    }
    if (s->path[0] && (error = ps_archive_tree_put(&s->map, s->path, type, link)) < 0)
        return error;
    if ((error = implied_record(s)) < 0)
        return error;

    if (s->mode == SCAN_EXTRACT) {
        int want = !s->entrypoint || strcmp(s->entrypoint, s->path) == 0;
        if (s->entrypoint && want && type != PKGSTORE_ENTRY_FILE) {
            /* A later entry replaced the entrypoint with a non-file: the
             * final-state check below reports it. */
            want = 0;
        }
        if (want) {
            switch (type) {
            case PKGSTORE_ENTRY_FILE:
                error = extract_file(s, entry);
                if (error == 0 && s->entrypoint)
                    s->entrypoint_written = 1;
                return error;
            case PKGSTORE_ENTRY_DIR: error = extract_dir(s, entry); break;
            case PKGSTORE_ENTRY_SYMLINK: error = extract_symlink(s, link); break;
            case PKGSTORE_ENTRY_HARDLINK: error = extract_hardlink(s); break;
            default: break;
            }
            if (error < 0)
                return error;
        }
        /* Not written: read and measure the data all the same, as
         * validation does. Skipping it trusts the header's compressed size,
         * which libarchive's zip reader does not use when it reads the
         * data, so a skip could fail where validation (and a full
         * extraction) passed: an archive accepted at upload that the agent
         * cannot install (found by fuzz_archive). */
        if (type == PKGSTORE_ENTRY_FILE)
            return consume_data(s, -1, s->path, archive_entry_size(entry));
        return 0;
    }
    /* SCAN_VALIDATE: measure the data itself. */
    if (type == PKGSTORE_ENTRY_FILE)
        return consume_data(s, -1, s->path, archive_entry_size(entry));
    return 0;
}

/* After all headers: the final tree's symlinks must all stay inside, and
 * the entrypoint must be a regular file. */
static int scan_finish(scan *s)
{
    int error;
    /* check_parents() saw the tree so far; a later entry may have put a
     * non-directory where an earlier path implied a directory ("bin/x",
     * then a symlink "bin"). Extraction of everything finds that on disk;
     * validation and entrypoint-only extraction must refuse it too. */
    for (size_t i = 0; i < s->map.cap; i++) {
        const ps_archive_node *n = &s->map.slots[i];
        size_t len;
        if (n->path && non_dir_parent(&s->map, n->path, &len))
            return ps_error_set(PKGSTORE_EFORMAT, "%.*s: replaces a directory", (int)len,
                                n->path);
    }
    if (s->map.symlinks) {
        for (size_t i = 0; i < s->map.cap; i++) {
            const ps_archive_node *n = &s->map.slots[i];
            if (n->path && n->type == PKGSTORE_ENTRY_SYMLINK &&
                (error = ps_archive_resolve_symlink(&s->res, &s->map, n->path, n->target)) < 0)
                return error;
        }
    }
    if (s->entrypoint) {
        const ps_archive_node *n = tree_lookup(&s->map, s->entrypoint);
        if (!n)
            return ps_error_set(PKGSTORE_ENOTFOUND, "entrypoint %.512s: not in the archive",
                                s->entrypoint);
        if (n->type == PKGSTORE_ENTRY_HARDLINK)
            return ps_error_set(PKGSTORE_EINVALID,
                                "entrypoint %.512s: a hard link, not a regular file",
                                s->entrypoint);
        if (n->type != PKGSTORE_ENTRY_FILE)
            return ps_error_set(PKGSTORE_EINVALID, "entrypoint %.512s: not a regular file",
                                s->entrypoint);
        if (s->mode == SCAN_EXTRACT && !s->entrypoint_written)
            return ps_error_set(PKGSTORE_EINTERNAL, "entrypoint %.512s: not written",
                                s->entrypoint);
    }
    return 0;
}

static int scan_run(scan *s, int fd)
{
    ps_archive_source src;
    struct archive_entry *entry;
    int error;

    if ((error = pkgstore_archive_detect_fd(&s->format, fd)) < 0)
        return error;
    if (!pkgstore_archive_format_is_archive(s->format))
        return ps_error_set(PKGSTORE_EFORMAT, "not an archive (a plain binary)");
    if ((error = ps_archive_reader_open_fd(&s->a, &src, fd)) < 0)
        return error;
    s->src = &src;
    s->archive_size = (uint64_t)src.size;
    s->res.budget = PS_ARCHIVE_RESOLVE_BUDGET;
    for (;;) {
        int r = archive_read_next_header(s->a, &entry);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64];
            snprintf(what, sizeof(what), "entry #%llu", (unsigned long long)s->entries + 1);
            error = ps_archive_reader_error(s->a, &src, what);
            goto out;
        }
        if ((error = scan_entry(s, entry)) < 0)
            goto out;
    }
    error = scan_finish(s);
out:
    ps_archive_reader_close(s->a, &src);
    s->a = NULL;
    s->src = NULL;
    return error;
}

static void scan_free(scan *s)
{
    ps_archive_tree_free(&s->map);
    free(s->implied);
    s->implied = NULL;
    s->implied_cap = s->implied_count = 0;
}

/* ------------------------------------------------------------ validation */

/* What validation learnt; the path lives in the same allocation. */
struct pkgstore_archive_info {
    pkgstore_archive_format format;
    uint64_t entries;
    uint64_t total_size;
    uint64_t archive_size;
    uint64_t executables;
    char sole_executable[]; /* "" unless executables == 1 */
};

static int make_info(pkgstore_archive_info **out, const scan *s)
{
    const char *sole = s->executables == 1 ? s->sole_executable : "";
    size_t len = strlen(sole);
    pkgstore_archive_info *info = malloc(sizeof(*info) + len + 1);
    if (!info)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    info->format = s->format;
    info->entries = s->entries;
    info->total_size = s->expanded;
    info->archive_size = s->archive_size;
    info->executables = s->executables;
    memcpy(info->sole_executable, sole, len + 1);
    *out = info;
    return 0;
}

PKGSTORE_API pkgstore_archive_format pkgstore_archive_info_format(const pkgstore_archive_info *info)
{
    return info->format;
}

PKGSTORE_API uint64_t pkgstore_archive_info_entries(const pkgstore_archive_info *info)
{
    return info->entries;
}

PKGSTORE_API uint64_t pkgstore_archive_info_total_size(const pkgstore_archive_info *info)
{
    return info->total_size;
}

PKGSTORE_API uint64_t pkgstore_archive_info_archive_size(const pkgstore_archive_info *info)
{
    return info->archive_size;
}

PKGSTORE_API uint64_t pkgstore_archive_info_executables(const pkgstore_archive_info *info)
{
    return info->executables;
}

PKGSTORE_API const char *pkgstore_archive_info_sole_executable(const pkgstore_archive_info *info)
{
    return info->sole_executable;
}

PKGSTORE_API void pkgstore_archive_info_free(pkgstore_archive_info *info)
{
    free(info);
}

static int prepare_entrypoint(char *out, size_t size, const char *entrypoint)
{
    int error = ps_archive_normalize_path(out, size, entrypoint, "entrypoint");
    if (error < 0) {
        ps_error_prefix("entrypoint");
        return PKGSTORE_EINVALID;
    }
    if (!out[0])
        return ps_error_set(PKGSTORE_EINVALID, "entrypoint '%.512s': names no file", entrypoint);
    return 0;
}

PKGSTORE_API int pkgstore_archive_validate_fd(pkgstore_archive_info **info_out, int fd,
                                              const char *entrypoint,
                                              const pkgstore_archive_options *opts)
{
    char ep[PS_ARCHIVE_MAX_PATH_LEN + 1];
    scan *s;
    int error;

    if (info_out)
        *info_out = NULL;
    if (fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "archive validate: bad fd");
    if (entrypoint && (error = prepare_entrypoint(ep, sizeof(ep), entrypoint)) < 0)
        return error;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    s->mode = SCAN_VALIDATE;
    s->root_fd = -1;
    s->entrypoint = entrypoint ? ep : NULL;
    if ((error = ps_archive_limits_from(&s->lim, opts)) == 0)
        error = scan_run(s, fd);
    if (error == 0 && info_out)
        error = make_info(info_out, s);
    scan_free(s);
    free(s);
    return error;
}

PKGSTORE_API int pkgstore_archive_validate_file(pkgstore_archive_info **info_out,
                                                const char *path, const char *entrypoint,
                                                const pkgstore_archive_options *opts)
{
    int fd, error;
    if (info_out)
        *info_out = NULL;
    if ((error = ps_archive_open_input(&fd, path)) < 0)
        return error;
    error = pkgstore_archive_validate_fd(info_out, fd, entrypoint, opts);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", path);
    return error;
}

/* ------------------------------------------------------------ removal */

static int remove_at(int parent_fd, const char *name, int depth)
{
    struct stat st;
    if (depth > 256)
        return ps_error_set(PKGSTORE_EIO, "%s: directory tree too deep to remove", name);
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s: stat", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT)
            return ps_error_errno(errno, "%s: unlink", name);
        return 0;
    }
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        /* A directory extracted without owner permission bits. */
        fchmodat(parent_fd, name, 0700, 0);
        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return ps_error_errno(errno, "%s: open", name);
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int err = errno;
        close(fd);
        return ps_error_errno(err, "%s: opendir", name);
    }
    int error = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int e = remove_at(dirfd(dir), de->d_name, depth + 1);
        if (e < 0 && error == 0)
            error = e;
    }
    closedir(dir);
    if (error == 0 && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        error = ps_error_errno(errno, "%s: rmdir", name);
    return error;
}

PKGSTORE_API int pkgstore_archive_remove_tree(const char *dir)
{
    if (!dir || !*dir)
        return ps_error_set(PKGSTORE_EINVALID, "remove: empty path");
    int error = remove_at(AT_FDCWD, dir, 0);
    if (error < 0)
        ps_error_prefix("remove %s", dir);
    return error;
}

/* ------------------------------------------------------------ extraction */

static char *join_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + 1 + lb + 1);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

PKGSTORE_API int pkgstore_archive_extract_fd(char **dir_out, char **file_out, int fd,
                                             const char *parent_dir, const char *entrypoint,
                                             const pkgstore_archive_options *opts)
{
    char ep[PS_ARCHIVE_MAX_PATH_LEN + 1];
    char *dir = NULL, *file = NULL;
    scan *s = NULL;
    int error;

    if (dir_out)
        *dir_out = NULL;
    if (file_out)
        *file_out = NULL;
    if (!dir_out || fd < 0 || !parent_dir || !*parent_dir)
        return ps_error_set(PKGSTORE_EINVALID, "archive extract: bad argument");
    if (entrypoint && (error = prepare_entrypoint(ep, sizeof(ep), entrypoint)) < 0)
        return error;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    s->mode = SCAN_EXTRACT;
    s->root_fd = -1;
    s->entrypoint = entrypoint ? ep : NULL;
    if ((error = ps_archive_limits_from(&s->lim, opts)) < 0)
        goto out;

    dir = join_path(parent_dir, "extract.XXXXXX");
    if (!dir) {
        error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
        goto out;
    }
    if (!mkdtemp(dir)) {
        error = ps_error_errno(errno, "%s: mkdtemp", parent_dir);
        free(dir);
        dir = NULL;
        goto out;
    }
    s->root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->root_fd < 0) {
        error = ps_error_errno(errno, "%s: open", dir);
        goto out;
    }
    if ((error = scan_run(s, fd)) < 0)
        goto out;
    if (entrypoint && file_out) {
        file = join_path(dir, ep);
        if (!file) {
            error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
            goto out;
        }
    }
out:
    if (s) {
        if (s->root_fd >= 0)
            close(s->root_fd);
        scan_free(s);
        free(s);
    }
    if (error < 0) {
        if (dir) {
            char saved[1024];
            snprintf(saved, sizeof(saved), "%s", pkgstore_error_detail());
            pkgstore_archive_remove_tree(dir);
            ps_error_set(error, "%s", saved);
        }
        free(dir);
        free(file);
        return error;
    }
    *dir_out = dir; /* now owned by the caller */
    if (file_out)
        *file_out = file;
    else
        free(file);
    return 0;
}

PKGSTORE_API int pkgstore_archive_extract_file(char **dir_out, char **file_out,
                                               const char *archive_path,
                                               const char *parent_dir, const char *entrypoint,
                                               const pkgstore_archive_options *opts)
{
    int fd, error;
    if (dir_out)
        *dir_out = NULL;
    if (file_out)
        *file_out = NULL;
    if ((error = ps_archive_open_input(&fd, archive_path)) < 0)
        return error;
    error = pkgstore_archive_extract_fd(dir_out, file_out, fd, parent_dir, entrypoint, opts);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", archive_path);
    return error;
}
