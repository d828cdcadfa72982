/*
 * install: the agent's file operations on the live executable: install
 * with a .bak, restore, and small atomic files. Only POSIX calls, so a
 * program may link this part alone (the resident pkgstore-agent does).
 *
 * Every change of a visible path goes through replace_atomic(): the new
 * content is written to a temporary name in the same directory, fsynced,
 * renamed over the target and the directory fsynced. rename() is atomic, so
 * the live path is at every instant the old complete file or the new one.
 * Each durable step is a crash point for the tests (install.h).
 */
#include "install.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BLOCK (1u << 20)

/* ------------------------------------------------------------ faults */

static _Thread_local int fault_armed;
static _Thread_local int fault_mode;
static _Thread_local int fault_count;
static _Thread_local int fault_hit;
static _Thread_local char fault_last[32];
static _Thread_local char fault_name[32];

void ps_install_set_fault(int n, int mode)
{
    fault_armed = n;
    fault_mode = mode;
    fault_count = 0;
    fault_hit = 0;
    fault_last[0] = '\0';
    fault_name[0] = '\0';
}

int ps_install_fault_hit(void)
{
    return fault_hit;
}

const char *ps_install_fault_point(void)
{
    return fault_last;
}

void ps_install_set_fault_point(const char *point, int mode)
{
    ps_install_set_fault(0, 0);
    snprintf(fault_name, sizeof(fault_name), "%s", point ? point : "");
    fault_mode = mode;
}

/* 0 to go on, else the armed mode (the detail is already set). */
static int fault_at(const char *tag, const char *step)
{
    if (!fault_armed && !fault_name[0])
        return 0;
    snprintf(fault_last, sizeof(fault_last), "%s:%s", tag, step);
    if (fault_name[0] ? strcmp(fault_last, fault_name) != 0 : ++fault_count != fault_armed)
        return 0;
    fault_hit = 1;
    ps_error_set(PKGSTORE_EINTERNAL, "injected fault at %s", fault_last);
    return fault_mode;
}

/* ------------------------------------------------------------ helpers */

/* Split path into its directory (opened as *dirfd_out) and its last
 * component (*base_out, pointing into path). */
