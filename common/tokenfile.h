/*
 * common/tokenfile.h - the bearer-token files that pkgstored reads and the
 * tools present: one entry a line, "TOKEN" or "ROLE TOKEN"; a line whose
 * first word starts with '#' is a comment, blank lines are skipped.
 *
 * Program-side code shared by pkgstored (server/tokens.c) and the tools
 * (tools/httpclient.c); not part of libpkgstore, which has no tokens.
 */
#ifndef PKGSTORE_COMMON_TOKENFILE_H
#define PKGSTORE_COMMON_TOKENFILE_H

#include <stddef.h>

/* Longest line read; a longer one is an error, never split in two. */
#define TOKEN_FILE_LINE_MAX 4096

/* Called for each entry: its line number, its first word and its second
 * word (NULL for a one-word line). Return 0 to go on, a positive value to
 * stop the walk with success, or -1 (after writing err) to stop it with an
 * error. The words live until the callback returns. */
typedef int (*token_file_line_fn)(void *payload, int lineno, const char *first,
                                  const char *second);

/* Call fn for each entry of the file at path. A line with more than two
 * words is an error, as is one longer than TOKEN_FILE_LINE_MAX or holding
 * a NUL. Returns 0, 1 when the file does not exist, or -1 with a message
 * in err ("PATH: ...", "PATH:LINE: ...", or fn's). */
int token_file_each(const char *path, token_file_line_fn fn, void *payload, char *err,
                    size_t err_size);

/* The token of the file's first entry (the second word of "ROLE TOKEN",
 * else the only word) into out. Returns 0, 1 when the file does not exist,
 * or -1 with a message in err (no entry, too long for out, unreadable). */
int token_file_first(char *out, size_t size, const char *path, char *err, size_t err_size);

#endif
