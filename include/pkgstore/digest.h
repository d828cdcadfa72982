/*
 * pkgstore/digest.h - the "sha256:<64 lowercase hex>" form and streaming
 * SHA-256 over OpenSSL EVP.
 */
#ifndef PKGSTORE_DIGEST_H
#define PKGSTORE_DIGEST_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PKGSTORE_DIGEST_SIZE     32  /* raw bytes */
#define PKGSTORE_DIGEST_HEX_LEN  64  /* hex characters */
#define PKGSTORE_DIGEST_PREFIX   "sha256:"
/* Buffer size for the string form including its NUL: "sha256:" + 64 + 1. */
#define PKGSTORE_DIGEST_STR_SIZE 72

/** A SHA-256 digest. A small value: copy it freely. */
typedef struct pkgstore_digest {
    unsigned char bytes[PKGSTORE_DIGEST_SIZE];
} pkgstore_digest;

/**
 * Parse "sha256:<64 lowercase hex>" into *out.
 * Errors: PKGSTORE_EINVALID with a detail saying what is wrong: NULL, a
 * missing "sha256:" prefix, another algorithm ("sha512:..."), a wrong
 * length, upper-case hex or a non-hex character (with its position).
 * On failure *out is zeroed.
 */
PKGSTORE_API int pkgstore_digest_parse(pkgstore_digest *out, const char *str);

/** Parse the 64 lowercase hex characters alone (no prefix). Same errors. */
PKGSTORE_API int pkgstore_digest_parse_hex(pkgstore_digest *out, const char *hex);

/** 0 if str is a valid "sha256:<hex>" digest, else PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_digest_validate(const char *str);

/** Write "sha256:<hex>" and a NUL into out (PKGSTORE_DIGEST_STR_SIZE bytes). */
PKGSTORE_API void pkgstore_digest_format(char out[PKGSTORE_DIGEST_STR_SIZE],
                                         const pkgstore_digest *digest);

/** Write the 64 hex characters and a NUL into out (65 bytes). */
PKGSTORE_API void pkgstore_digest_format_hex(char out[PKGSTORE_DIGEST_HEX_LEN + 1],
                                             const pkgstore_digest *digest);

/** 1 if equal, 0 if not. Constant time. */
PKGSTORE_API int pkgstore_digest_equal(const pkgstore_digest *a, const pkgstore_digest *b);

/** Streaming SHA-256 context (opaque). */
typedef struct pkgstore_digest_ctx pkgstore_digest_ctx;

/**
 * Create a streaming SHA-256 context in *out; free it with
 * pkgstore_digest_ctx_free(). Errors: PKGSTORE_ENOMEM, PKGSTORE_EINTERNAL
 * (OpenSSL failure, quoted in the detail).
 */
PKGSTORE_API int pkgstore_digest_ctx_new(pkgstore_digest_ctx **out);

/** Feed len bytes. Errors: PKGSTORE_EINVALID, PKGSTORE_EINTERNAL. */
PKGSTORE_API int pkgstore_digest_ctx_update(pkgstore_digest_ctx *ctx, const void *data, size_t len);

/**
 * Finish into *out and reset ctx so it can hash a new stream.
 * Errors: PKGSTORE_EINVALID, PKGSTORE_EINTERNAL.
 */
PKGSTORE_API int pkgstore_digest_ctx_final(pkgstore_digest *out, pkgstore_digest_ctx *ctx);

/** Free a context. Accepts NULL. */
PKGSTORE_API void pkgstore_digest_ctx_free(pkgstore_digest_ctx *ctx);

/** SHA-256 of a buffer. Errors: PKGSTORE_EINVALID, PKGSTORE_EINTERNAL. */
PKGSTORE_API int pkgstore_digest_buffer(pkgstore_digest *out, const void *data, size_t len);

/**
 * SHA-256 of everything readable from fd, from its current offset to EOF.
 * *size_out (may be NULL) receives the number of bytes hashed.
 * Errors: PKGSTORE_EIO (read failure, errno text in the detail),
 * PKGSTORE_EINVALID, PKGSTORE_EINTERNAL.
 */
PKGSTORE_API int pkgstore_digest_fd(pkgstore_digest *out, uint64_t *size_out, int fd);

/**
 * SHA-256 of a whole file. Errors: as pkgstore_digest_fd(), plus
 * PKGSTORE_ENOTFOUND and PKGSTORE_EDENIED when it cannot be opened.
 */
PKGSTORE_API int pkgstore_digest_file(pkgstore_digest *out, uint64_t *size_out, const char *path);

#ifdef __cplusplus
}
#endif

#endif
