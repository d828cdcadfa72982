/*
 * archive_extract: benchmark driver for bench/archive.sh.
 *
 *   archive_extract ARCHIVE PARENT_DIR ENTRYPOINT
 *
 * Extracts ENTRYPOINT safely below a fresh directory inside PARENT_DIR
 * (pkgstore_archive_extract_file()), prints the extracted path and leaves
 * it for the caller to inspect and remove.
 */
#include <stdio.h>

#include "pkgstore.h"

int main(int argc, char **argv)
{
    char *dir = NULL, *file = NULL;
    if (argc != 4) {
        fprintf(stderr, "usage: archive_extract ARCHIVE PARENT_DIR ENTRYPOINT\n");
        return 2;
    }
    int error = pkgstore_archive_extract_file(&dir, &file, argv[1], argv[2], argv[3], NULL);
    if (error < 0) {
        fprintf(stderr, "archive_extract: %s: %s\n", pkgstore_strerror(error),
                pkgstore_error_detail());
        return 1;
    }
    printf("%s\n", file);
    pkgstore_free(dir);
    pkgstore_free(file);
    return 0;
}
