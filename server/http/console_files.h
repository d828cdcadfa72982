/*
 * server/http/console_files.h - the web console's files (every file in ui), compiled
 * into pkgstored: $(BUILD)/gen/console_files.c is generated from ui/ by
 * server/http/embed-ui.sh at build time (console.c serves them).
 */
#ifndef PKGSTORED_CONSOLE_FILES_H
#define PKGSTORED_CONSOLE_FILES_H

#include <stddef.h>

typedef struct console_file {
    const char *name;          /* the file's name in ui/, and under /ui/ */
    const unsigned char *data; /* its bytes (a NUL follows them) */
    size_t size;
} console_file;

/* console_file_count files, then one {NULL} entry. */
extern const console_file console_files[];
extern const size_t console_file_count;

#endif
