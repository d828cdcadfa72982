/*
 * pkgstore/error.h - error codes and the thread-local detail message.
 *
 * Every fallible function returns 0 on success or one of the negative codes
 * below. Right after a failure, pkgstore_error_detail() names the object and
 * the cause, for example
 *   "blobs/sha256/ab/ab12...: fsync: No space left on device".
 */
#ifndef PKGSTORE_ERROR_H
#define PKGSTORE_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X(NAME, value, message). Numbers never change; new codes go at the end.
 */
#define PKGSTORE_ERROR_LIST(X)                                              \
    X(OK,               0, "success")                                       \
    X(ENOTFOUND,       -1, "not found")                                     \
    X(EEXISTS,         -2, "already exists")                                \
    X(EINVALID,        -3, "invalid argument")                              \
    X(ENOMEM,          -4, "out of memory")                                 \
    X(EIO,             -5, "input/output error")                            \
    X(ENOSPC,          -6, "no space left on device")                       \
    X(EDIGEST_MISMATCH, -7, "digest mismatch")                              \
    X(ESIZE_MISMATCH,  -8, "size mismatch")                                 \
    X(ECORRUPT,        -9, "corrupt data")                                  \
    X(EFORMAT,        -10, "unsupported or malformed format")               \
    X(ELOCKED,        -11, "locked by another process")                     \
    X(EUNSUPPORTED,   -12, "unsupported operation")                         \
    X(EDENIED,        -13, "permission denied")                             \
    X(ENET,           -14, "network error")                                 \
    X(ELIMIT,         -15, "limit exceeded")                                \
    X(EUNSAFE,        -16, "unsafe content refused")                        \
    X(EDEPENDENCY,    -17, "unmet dependency")                              \
    X(ECONFLICT,      -18, "conflicts with existing state")                 \
    X(ETIMEOUT,       -19, "timed out")                                     \
    X(EINTERNAL,      -20, "internal error")

typedef enum pkgstore_error_code {
#define PKGSTORE_ERROR_ENUM_(name, value, message) PKGSTORE_##name = (value),
    PKGSTORE_ERROR_LIST(PKGSTORE_ERROR_ENUM_)
#undef PKGSTORE_ERROR_ENUM_
} pkgstore_error_code;

/**
 * The fixed message of an error code, e.g. "digest mismatch".
 * Unknown codes give "unknown error". Never NULL; static storage.
 */
PKGSTORE_API const char *pkgstore_strerror(int code);

/**
 * The code's symbolic name without the PKGSTORE_E prefix, e.g.
 * "DIGEST_MISMATCH" (used in JSON error bodies). Never NULL; static storage.
 */
PKGSTORE_API const char *pkgstore_error_name(int code);

/**
 * The detail message of the last failure on this thread, or "" when there
 * is none. Valid until the next library call on this thread.
 */
PKGSTORE_API const char *pkgstore_error_detail(void);

/** Forget the detail message of this thread. */
PKGSTORE_API void pkgstore_error_clear(void);

#ifdef __cplusplus
}
#endif

#endif
