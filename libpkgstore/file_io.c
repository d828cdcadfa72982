/*
 * file_io.c - plain POSIX file writes (see file_io.h).
 */
#include "file_io.h"

#include <errno.h>
#include <unistd.h>

int ps_write_all(int fd, const void *data, size_t len)
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
