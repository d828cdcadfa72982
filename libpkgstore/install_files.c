/*
 * install: the agent's file operations on the live executable: install
 * with a .bak, restore, the preflight check, and small atomic files. Only
 * POSIX calls, so a program may link this part alone (the resident
 * pkgstore-agent does).
 *
 * Every change of a visible path is a rename() over it, followed by an
 * fsync of the directory, of a name that already holds the complete,
 * durable content: a temporary copy (written and fsynced), a second hard
 * link of a file that is already durable (the live file becoming the
 * .bak, the .bak becoming live again), or the new file itself moved from
 * the caller's directory. rename() is atomic, so the live path is at every
 * instant the old complete file or the new one. Each durable step is a
 * checkpoint: the caller's step hook sees it, and the test build
 * (PKGSTORE_TEST_HOOKS) injects faults there (install.h).
 */
#include "install.h"

#include "error.h"
#include "file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define COPY_BLOCK (1u << 20)
/* Free space pkgstore_install_check() leaves beyond what a swap writes. */
#define INSTALL_SPACE_MARGIN (1u << 20)

/* ------------------------------------------------------------ checkpoints */

/* One operation: its options (may be NULL) for the step hook. */
typedef struct op {
    const pkgstore_install_options *opts;
} op;

#ifdef PKGSTORE_TEST_HOOKS
static _Thread_local int fault_armed;
static _Thread_local int fault_mode;
static _Thread_local int fault_count;
static _Thread_local int fault_hit;
static _Thread_local char fault_last[48];
static _Thread_local char fault_name[48];
static _Thread_local int no_links;

void ps_install_set_no_links(int on)
{
    no_links = on;
}

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

/* The test build's armed point: 0 to go on, else its mode. */
static int fault_at(const char *point)
{
    if (!fault_armed && !fault_name[0])
        return 0;
    snprintf(fault_last, sizeof(fault_last), "%s", point);
    if (fault_name[0] ? strcmp(fault_last, fault_name) != 0 : ++fault_count != fault_armed)
        return 0;
    fault_hit = 1;
    ps_error_set(PKGSTORE_EINTERNAL, "injected fault at %s", fault_last);
    return fault_mode;
}
#endif

enum { GO = 0, STEP_FAIL = 1, STEP_CRASH = 2 };

/*
 * Before each durable step ("bak:link", "new:rename", ...): GO, or
 * STEP_FAIL (the caller's step hook refused it, or a test fault; the
 * error is in *code and the detail) through the normal error path, or
 * STEP_CRASH (test builds only) to return at once as a killed process
 * would, leaving every file as it is.
 */
