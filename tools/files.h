/*
 * tools/files.h - whole-file reads and atomic writes for the programs that
 * keep small documents in files (pkgstore-key, pkgstore-sign: root.json,
 * revocations, signature envelopes).
 */
#ifndef PKGSTORE_CLI_FILES_H
#define PKGSTORE_CLI_FILES_H

#include <stddef.h>
#include <sys/types.h>

/* Read at most max bytes of path into a new NUL-terminated buffer (free()).
 * Prints "prog: path: reason" and returns -1 on failure (including a
 * larger file). */
int cli_read_file(char **data_out, size_t *len_out, const char *path, size_t max);

/* Write data to path atomically: a temporary file beside it with mode,
 * fsync, then rename over path (replace) or link to it (never replacing an
 * existing file), then fsync the directory. Prints the error and returns
 * -1 on failure, leaving no temporary file behind. */
int cli_write_file(const char *path, const void *data, size_t len, mode_t mode, int replace);

#endif
