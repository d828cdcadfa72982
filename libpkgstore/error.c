/*
 * error: the code table (one X-macro list gives the enum, the messages and
 * the names) and the thread-local detail message.
 */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_SIZE 1024

static _Thread_local char detail[DETAIL_SIZE];

PKGSTORE_API const char *pkgstore_library_version(void)
{
    return PKGSTORE_VERSION_STRING;
}

PKGSTORE_API const char *pkgstore_version(void)
{
    return pkgstore_library_version();
}

PKGSTORE_API void pkgstore_free(void *ptr)
{
    free(ptr);
}

PKGSTORE_API const char *pkgstore_strerror(int code)
{
    switch (code) {
#define MESSAGE_CASE(name, value, message) case value: return message;
        PKGSTORE_ERROR_LIST(MESSAGE_CASE)
#undef MESSAGE_CASE
    }
    return "unknown error";
}

PKGSTORE_API const char *pkgstore_error_name(int code)
{
    /* Names without the leading "E" of the enum suffix: "DIGEST_MISMATCH". */
    switch (code) {
#define NAME_CASE(name, value, message) case value: return (#name)[0] == 'E' ? (#name) + 1 : (#name);
        PKGSTORE_ERROR_LIST(NAME_CASE)
#undef NAME_CASE
    }
    return "UNKNOWN";
}

PKGSTORE_API const char *pkgstore_error_detail(void)
{
    return detail;
}

PKGSTORE_API void pkgstore_error_clear(void)
{
    detail[0] = '\0';
}

int ps_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return code;
}

int ps_error_code_from_errno(int err)
{
    switch (err) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return PKGSTORE_ENOSPC;
    case ENOENT:
    case ENOTDIR:
        return PKGSTORE_ENOTFOUND;
    case EEXIST:
        return PKGSTORE_EEXISTS;
    case EACCES:
    case EPERM:
    case EROFS:
        return PKGSTORE_EDENIED;
    case ENOMEM:
        return PKGSTORE_ENOMEM;
    case EWOULDBLOCK:
        return PKGSTORE_ELOCKED;
    case EINVAL:
    case ENAMETOOLONG:
        return PKGSTORE_EINVALID;
    default:
        return PKGSTORE_EIO;
    }
}

const char *ps_error_errno_text(int err, char *buf, size_t size)
{
    /* strerror() may share one buffer between threads; strerror_r() comes
     * in two flavours, the GNU one with _GNU_SOURCE (as we build). */
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, buf, size);
#else
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
#endif
}

int ps_error_errno(int err, const char *fmt, ...)
{
    char text[256];
    size_t used;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    used = strlen(detail);
    snprintf(detail + used, sizeof(detail) - used, ": %s",
             ps_error_errno_text(err, text, sizeof(text)));
    return ps_error_code_from_errno(err);
}

void ps_error_prefix(const char *fmt, ...)
{
    char old[DETAIL_SIZE];
    size_t used;
    va_list ap;
    memcpy(old, detail, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    used = strlen(detail);
    /* Append ": old", truncated to fit (memcpy, not snprintf: GCC's
     * -Wformat-truncation rejects a 1 KiB %s into what is left). */
    if (old[0] != '\0' && used + 3 < sizeof(detail)) {
        size_t n = strnlen(old, sizeof(detail) - used - 3);
        memcpy(detail + used, ": ", 2);
        memcpy(detail + used + 2, old, n);
        detail[used + 2 + n] = '\0';
    }
}

int ps_options_version(const char *what, unsigned int version, unsigned int current)
{
    if (version >= 1 && version <= current)
        return 0;
    return ps_error_set(PKGSTORE_EINVALID,
                        "%s options: version %u is not one this library reads (1 to %u); start "
                        "from the _OPTIONS_INIT macro or the _options_init() function",
                        what, version, current);
}

int ps_options_init(void *opts, size_t size, const char *what, unsigned int version,
                    unsigned int current)
{
    int error;
    if (!opts)
        return ps_error_set(PKGSTORE_EINVALID, "%s options: NULL", what);
    if ((error = ps_options_version(what, version, current)) < 0)
        return error;
    memset(opts, 0, size);
    memcpy(opts, &version, sizeof(version)); /* every options struct starts with it */
    return 0;
}
