/*
 * Private: setting the thread-local error detail.
 */
#ifndef PS_ERROR_H
#define PS_ERROR_H

#include <stddef.h>

#include "pkgstore/error.h"

#if defined(__GNUC__)
#define PS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PS_PRINTF(a, b)
#endif

/* Set the detail from a format and return code (so callers can
 * "return ps_error_set(PKGSTORE_EINVALID, ...)"). */
int ps_error_set(int code, const char *fmt, ...) PS_PRINTF(2, 3);

/* Map errno value err to a code (ENOSPC/EDQUOT -> ENOSPC, ENOENT/ENOTDIR ->
 * ENOTFOUND, EEXIST -> EEXISTS, EACCES/EPERM/EROFS -> EDENIED, ENOMEM ->
 * ENOMEM, EWOULDBLOCK -> ELOCKED, EINVAL/ENAMETOOLONG -> EINVALID, else
 * EIO), set the detail to "<formatted>: <strerror(err)>" and return it. */
int ps_error_errno(int err, const char *fmt, ...) PS_PRINTF(2, 3);

/* The text of errno value err (strerror_r: safe in any thread), in buf or
 * in static storage; never NULL. */
const char *ps_error_errno_text(int err, char *buf, size_t size);

/* The code errno value err maps to, without touching the detail. */
int ps_error_code_from_errno(int err);

/* 0 when an options struct's version is one this library reads, 1 up to
 * current; else PKGSTORE_EINVALID with a detail naming what and the
 * versions it takes. */
int ps_options_version(const char *what, unsigned int version, unsigned int current);

/* The start of every pkgstore_*_options_init(): check opts and version as
 * above, zero size bytes of opts (the size of that version's struct) and
 * set its leading version field. The caller then fills in the defaults. */
int ps_options_init(void *opts, size_t size, const char *what, unsigned int version,
                    unsigned int current);

/* Prepend "prefix: " to the current detail (adds context on the way up). */
void ps_error_prefix(const char *fmt, ...) PS_PRINTF(1, 2);

#endif
