/*
 * archive_create: write a tar+zstd archive from files (pkgstore-pack).
 *
 * The output is deterministic by default: entries sorted by path, mtime 0,
 * uid/gid 0 and no owner names, so the same inputs give the same bytes and
 * therefore the same digest. The archive is written to a temporary file
 * beside the output, validated with the same rules extraction applies (a
 * packed archive is never one the agent would refuse), fsynced and renamed
 * into place.
 */
#include "pkgstore/archive.h"

#include "error.h"

#include <archive.h>
#include <archive_entry.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_ZSTD_LEVEL 9
#define COPY_BLOCK (1u << 20)
#define MAX_DEPTH 64

typedef struct path_list {
    char **items;
    size_t count, cap;
} path_list;

static int list_push(path_list *l, char *item)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **grown = realloc(l->items, cap * sizeof(*grown));
        if (!grown) {
            free(item);
            return ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = item;
    return 0;
}

static void list_clear(path_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

/* Relative, no "..", no empty result; "./a//b/" becomes "a/b". */
static int clean_input_path(char **out, const char *in)
{
    size_t len = strlen(in), n = 0;
    char *clean = malloc(len + 1);
    const char *p = in;

    *out = NULL;
    if (!clean)
        return ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
    if (in[0] == '/') {
        free(clean);
        return ps_error_set(PKGSTORE_EINVALID, "%s: absolute path (use a base directory)", in);
    }
    while (*p) {
        size_t cl = strcspn(p, "/");
        if (cl == 2 && p[0] == '.' && p[1] == '.') {
            free(clean);
            return ps_error_set(PKGSTORE_EINVALID, "%s: '..' component", in);
        }
        if (cl && !(cl == 1 && p[0] == '.')) {
            if (n)
                clean[n++] = '/';
            memcpy(clean + n, p, cl);
            n += cl;
        }
        p += cl;
        if (*p == '/')
            p++;
    }
    clean[n] = '\0';
    if (!n) {
        free(clean);
        return ps_error_set(PKGSTORE_EINVALID, "%s: names no file", in);
    }
    *out = clean;
    return 0;
}

/* Collect rel (relative to base_fd) and, for a directory, everything below. */
static int collect(path_list *l, int base_fd, const char *rel, int depth)
{
    struct stat st;
    int error;

    if (depth > MAX_DEPTH)
        return ps_error_set(PKGSTORE_ELIMIT, "%s: directories nested too deep", rel);
    if (fstatat(base_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return ps_error_errno(errno, "%s", rel);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
        return ps_error_set(PKGSTORE_EUNSAFE, "%s: not a regular file, directory or symlink", rel);
    char *copy = strdup(rel);
    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
    if ((error = list_push(l, copy)) < 0)
        return error;
    if (!S_ISDIR(st.st_mode))
        return 0;

    int fd = openat(base_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s", rel);
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int err = errno;
        close(fd);
        return ps_error_errno(err, "%s", rel);
    }
    struct dirent *de;
    error = 0;
    while (error == 0 && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t len = strlen(rel) + 1 + strlen(de->d_name) + 1;
        char *child = malloc(len);
        if (!child) {
            error = ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
            break;
        }
        snprintf(child, len, "%s/%s", rel, de->d_name);
        error = collect(l, base_fd, child, depth + 1);
        free(child);
    }
    closedir(dir);
    return error;
}

static int cmp_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_error(struct archive *a, const char *what)
{
    const char *msg = archive_error_string(a);
    int err = archive_errno(a);
    if (err == ENOSPC)
        return ps_error_errno(err, "%s", what);
    return ps_error_set(PKGSTORE_EIO, "%s: %s", what, msg ? msg : "write failed");
}

static int add_entry(struct archive *a, struct archive_entry *entry, int base_fd,
                     const char *rel, int keep_metadata, unsigned char *buf)
{
    struct stat st;
    int fd = -1, error = 0;

    if (fstatat(base_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return ps_error_errno(errno, "%s", rel);
    archive_entry_clear(entry);
    archive_entry_set_pathname(entry, rel);
    archive_entry_set_perm(entry, st.st_mode & 0777);
    if (keep_metadata) {
        archive_entry_set_mtime(entry, st.st_mtim.tv_sec, 0);
        archive_entry_set_uid(entry, st.st_uid);
        archive_entry_set_gid(entry, st.st_gid);
    } else {
        archive_entry_set_mtime(entry, 0, 0);
        archive_entry_set_uid(entry, 0);
        archive_entry_set_gid(entry, 0);
    }
    if (S_ISDIR(st.st_mode)) {
        archive_entry_set_filetype(entry, AE_IFDIR);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(base_fd, rel, target, sizeof(target) - 1);
        if (n < 0)
            return ps_error_errno(errno, "%s: readlink", rel);
        target[n] = '\0';
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, target);
    } else if (S_ISREG(st.st_mode)) {
        fd = openat(base_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return ps_error_errno(errno, "%s", rel);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return ps_error_set(PKGSTORE_EIO, "%s: changed while packing", rel);
        }
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, st.st_size);
    } else {
        return ps_error_set(PKGSTORE_EUNSAFE, "%s: not a regular file, directory or symlink", rel);
    }
    if (archive_write_header(a, entry) != ARCHIVE_OK) {
        error = write_error(a, rel);
        goto out;
    }
    if (fd >= 0) {
        off_t left = st.st_size;
        while (left > 0) {
            ssize_t n = read(fd, buf, left < COPY_BLOCK ? (size_t)left : COPY_BLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                error = ps_error_errno(errno, "%s: read", rel);
                goto out;
            }
            if (n == 0) {
                error = ps_error_set(PKGSTORE_EIO, "%s: shrank while packing", rel);
                goto out;
            }
            if (archive_write_data(a, buf, (size_t)n) != n) {
                error = write_error(a, rel);
                goto out;
            }
            left -= n;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    return error;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int error = 0;
    if (fd < 0 || fsync(fd) < 0)
        error = ps_error_errno(errno, "%s: fsync", dir);
    if (fd >= 0)
        close(fd);
    free(copy);
    return error;
}

PKGSTORE_API int pkgstore_archive_create_options_init(pkgstore_archive_create_options *opts,
                                                      unsigned int version)
{
    return ps_options_init(opts, sizeof(*opts), "archive create", version,
                           PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION);
}

PKGSTORE_API int pkgstore_archive_create_tar_zstd(const char *out_path, const char *base_dir,
                                                  const char *const *paths, size_t n,
                                                  const pkgstore_archive_create_options *opts)
{
    path_list inputs = {0}, all = {0};
    struct archive *a = NULL;
    struct archive_entry *entry = NULL;
    unsigned char *buf = NULL;
    char *tmp = NULL;
    int base_fd = -1, tmp_fd = -1, error = 0;
    int level = DEFAULT_ZSTD_LEVEL, keep_metadata = 0;

    if (!out_path || !*out_path || !paths || n == 0)
        return ps_error_set(PKGSTORE_EINVALID, "pack: no output or no input paths");
    if (opts) {
        if ((error = ps_options_version("archive create", opts->version,
                                        PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION)) < 0)
            return error;
        if (opts->zstd_level < 0 || opts->zstd_level > 19)
            return ps_error_set(PKGSTORE_EINVALID, "pack: zstd level %d not in 1..19",
                                opts->zstd_level);
        if (opts->zstd_level)
            level = opts->zstd_level;
        keep_metadata = opts->keep_metadata;
    }

    base_fd = open(base_dir ? base_dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0)
        return ps_error_errno(errno, "%s", base_dir ? base_dir : ".");
    for (size_t i = 0; i < n; i++) {
        char *clean;
        if (!paths[i]) {
            error = ps_error_set(PKGSTORE_EINVALID, "pack: NULL path");
            goto out;
        }
        if ((error = clean_input_path(&clean, paths[i])) < 0 ||
            (error = list_push(&inputs, clean)) < 0)
            goto out;
    }
    qsort(inputs.items, inputs.count, sizeof(char *), cmp_paths);
    /* Sorted, the paths that start with a given one follow it, though not
     * always at once ("d", "d-x", "d/f"): look at all of them. */
    for (size_t i = 0; i < inputs.count; i++) {
        const char *dir = inputs.items[i];
        size_t len = strlen(dir);
        for (size_t j = i + 1; j < inputs.count && strncmp(dir, inputs.items[j], len) == 0; j++) {
            if (inputs.items[j][len] == '\0' || inputs.items[j][len] == '/') {
                error = ps_error_set(PKGSTORE_EINVALID, "%s: listed twice", inputs.items[j]);
                goto out;
            }
        }
    }
    for (size_t i = 0; i < inputs.count; i++)
        if ((error = collect(&all, base_fd, inputs.items[i], 0)) < 0)
            goto out;
    if (!keep_metadata)
        qsort(all.items, all.count, sizeof(char *), cmp_paths);

    size_t tlen = strlen(out_path) + sizeof(".tmp.XXXXXX");
    tmp = malloc(tlen);
    buf = malloc(COPY_BLOCK);
    entry = archive_entry_new();
    a = archive_write_new();
    if (!tmp || !buf || !entry || !a) {
        error = ps_error_set(PKGSTORE_ENOMEM, "pack: out of memory");
        goto out;
    }
    snprintf(tmp, tlen, "%s.tmp.XXXXXX", out_path);
    tmp_fd = mkostemp(tmp, O_CLOEXEC);
    if (tmp_fd < 0) {
        error = ps_error_errno(errno, "%s", out_path);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    fchmod(tmp_fd, 0644);
    char level_str[8];
    snprintf(level_str, sizeof(level_str), "%d", level);
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "zstd", "compression-level", level_str) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open_fd(a, tmp_fd) != ARCHIVE_OK) {
        error = ps_error_set(PKGSTORE_EINTERNAL, "pack: libarchive: %s",
                             archive_error_string(a) ? archive_error_string(a) : "setup failed");
        goto out;
    }
    for (size_t i = 0; i < all.count; i++)
        if ((error = add_entry(a, entry, base_fd, all.items[i], keep_metadata, buf)) < 0)
            goto out;
    if (archive_write_close(a) != ARCHIVE_OK) {
        error = write_error(a, out_path);
        goto out;
    }
    /* Never produce an archive the extractor would refuse. */
    if ((error = pkgstore_archive_validate_fd(NULL, tmp_fd, NULL, NULL)) < 0)
        goto out;
    if (fsync(tmp_fd) < 0) {
        error = ps_error_errno(errno, "%s: fsync", out_path);
        goto out;
    }
    if (close(tmp_fd) < 0) {
        tmp_fd = -1;
        error = ps_error_errno(errno, "%s: close", out_path);
        goto out;
    }
    tmp_fd = -1;
    if (rename(tmp, out_path) < 0) {
        error = ps_error_errno(errno, "%s: rename", out_path);
        goto out;
    }
    free(tmp);
    tmp = NULL; /* now out_path */
    error = fsync_dir_of(out_path);
out:
    if (a)
        archive_write_free(a);
    archive_entry_free(entry);
    if (tmp_fd >= 0)
        close(tmp_fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(buf);
    if (base_fd >= 0)
        close(base_fd);
    list_clear(&inputs);
    list_clear(&all);
    return error;
}
