/*
 * tools/files.c - whole-file reads and atomic writes (see files.h).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_read_file(char **data_out, size_t *len_out, const char *path, size_t max)
{
    char *data = NULL;
    size_t len = 0;
    int fd;
    *data_out = NULL;
    *len_out = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        cli_error(path, "%s", strerror(errno));
        return -1;
    }
    if (!(data = malloc(max + 2))) {
        close(fd);
        cli_error(path, "out of memory");
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, data + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error(path, "%s", strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            cli_error(path, "larger than %zu bytes", max);
            goto fail;
        }
    }
    close(fd);
    data[len] = '\0';
    *data_out = data;
    *len_out = len;
    return 0;
fail:
    close(fd);
    free(data);
    return -1;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int cli_write_file(const char *path, const void *data, size_t len, mode_t mode, int replace)
{
    char tmp[4096], dir[4096];
    int fd;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
        cli_error(path, "path too long");
        return -1;
    }
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        cli_error(path, "create a temporary file beside it: %s", strerror(errno));
        return -1;
    }
    if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        cli_error(path, "write: %s", strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) < 0 || (replace ? rename(tmp, path) : link(tmp, path)) < 0) {
        int err = errno;
        unlink(tmp);
        if (err == EEXIST)
            cli_error(path, "already exists (not overwritten)");
        else
            cli_error(path, "%s", strerror(err));
        return -1;
    }
    if (!replace)
        unlink(tmp);
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        fsync(dir_fd);
        close(dir_fd);
    }
    return 0;
}
