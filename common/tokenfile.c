/*
 * common/tokenfile.c - read "TOKEN" / "ROLE TOKEN" files (tokenfile.h).
 *
 * Lines are read whole with getline(): a fixed fgets() buffer split a long
 * line, and the tail of a long comment line was then read as an entry of
 * its own.
 */
#include "tokenfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLANKS " \t\r\n"

int token_file_each(const char *path, token_file_line_fn fn, void *payload, char *err,
                    size_t err_size)
{
    FILE *file = fopen(path, "re");
    if (!file) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, result = 0;
    errno = 0;
    while ((len = getline(&line, &cap, file)) >= 0) {
        lineno++;
        if ((size_t)len > TOKEN_FILE_LINE_MAX) {
            snprintf(err, err_size, "%s:%d: line longer than %d bytes", path, lineno,
                     TOKEN_FILE_LINE_MAX);
            result = -1;
            break;
        }
        if ((size_t)len != strlen(line)) {
            snprintf(err, err_size, "%s:%d: NUL byte in the line", path, lineno);
            result = -1;
            break;
        }
        char *save = NULL;
        char *first = strtok_r(line, BLANKS, &save);
        if (!first || first[0] == '#')
            continue;
        char *second = strtok_r(NULL, BLANKS, &save);
        if (second && strtok_r(NULL, BLANKS, &save)) {
            snprintf(err, err_size, "%s:%d: more than two words (expected TOKEN or ROLE TOKEN)",
                     path, lineno);
            result = -1;
            break;
        }
        if ((result = fn(payload, lineno, first, second)) != 0) {
            if (result > 0)
                result = 0; /* stopped early, without an error */
            break;
        }
    }
    if (result == 0 && ferror(file)) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno ? errno : EIO));
        result = -1;
    }
    if (line) /* may hold a token */
        explicit_bzero(line, cap);
    free(line);
    fclose(file);
    return result;
}

typedef struct first_entry {
    char *out;
    size_t size;
    int found;
    int too_long;
} first_entry;

static int take_first(void *payload, int lineno, const char *first, const char *second)
{
    (void)lineno;
    first_entry *entry = payload;
    const char *token = second ? second : first;
    if (strlen(token) >= entry->size)
        entry->too_long = 1;
    else
        memcpy(entry->out, token, strlen(token) + 1);
    entry->found = 1;
    return 1; /* stop at the first entry */
}

int token_file_first(char *out, size_t size, const char *path, char *err, size_t err_size)
{
    first_entry entry = {out, size, 0, 0};
    if (size > 0)
        out[0] = '\0';
    int rc = token_file_each(path, take_first, &entry, err, err_size);
    if (rc != 0)
        return rc;
    if (!entry.found) {
        snprintf(err, err_size, "%s: no token in the file", path);
        return -1;
    }
    if (entry.too_long) {
        snprintf(err, err_size, "%s: the token is longer than %zu bytes", path,
                 size ? size - 1 : 0);
        return -1;
    }
    return 0;
}
