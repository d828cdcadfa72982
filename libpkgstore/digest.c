/*
 * digest: streaming SHA-256 through OpenSSL's EVP interface (which picks
 * SHA-NI or AVX2 code paths). The text form is in digest_text.c.
 */
#include "digest.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

struct pkgstore_digest_ctx {
    EVP_MD_CTX *md;
};

static int openssl_error(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return ps_error_set(PKGSTORE_EINTERNAL, "openssl: %s: %s", what, buf);
}

PKGSTORE_API int pkgstore_digest_ctx_new(pkgstore_digest_ctx **out)
{
    pkgstore_digest_ctx *ctx;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL output");
    *out = NULL;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "digest: allocating a context");
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL) {
        free(ctx);
        return ps_error_set(PKGSTORE_ENOMEM, "digest: EVP_MD_CTX_new failed");
    }
    if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        int error = openssl_error("EVP_DigestInit_ex");
        pkgstore_digest_ctx_free(ctx);
        return error;
    }
    *out = ctx;
    return 0;
}

PKGSTORE_API int pkgstore_digest_ctx_update(pkgstore_digest_ctx *ctx, const void *data, size_t len)
{
    if (ctx == NULL || (data == NULL && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL context or data");
    if (len > 0 && EVP_DigestUpdate(ctx->md, data, len) != 1)
        return openssl_error("EVP_DigestUpdate");
    return 0;
}

PKGSTORE_API int pkgstore_digest_ctx_final(pkgstore_digest *out, pkgstore_digest_ctx *ctx)
{
    unsigned int len = 0;
    if (out == NULL || ctx == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL context or output");
    if (EVP_DigestFinal_ex(ctx->md, out->bytes, &len) != 1 || len != PKGSTORE_DIGEST_SIZE) {
        memset(out, 0, sizeof(*out));
        return openssl_error("EVP_DigestFinal_ex");
    }
    if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
        return openssl_error("EVP_DigestInit_ex");
    return 0;
}

PKGSTORE_API void pkgstore_digest_ctx_free(pkgstore_digest_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

PKGSTORE_API int pkgstore_digest_buffer(pkgstore_digest *out, const void *data, size_t len)
{
    unsigned int md_len = 0;
    if (out == NULL || (data == NULL && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL data or output");
    if (EVP_Digest(data, len, out->bytes, &md_len, EVP_sha256(), NULL) != 1) {
        memset(out, 0, sizeof(*out));
        return openssl_error("EVP_Digest");
    }
    return 0;
}

#define READ_CHUNK (1u << 20)

PKGSTORE_API int pkgstore_digest_fd(pkgstore_digest *out, uint64_t *size_out, int fd)
{
    pkgstore_digest_ctx *ctx = NULL;
    unsigned char *buf = NULL;
    uint64_t total = 0;
    int error = 0;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (size_out != NULL)
        *size_out = 0;
    if (out == NULL || fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL output or bad fd");
    if ((error = pkgstore_digest_ctx_new(&ctx)) < 0)
        return error;
    buf = malloc(READ_CHUNK);
    if (buf == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "digest: allocating a read buffer");
        goto out;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            error = ps_error_errno(errno, "digest: read");
            if (error != PKGSTORE_ENOMEM)
                error = PKGSTORE_EIO;
            goto out;
        }
        if (n == 0)
            break;
        if ((error = pkgstore_digest_ctx_update(ctx, buf, (size_t)n)) < 0)
            goto out;
        total += (uint64_t)n;
    }
    if ((error = pkgstore_digest_ctx_final(out, ctx)) < 0)
        goto out;
    if (size_out != NULL)
        *size_out = total;
out:
    free(buf);
    pkgstore_digest_ctx_free(ctx);
    return error;
}

PKGSTORE_API int pkgstore_digest_file(pkgstore_digest *out, uint64_t *size_out, const char *path)
{
    int fd, error;
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (size_out != NULL)
        *size_out = 0;
    if (out == NULL || path == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL path or output");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s: open", path);
    error = pkgstore_digest_fd(out, size_out, fd);
    if (error < 0)
        ps_error_prefix("%s", path);
    close(fd);
    return error;
}