static int open_dir_of(int *dirfd_out, const char **base_out, const char *path)
{
    const char *slash = strrchr(path, '/');
    int fd;

    *dirfd_out = -1;
    if (slash && !slash[1])
        return ps_error_set(PKGSTORE_EINVALID, "%s: names a directory", path);
    if (!slash) {
        fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        *base_out = path;
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        char *dir = strndup(path, len);
        if (!dir)
            return ps_error_set(PKGSTORE_ENOMEM, "install: out of memory");
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            ps_error_errno(err, "%s", dir);
            free(dir);
            return ps_error_code_from_errno(err);
        }
        free(dir);
        *base_out = slash + 1;
    }
    if (fd < 0)
        return ps_error_errno(errno, "%s: directory", path);
    *dirfd_out = fd;
    return 0;
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copy up to limit bytes of src_fd (from offset 0) to dst_fd. */
static int copy_fd(int dst_fd, int src_fd, uint64_t limit, unsigned char **buf)
{
    off_t in_off = 0;
    uint64_t done = 0;
    int use_cfr = 1;

    while (done < limit) {
        size_t want = limit - done < COPY_BLOCK ? (size_t)(limit - done) : COPY_BLOCK;
        if (use_cfr) {
            ssize_t n = copy_file_range(src_fd, &in_off, dst_fd, NULL, want, 0);
            if (n > 0) {
                done += (uint64_t)n;
                continue;
            }
            if (n == 0)
                break;
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
                return -1;
            use_cfr = 0;
        }
        if (!*buf && !(*buf = malloc(COPY_BLOCK))) {
            errno = ENOMEM;
            return -1;
        }
        ssize_t n = pread(src_fd, *buf, want, in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (write_all(dst_fd, *buf, (size_t)n) < 0)
            return -1;
        in_off += n;
        done += (uint64_t)n;
    }
    return 0;
}

/* What replace_atomic() writes: the content of src_fd or a buffer. */
typedef struct content {
    int src_fd;       /* >= 0: copy this file */
    const void *data; /* else these bytes */
    uint64_t len;
} content;

/*
 * Write content to (dirfd, tmp_name), fsync, rename over (dirfd,
 * final_name), fsync the directory. display names the target in errors and
 * tag the crash points. On failure before the rename the temporary file is
 * removed and final_name is untouched.
 */
static int replace_atomic(int dirfd, const char *tmp_name, const char *final_name,
                          const content *c, mode_t mode, const char *display, const char *tag)
{
    unsigned char *buf = NULL;
    int fd = -1, error = 0, renamed = 0, f;

    /* A stale temporary file from a crash is replaced, never appended to. */
    if (unlinkat(dirfd, tmp_name, 0) < 0 && errno != ENOENT)
        return ps_error_errno(errno, "%s: remove stale %s", display, tmp_name);
    fd = openat(dirfd, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ps_error_errno(errno, "%s: create %s", display, tmp_name);

    if ((f = fault_at(tag, "write")) != 0) {
        /* A crash in the middle of the copy leaves half a file behind. */
        if (f == PS_INSTALL_FAULT_CRASH) {
            if (c->src_fd >= 0) {
                struct stat st;
                if (fstat(c->src_fd, &st) == 0)
                    copy_fd(fd, c->src_fd, (uint64_t)st.st_size / 2, &buf);
            } else {
                write_all(fd, c->data, (size_t)(c->len / 2));
            }
            free(buf);
            close(fd);
            return PKGSTORE_EINTERNAL;
        }
        error = PKGSTORE_EINTERNAL;
        goto out;
    }
    if (c->src_fd >= 0) {
        struct stat st;
        if (fstat(c->src_fd, &st) < 0 || copy_fd(fd, c->src_fd, (uint64_t)st.st_size, &buf) < 0) {
            error = ps_error_errno(errno, "%s: write %s", display, tmp_name);
            goto out;
        }
    } else if (write_all(fd, c->data, (size_t)c->len) < 0) {
        error = ps_error_errno(errno, "%s: write %s", display, tmp_name);
        goto out;
    }
    if (fchmod(fd, mode) < 0) {
        error = ps_error_errno(errno, "%s: chmod %s", display, tmp_name);
        goto out;
    }
    if ((f = fault_at(tag, "fsync")) != 0) {
        if (f == PS_INSTALL_FAULT_CRASH) {
            close(fd);
            free(buf);
            return PKGSTORE_EINTERNAL;
        }
        error = PKGSTORE_EINTERNAL;
        goto out;
    }
    if (fsync(fd) < 0) {
        error = ps_error_errno(errno, "%s: fsync %s", display, tmp_name);
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        error = ps_error_errno(errno, "%s: close %s", display, tmp_name);
        goto out;
    }
    fd = -1;
    if ((f = fault_at(tag, "rename")) != 0) {
        if (f == PS_INSTALL_FAULT_CRASH) {
            free(buf);
            return PKGSTORE_EINTERNAL;
        }
        error = PKGSTORE_EINTERNAL;
        goto out;
    }
    if (renameat(dirfd, tmp_name, dirfd, final_name) < 0) {
        error = ps_error_errno(errno, "%s: rename %s", display, tmp_name);
        goto out;
    }
    renamed = 1;
    if ((f = fault_at(tag, "dirsync")) != 0) {
        error = PKGSTORE_EINTERNAL;
        goto out;
    }
    if (fsync(dirfd) < 0)
        error = ps_error_errno(errno, "%s: fsync directory", display);
out:
    if (fd >= 0)
        close(fd);
    if (error < 0 && !renamed)
        unlinkat(dirfd, tmp_name, 0);
    free(buf);
    return error;
}

int ps_install_open_regular(int *fd_out, struct stat *st, int dirfd, const char *name,
                            const char *display)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    *fd_out = -1;
    if (fd < 0)
        return ps_error_errno(errno, "%s", display);
    if (fstat(fd, st) < 0) {
        int err = errno;
        close(fd);
        return ps_error_errno(err, "%s: stat", display);
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a regular file", display);
    }
    *fd_out = fd;
    return 0;
}

/* ------------------------------------------------------------ swap, restore */

PKGSTORE_API int pkgstore_install_swap(const char *live_path, const char *new_exe)
{
    char *bak = NULL, *bak_tmp = NULL, *new_tmp = NULL;
    int dirfd = -1, new_fd = -1, live_fd = -1, error;
    const char *base;
    struct stat st;

    if (!live_path || !*live_path || !new_exe)
        return ps_error_set(PKGSTORE_EINVALID, "install: NULL argument");
    if ((error = ps_install_open_regular(&new_fd, &st, AT_FDCWD, new_exe, new_exe)) < 0)
        return error;
    if ((error = open_dir_of(&dirfd, &base, live_path)) < 0)
        goto out;
    bak = concat(base, ".bak");
    bak_tmp = concat(base, ".bak.tmp");
    new_tmp = concat(base, ".new.tmp");
    if (!bak || !bak_tmp || !new_tmp) {
        error = ps_error_set(PKGSTORE_ENOMEM, "install: out of memory");
        goto out;
    }

    /* 1. The current live file becomes the .bak (a copy: live stays). */
    live_fd = openat(dirfd, base, O_RDONLY | O_CLOEXEC);
    if (live_fd < 0 && errno != ENOENT) {
        error = ps_error_errno(errno, "%s", live_path);
        goto out;
    }
    if (live_fd >= 0) {
        struct stat live_st;
        if (fstat(live_fd, &live_st) < 0) {
            error = ps_error_errno(errno, "%s: stat", live_path);
            goto out;
        }
        if (!S_ISREG(live_st.st_mode)) {
            error = ps_error_set(PKGSTORE_EINVALID, "%s: not a regular file", live_path);
            goto out;
        }
        content c = {live_fd, NULL, 0};
        if ((error = replace_atomic(dirfd, bak_tmp, bak, &c, live_st.st_mode & 0777, live_path,
                                    "bak")) < 0)
            goto out;
    }

    /* 2. The new executable replaces the live path in one rename. */
    content c = {new_fd, NULL, 0};
    error = replace_atomic(dirfd, new_tmp, base, &c, 0755, live_path, "new");
out:
    if (live_fd >= 0)
        close(live_fd);
    if (dirfd >= 0)
        close(dirfd);
    close(new_fd);
    free(bak);
    free(bak_tmp);
    free(new_tmp);
    return error;
}

PKGSTORE_API int pkgstore_install_restore(const char *live_path)
{
    char *bak = NULL, *tmp = NULL;
    int dirfd = -1, bak_fd = -1, error;
    const char *base;
    struct stat st;

    if (!live_path || !*live_path)
        return ps_error_set(PKGSTORE_EINVALID, "restore: NULL argument");
    if ((error = open_dir_of(&dirfd, &base, live_path)) < 0)
        return error;
    bak = concat(base, ".bak");
    tmp = concat(base, ".restore.tmp");
    if (!bak || !tmp) {
        error = ps_error_set(PKGSTORE_ENOMEM, "restore: out of memory");
        goto out;
    }
    bak_fd = openat(dirfd, bak, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (bak_fd < 0) {
        error = errno == ENOENT
                    ? ps_error_set(PKGSTORE_ENOTFOUND, "%s.bak: no backup to restore", live_path)
                    : ps_error_errno(errno, "%s.bak", live_path);
        goto out;
    }
    if (fstat(bak_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error = ps_error_set(PKGSTORE_EINVALID, "%s.bak: not a regular file", live_path);
        goto out;
    }
    content c = {bak_fd, NULL, 0};
    error = replace_atomic(dirfd, tmp, base, &c, st.st_mode & 0777, live_path, "restore");
out:
    if (bak_fd >= 0)
        close(bak_fd);
    if (dirfd >= 0)
        close(dirfd);
    free(bak);
    free(tmp);
    return error;
}

PKGSTORE_API int pkgstore_install_has_backup(const char *live_path)
{
    struct stat st;
    if (!live_path || !*live_path)
        return ps_error_set(PKGSTORE_EINVALID, "has_backup: NULL argument");
    char *bak = concat(live_path, ".bak");
    if (!bak)
        return ps_error_set(PKGSTORE_ENOMEM, "has_backup: out of memory");
    int r = lstat(bak, &st);
    int err = errno;
    free(bak);
    if (r < 0)
        return err == ENOENT ? 0 : ps_error_errno(err, "%s.bak", live_path);
    return S_ISREG(st.st_mode) ? 1 : 0;
}

/* ------------------------------------------------------------ atomic files */

PKGSTORE_API int pkgstore_install_write_atomic(const char *path, const void *data, size_t len,
                                               unsigned int mode)
{
    const char *base;
    int dirfd, error;

    if (!path || !*path || (!data && len))
        return ps_error_set(PKGSTORE_EINVALID, "write_atomic: bad argument");
    if ((error = open_dir_of(&dirfd, &base, path)) < 0)
        return error;
    char *tmp = concat(base, ".tmp");
    if (!tmp) {
        close(dirfd);
        return ps_error_set(PKGSTORE_ENOMEM, "write_atomic: out of memory");
    }
    content c = {-1, data, len};
    error = replace_atomic(dirfd, tmp, base, &c, (mode_t)(mode & 07777), path, "atomic");
    free(tmp);
    close(dirfd);
    return error;
}

PKGSTORE_API int pkgstore_install_copy_atomic(const char *dst, const char *src, unsigned int mode)
{
    const char *base;
    struct stat st;
    int dirfd = -1, src_fd = -1, error;

    if (!dst || !*dst || !src)
        return ps_error_set(PKGSTORE_EINVALID, "copy_atomic: bad argument");
    if ((error = ps_install_open_regular(&src_fd, &st, AT_FDCWD, src, src)) < 0)
        return error;
    if ((error = open_dir_of(&dirfd, &base, dst)) < 0) {
        close(src_fd);
        return error;
    }
    char *tmp = concat(base, ".tmp");
    if (!tmp) {
        error = ps_error_set(PKGSTORE_ENOMEM, "copy_atomic: out of memory");
    } else {
        content c = {src_fd, NULL, 0};
        error = replace_atomic(dirfd, tmp, base, &c, (mode_t)(mode & 07777), dst, "copy");
        free(tmp);
    }
    close(dirfd);
    close(src_fd);
    return error;
}
