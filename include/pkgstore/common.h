/*
 * pkgstore/common.h - export macro and library version.
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

/** The library's version, "MAJOR.MINOR.PATCH". Never NULL. */
PKGSTORE_API const char *pkgstore_version(void);

/** Free memory the library returned and documented as "free with
 * pkgstore_free()". Accepts NULL. */
PKGSTORE_API void pkgstore_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