static int checkpoint(const op *o, const char *tag, const char *step, int *code)
{
    char point[48];
    snprintf(point, sizeof(point), "%s:%s", tag, step);
#ifdef PKGSTORE_TEST_HOOKS
    int mode = fault_at(point);
    if (mode) {
        *code = PKGSTORE_EINTERNAL;
        return mode == PS_INSTALL_FAULT_CRASH ? STEP_CRASH : STEP_FAIL;
    }
#endif
    if (o && o->opts && o->opts->step) {
        int rc = o->opts->step(point, o->opts->payload);
        if (rc < 0) {
            *code = ps_error_set(rc, "stopped at %s by the step hook: %s", point,
                                 pkgstore_strerror(rc));
            return STEP_FAIL;
        }
    }
    return GO;
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
        if (ps_write_all(dst_fd, *buf, (size_t)n) < 0)
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
 * tag the checkpoints. On failure before the rename the temporary file is
 * removed and final_name is untouched.
 */
static int replace_atomic(const op *o, int dirfd, const char *tmp_name, const char *final_name,
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

    if ((f = checkpoint(o, tag, "write", &error)) != GO) {
        /* A crash in the middle of the copy leaves half a file behind. */
        if (f == STEP_CRASH) {
            if (c->src_fd >= 0) {
                struct stat st;
                if (fstat(c->src_fd, &st) == 0)
                    copy_fd(fd, c->src_fd, (uint64_t)st.st_size / 2, &buf);
            } else {
                ps_write_all(fd, c->data, (size_t)(c->len / 2));
            }
            free(buf);
            close(fd);
            return error;
        }
        goto out;
    }
    if (c->src_fd >= 0) {
        struct stat st;
        if (fstat(c->src_fd, &st) < 0 || copy_fd(fd, c->src_fd, (uint64_t)st.st_size, &buf) < 0) {
            error = ps_error_errno(errno, "%s: write %s", display, tmp_name);
            goto out;
        }
    } else if (ps_write_all(fd, c->data, (size_t)c->len) < 0) {
        error = ps_error_errno(errno, "%s: write %s", display, tmp_name);
        goto out;
    }
    if (fchmod(fd, mode) < 0) {
        error = ps_error_errno(errno, "%s: chmod %s", display, tmp_name);
        goto out;
    }
    if ((f = checkpoint(o, tag, "fsync", &error)) != GO) {
        if (f == STEP_CRASH) {
            close(fd);
            free(buf);
            return error;
        }
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
    if ((f = checkpoint(o, tag, "rename", &error)) != GO) {
        if (f == STEP_CRASH) {
            free(buf);
            return error;
        }
        goto out;
    }
    if (renameat(dirfd, tmp_name, dirfd, final_name) < 0) {
        error = ps_error_errno(errno, "%s: rename %s", display, tmp_name);
        goto out;
    }
    renamed = 1;
    if (checkpoint(o, tag, "dirsync", &error) != GO)
        goto out;
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

/* link() fails this way where the filesystem has no hard links for us
 * (vfat, a protected_hardlinks refusal, a link count at its maximum): the
 * caller copies instead. */
static int link_unsupported(int err)
{
    return err == EPERM || err == EMLINK || err == EOPNOTSUPP || err == ENOSYS || err == EXDEV;
}

/*
 * Make (dirfd, final_name) a second name of (src_dirfd, src_name) without
 * copying: link it to tmp_name, rename that over final_name, fsync the
 * directory. The file's content is not written, so it must already be
 * durable (an installed binary is). Returns 1 when links are not supported
 * here (nothing changed: copy instead), 0 on success, or a negative error
 * (tmp_name removed unless a crash point returned).
 */
static int link_atomic(const op *o, int src_dirfd, const char *src_name, int dirfd,
                       const char *tmp_name, const char *final_name, const char *display,
                       const char *tag)
{
    int error = 0, f;

    if (unlinkat(dirfd, tmp_name, 0) < 0 && errno != ENOENT)
        return ps_error_errno(errno, "%s: remove stale %s", display, tmp_name);
    if ((f = checkpoint(o, tag, "link", &error)) != GO)
        return error;
#ifdef PKGSTORE_TEST_HOOKS
    if (no_links)
        return 1;
#endif
    if (linkat(src_dirfd, src_name, dirfd, tmp_name, 0) < 0) {
        if (link_unsupported(errno))
            return 1;
        return ps_error_errno(errno, "%s: link %s", display, tmp_name);
    }
    if ((f = checkpoint(o, tag, "rename", &error)) != GO) {
        if (f == STEP_FAIL)
            unlinkat(dirfd, tmp_name, 0);
        return error;
    }
    if (renameat(dirfd, tmp_name, dirfd, final_name) < 0) {
        error = ps_error_errno(errno, "%s: rename %s", display, tmp_name);
        unlinkat(dirfd, tmp_name, 0);
        return error;
    }
    /* rename() of two names of one file does nothing: when final_name
     * already was src, tmp_name is still there */
    unlinkat(dirfd, tmp_name, 0);
    if (checkpoint(o, tag, "dirsync", &error) != GO)
        return error;
    if (fsync(dirfd) < 0)
        return ps_error_errno(errno, "%s: fsync directory", display);
    return 0;
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

static int check_options(const pkgstore_install_options *opts, const char *what)
{
    if (opts && opts->version > PKGSTORE_INSTALL_OPTIONS_VERSION)
        return ps_error_set(PKGSTORE_EINVALID, "%s: options version %u (this library knows up to %u)",
                            what, opts->version, PKGSTORE_INSTALL_OPTIONS_VERSION);
    if (opts && (opts->flags & ~(unsigned int)PKGSTORE_INSTALL_MOVE))
        return ps_error_set(PKGSTORE_EINVALID, "%s: unknown flags 0x%x", what, opts->flags);
    return 0;
}

PKGSTORE_API void pkgstore_install_options_init(pkgstore_install_options *opts)
{
    if (opts) {
        memset(opts, 0, sizeof(*opts));
        opts->version = PKGSTORE_INSTALL_OPTIONS_VERSION;
    }
}

/* ------------------------------------------------------------ swap, restore */

/* Move new_exe (open as new_fd, on the live directory's filesystem) onto
 * live: chmod, fsync, rename, fsync the directory. 1 when it is on another
 * filesystem (nothing renamed: copy instead), 0, or a negative error. */
static int move_into_place(const op *o, int new_fd, const char *new_exe, int dirfd,
                           const char *base, const char *display)
{
    int error = 0, f;

    if (fchmod(new_fd, 0755) < 0)
        return ps_error_errno(errno, "%s: chmod", new_exe);
    if ((f = checkpoint(o, "new", "fsync", &error)) != GO)
        return error;
    if (fsync(new_fd) < 0)
        return ps_error_errno(errno, "%s: fsync", new_exe);
    if ((f = checkpoint(o, "new", "rename", &error)) != GO)
        return error;
    if (renameat(AT_FDCWD, new_exe, dirfd, base) < 0) {
        if (errno == EXDEV)
            return 1;
        return ps_error_errno(errno, "%s: rename %s", display, new_exe);
    }
    if (checkpoint(o, "new", "dirsync", &error) != GO)
        return error;
    if (fsync(dirfd) < 0)
        return ps_error_errno(errno, "%s: fsync directory", display);
    return 0;
}

PKGSTORE_API int pkgstore_install_swap_ext(const char *live_path, const char *new_exe,
                                           const pkgstore_install_options *opts)
{
    char *bak = NULL, *bak_tmp = NULL, *new_tmp = NULL;
    int dirfd = -1, new_fd = -1, live_fd = -1, error;
    const char *base;
    struct stat st;
    op o = {opts};

    if (!live_path || !*live_path || !new_exe)
        return ps_error_set(PKGSTORE_EINVALID, "install: NULL argument");
    if ((error = check_options(opts, "install")) < 0)
        return error;
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

    /* 1. The current live file becomes the .bak: a second name of it (a
     * copy where hard links are not supported). The live path stays. */
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
        error = link_atomic(&o, dirfd, base, dirfd, bak_tmp, bak, live_path, "bak");
        if (error == 1) {
            content c = {live_fd, NULL, 0};
            error = replace_atomic(&o, dirfd, bak_tmp, bak, &c, live_st.st_mode & 0777, live_path,
                                   "bak");
        }
        if (error < 0)
            goto out;
    }

    /* 2. The new executable replaces the live path in one rename: moved
     * there when the caller allows it and it is on this filesystem, else
     * through a copy. */
    if (opts && (opts->flags & PKGSTORE_INSTALL_MOVE)) {
        error = move_into_place(&o, new_fd, new_exe, dirfd, base, live_path);
        if (error <= 0)
            goto out;
    }
    content c = {new_fd, NULL, 0};
    error = replace_atomic(&o, dirfd, new_tmp, base, &c, 0755, live_path, "new");
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

PKGSTORE_API int pkgstore_install_swap(const char *live_path, const char *new_exe)
{
    return pkgstore_install_swap_ext(live_path, new_exe, NULL);
}

PKGSTORE_API int pkgstore_install_restore(const char *live_path)
{
    char *bak = NULL, *tmp = NULL;
    int dirfd = -1, bak_fd = -1, error;
    const char *base;
    struct stat st;
    op o = {NULL};

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
    /* The .bak stays: the live path becomes a second name of it. */
    error = link_atomic(&o, dirfd, bak, dirfd, tmp, base, live_path, "restore");
    if (error == 1) {
        content c = {bak_fd, NULL, 0};
        error = replace_atomic(&o, dirfd, tmp, base, &c, st.st_mode & 0777, live_path, "restore");
    }
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

/* ------------------------------------------------------------ preflight */

/* name (in dirfd) must be absent or not a directory: a directory in the
 * way of a rename fails the swap half-way. */
static int check_not_dir(int dirfd, const char *name, const char *live_path, const char *suffix)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s%s", live_path, suffix);
    if (S_ISDIR(st.st_mode))
        return ps_error_set(PKGSTORE_EINVALID, "%s%s: is a directory", live_path, suffix);
    return 0;
}

PKGSTORE_API int pkgstore_install_check(const char *live_path, const char *new_exe,
                                        const pkgstore_install_options *opts)
{
    char *probe = NULL, *probe_link = NULL, *names[3] = {NULL, NULL, NULL};
    static const char *const suffixes[3] = {".bak", ".bak.tmp", ".new.tmp"};
    int dirfd = -1, new_fd = -1, fd, error;
    const char *base;
    struct stat new_st, dir_st, live_st;
    struct statvfs vfs;
    int have_live = 0, links = 1;

    if (!live_path || !*live_path || !new_exe)
        return ps_error_set(PKGSTORE_EINVALID, "install check: NULL argument");
    if ((error = check_options(opts, "install check")) < 0)
        return error;
    if ((error = ps_install_open_regular(&new_fd, &new_st, AT_FDCWD, new_exe, new_exe)) < 0)
        return error;
    if ((error = open_dir_of(&dirfd, &base, live_path)) < 0)
        goto out;
    if (fstat(dirfd, &dir_st) < 0) {
        error = ps_error_errno(errno, "%s: directory", live_path);
        goto out;
    }
    if (fstatat(dirfd, base, &live_st, 0) == 0) {
        if (!S_ISREG(live_st.st_mode)) {
            error = ps_error_set(PKGSTORE_EINVALID, "%s: not a regular file", live_path);
            goto out;
        }
        have_live = 1;
    } else if (errno != ENOENT) {
        error = ps_error_errno(errno, "%s", live_path);
        goto out;
    }
    for (int i = 0; i < 3; i++) {
        if (!(names[i] = concat(base, suffixes[i]))) {
            error = ps_error_set(PKGSTORE_ENOMEM, "install check: out of memory");
            goto out;
        }
        if ((error = check_not_dir(dirfd, names[i], live_path, suffixes[i])) < 0)
            goto out;
    }

    /* The directory takes a new file and a second name for it. */
    probe = concat(base, ".check.tmp");
    probe_link = concat(base, ".check2.tmp");
    if (!probe || !probe_link) {
        error = ps_error_set(PKGSTORE_ENOMEM, "install check: out of memory");
        goto out;
    }
    unlinkat(dirfd, probe, 0);
    unlinkat(dirfd, probe_link, 0);
    fd = openat(dirfd, probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        ps_error_errno(err, "%s: directory not writable", live_path);
        error = ps_error_code_from_errno(err);
        goto out;
    }
    close(fd);
    if (linkat(dirfd, probe, dirfd, probe_link, 0) < 0)
        links = 0;
    unlinkat(dirfd, probe_link, 0);
    unlinkat(dirfd, probe, 0);

    /* Room for what will be copied: the new file unless it can be moved
     * here, the old one when there are no hard links for the .bak. */
    uint64_t need = 0;
    if (!(opts && (opts->flags & PKGSTORE_INSTALL_MOVE) && new_st.st_dev == dir_st.st_dev))
        need += (uint64_t)new_st.st_size;
    if (have_live && !links)
        need += (uint64_t)live_st.st_size;
    if (need && fstatvfs(dirfd, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
        if (avail < need + INSTALL_SPACE_MARGIN) {
            error = ps_error_set(PKGSTORE_ENOSPC,
                                 "%s: %llu bytes needed (and %u of margin), %llu available",
                                 live_path, (unsigned long long)need, INSTALL_SPACE_MARGIN,
                                 (unsigned long long)avail);
            goto out;
        }
    }
out:
    for (int i = 0; i < 3; i++)
        free(names[i]);
    free(probe);
    free(probe_link);
    if (dirfd >= 0)
        close(dirfd);
    close(new_fd);
    return error;
}

/* ------------------------------------------------------------ atomic files */

PKGSTORE_API int pkgstore_install_write_atomic(const char *path, const void *data, size_t len,
                                               unsigned int mode)
{
    const char *base;
    int dirfd, error;
    op o = {NULL};

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
    error = replace_atomic(&o, dirfd, tmp, base, &c, (mode_t)(mode & 07777), path, "atomic");
    free(tmp);
    close(dirfd);
    return error;
}

/* dst becomes a copy of src (link 0: a byte copy; 1: a hard link when the
 * filesystem allows, else a byte copy). */
static int copy_or_link(const char *dst, const char *src, unsigned int mode, int link)
{
    const char *base;
    struct stat st;
    int dirfd = -1, src_fd = -1, error;
    op o = {NULL};

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
        error = 1;
        if (link) {
            /* a file written by someone else may still be in the page
             * cache only: make its content durable before naming it */
            if (fsync(src_fd) < 0)
                error = ps_error_errno(errno, "%s: fsync", src);
            else
                error = link_atomic(&o, AT_FDCWD, src, dirfd, tmp, base, dst, "link");
        }
        if (error == 1) {
            content c = {src_fd, NULL, 0};
            error = replace_atomic(&o, dirfd, tmp, base, &c,
                                   (mode_t)(link ? st.st_mode & 0777 : mode & 07777), dst, "copy");
        }
        free(tmp);
    }
    close(dirfd);
    close(src_fd);
    return error;
}

PKGSTORE_API int pkgstore_install_copy_atomic(const char *dst, const char *src, unsigned int mode)
{
    return copy_or_link(dst, src, mode, 0);
}

PKGSTORE_API int pkgstore_install_link_atomic(const char *dst, const char *src)
{
    return copy_or_link(dst, src, 0, 1);
}
