/*
 * archive_format: the artifact format names ("binary", "tar", "tar+gzip",
 * "tar+zstd", "tar+xz", "zip"), the one table of them in the library. Kept
 * apart from archive.c so that the manifest and registry code can name
 * formats without linking libarchive.
 */
#include <string.h>

#include "error.h"
#include "pkgstore/archive.h"

/* ------------------------------------------------------------ formats */

static const char *const format_names[] = {
    [PKGSTORE_ARCHIVE_UNKNOWN] = "unknown",   [PKGSTORE_ARCHIVE_BINARY] = "binary",
    [PKGSTORE_ARCHIVE_TAR] = "tar",           [PKGSTORE_ARCHIVE_TAR_GZIP] = "tar+gzip",
    [PKGSTORE_ARCHIVE_TAR_ZSTD] = "tar+zstd", [PKGSTORE_ARCHIVE_TAR_XZ] = "tar+xz",
    [PKGSTORE_ARCHIVE_ZIP] = "zip",
};

PKGSTORE_API const char *pkgstore_archive_format_name(pkgstore_archive_format format)
{
    if ((int)format < 0 || (size_t)format >= sizeof(format_names) / sizeof(format_names[0]))
        return "unknown";
    return format_names[format];
}

PKGSTORE_API int pkgstore_archive_format_parse(pkgstore_archive_format *out, const char *name)
{
    if (out)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    if (!out || !name)
        return ps_error_set(PKGSTORE_EINVALID, "format: NULL argument");
    for (int f = PKGSTORE_ARCHIVE_BINARY; f <= PKGSTORE_ARCHIVE_ZIP; f++) {
        if (strcmp(name, format_names[f]) == 0) {
            *out = (pkgstore_archive_format)f;
            return 0;
        }
    }
    return ps_error_set(PKGSTORE_EINVALID,
                        "format '%.64s': not one of binary, tar, tar+gzip, tar+zstd, tar+xz, zip",
                        name);
}

PKGSTORE_API int pkgstore_archive_format_is_archive(pkgstore_archive_format format)
{
    return format >= PKGSTORE_ARCHIVE_TAR && format <= PKGSTORE_ARCHIVE_ZIP;
}
