/*
 * pkgstore/common.h - export macro, versions, and pkgstore_free().
 */
#ifndef PKGSTORE_COMMON_H
#define PKGSTORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PKGSTORE_BUILDING_LIBRARY) && defined(__GNUC__)
#define PKGSTORE_API __attribute__((visibility("default")))
#else
#define PKGSTORE_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PKGSTORE_DEPRECATED(advice) __attribute__((deprecated(advice)))
#else
#define PKGSTORE_DEPRECATED(advice)
#endif

/*
 * The version of these headers, known at compile time. The library a
 * program runs with may be newer: pkgstore_library_version() says which.
 * PKGSTORE_VERSION_NUMBER orders versions (MAJOR * 10000 + MINOR * 100 +
 * PATCH), e.g. "#if PKGSTORE_VERSION_NUMBER >= 200".
 */
#define PKGSTORE_VERSION_MAJOR 0
#define PKGSTORE_VERSION_MINOR 1
#define PKGSTORE_VERSION_PATCH 0
#define PKGSTORE_VERSION_NUMBER \
    (PKGSTORE_VERSION_MAJOR * 10000 + PKGSTORE_VERSION_MINOR * 100 + PKGSTORE_VERSION_PATCH)
#define PKGSTORE_VERSION_TEXT_(n) #n
#define PKGSTORE_VERSION_EXPAND_(n) PKGSTORE_VERSION_TEXT_(n)
/** "MAJOR.MINOR.PATCH" of these headers, e.g. "0.1.0". */
#define PKGSTORE_VERSION_STRING                                                   \
    PKGSTORE_VERSION_EXPAND_(PKGSTORE_VERSION_MAJOR) "." PKGSTORE_VERSION_EXPAND_( \
        PKGSTORE_VERSION_MINOR) "." PKGSTORE_VERSION_EXPAND_(PKGSTORE_VERSION_PATCH)

/** The running library's version, "MAJOR.MINOR.PATCH" (compare with
 * PKGSTORE_VERSION_STRING, the headers'). Never NULL; static storage. */
PKGSTORE_API const char *pkgstore_library_version(void);

/** Deprecated alias of pkgstore_library_version(), kept for the 0.1
 * release series and removed after it: its name read as one of the
 * pkgstore_version_* SemVer functions (pkgstore/version.h). */
PKGSTORE_API const char *pkgstore_version(void)
    PKGSTORE_DEPRECATED("use pkgstore_library_version()");

/** Free memory the library returned and documented as "free with
 * pkgstore_free()". Accepts NULL. */
PKGSTORE_API void pkgstore_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
