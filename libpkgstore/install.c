/*
 * install: check a download (size, SHA-256) and turn it into an executable
 * file, extracting an archive's entrypoint. The file operations on the
 * live path are in install_files.c.
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

/* ------------------------------------------------------------ verify */

PKGSTORE_API int pkgstore_install_verify(pkgstore_digest *actual_out, const char *path,
                                         const pkgstore_digest *expected, uint64_t max_size)
{
    pkgstore_digest actual;
    struct stat st;
    int fd, error;

    memset(&actual, 0, sizeof(actual));
    if (actual_out)
        *actual_out = actual;
    if (!path || !expected)
        return ps_error_set(PKGSTORE_EINVALID, "verify: NULL argument");
    if ((error = ps_install_open_regular(&fd, &st, AT_FDCWD, path, path)) < 0)
        return error;
    if (max_size && (uint64_t)st.st_size > max_size) {
        close(fd);
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH, "%s: %llu bytes, more than the %llu offered",
                            path, (unsigned long long)st.st_size, (unsigned long long)max_size);
    }
    uint64_t hashed = 0;
    error = pkgstore_digest_fd(&actual, &hashed, fd);
    close(fd);
    if (error < 0) {
        ps_error_prefix("%s", path);
        return error;
    }
    if (max_size && hashed > max_size)
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH, "%s: grew past the %llu bytes offered", path,
                            (unsigned long long)max_size);
    if (actual_out)
        *actual_out = actual;
    if (!pkgstore_digest_equal(&actual, expected)) {
        char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(want, expected);
        pkgstore_digest_format(got, &actual);
        return ps_error_set(PKGSTORE_EDIGEST_MISMATCH, "%s: expected %s, got %s", path, want, got);
    }
    return 0;
}

/* ------------------------------------------------------------ prepare */

static int make_executable(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s", path);
    int error = 0;
    if (fstat(fd, &st) < 0)
        error = ps_error_errno(errno, "%s: stat", path);
    else if (!S_ISREG(st.st_mode))
        error = ps_error_set(PKGSTORE_EINVALID, "%s: not a regular file", path);
    else if (fchmod(fd, (st.st_mode & 0777) | 0755) < 0)
        error = ps_error_errno(errno, "%s: chmod", path);
    close(fd);
    return error;
}

PKGSTORE_API int pkgstore_install_prepare(char **exe_out, char **dir_out,
                                          const char *download_path,
                                          pkgstore_archive_format format,
                                          const char *entrypoint, const char *work_dir,
                                          const pkgstore_archive_options *opts)
{
    pkgstore_archive_format detected = PKGSTORE_ARCHIVE_UNKNOWN;
    char *dir = NULL, *exe = NULL;
    int error;

    if (exe_out)
        *exe_out = NULL;
    if (dir_out)
        *dir_out = NULL;
    if (!exe_out || !dir_out || !download_path)
        return ps_error_set(PKGSTORE_EINVALID, "prepare: NULL argument");
    if ((error = pkgstore_archive_detect_file(&detected, download_path)) < 0)
        return error;
    if (format != PKGSTORE_ARCHIVE_UNKNOWN && format != detected)
        return ps_error_set(PKGSTORE_EFORMAT, "%s: declared %s but the content is %s",
                            download_path, pkgstore_archive_format_name(format),
                            pkgstore_archive_format_name(detected));
    if (detected == PKGSTORE_ARCHIVE_BINARY) {
        if ((error = make_executable(download_path)) < 0)
            return error;
        if (!(exe = strdup(download_path)))
            return ps_error_set(PKGSTORE_ENOMEM, "prepare: out of memory");
        *exe_out = exe;
        return 0;
    }
    if (!entrypoint || !*entrypoint)
        return ps_error_set(PKGSTORE_EINVALID, "%s: a %s archive needs an entrypoint",
                            download_path, pkgstore_archive_format_name(detected));
    if (!work_dir)
        return ps_error_set(PKGSTORE_EINVALID, "prepare: NULL work directory");
    if ((error = pkgstore_archive_extract_file(&dir, &exe, download_path, work_dir, entrypoint,
                                               opts)) < 0)
        return error;
    if ((error = make_executable(exe)) < 0) {
        pkgstore_archive_remove_tree(dir);
        free(dir);
        free(exe);
        return error;
    }
    *exe_out = exe; /* now owned by the caller */
    *dir_out = dir;
    return 0;
}
