/*
 * Private: plain POSIX file writes the library's modules share. POSIX
 * only: the agent links the objects that use it (install_files.c) without
 * OpenSSL, libarchive or jansson.
 */
#ifndef PS_FILE_IO_H
#define PS_FILE_IO_H

#include <stddef.h>

/* Write all len bytes of data to fd, retrying short writes and EINTR.
 * 0, or -1 with errno set (nothing here sets a library error detail:
 * callers name the file). */
int ps_write_all(int fd, const void *data, size_t len);

#endif
