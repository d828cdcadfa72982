/*
 * digest: the "sha256:<64 lowercase hex>" text form and streaming SHA-256
 * through OpenSSL's EVP interface (which picks SHA-NI or AVX2 code paths).
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

static const char hex_digits[] = "0123456789abcdef";

static int openssl_error(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return ps_error_set(PKGSTORE_EINTERNAL, "openssl: %s: %s", what, buf);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

PKGSTORE_API int pkgstore_digest_parse_hex(pkgstore_digest *out, const char *hex)
{
    size_t len;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL output");
    memset(out, 0, sizeof(*out));
    if (hex == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL input");
    len = strnlen(hex, PKGSTORE_DIGEST_HEX_LEN + 1);
    for (size_t i = 0; i < len && i < PKGSTORE_DIGEST_HEX_LEN; i++) {
        char c = hex[i];
        if (c >= 'A' && c <= 'F') {
            memset(out, 0, sizeof(*out));
            return ps_error_set(PKGSTORE_EINVALID,
                                "digest: upper-case hex '%c' at position %zu; digests are lower case",
                                c, i);
        }
        if (hex_value(c) < 0) {
            memset(out, 0, sizeof(*out));
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                return ps_error_set(PKGSTORE_EINVALID,
                                    "digest: non-hex byte 0x%02x at position %zu",
                                    (unsigned char)c, i);
            return ps_error_set(PKGSTORE_EINVALID, "digest: non-hex character '%c' at position %zu",
                                c, i);
        }
        if (i % 2 == 1)
            out->bytes[i / 2] = (unsigned char)((hex_value(hex[i - 1]) << 4) | hex_value(c));
    }
    if (len != PKGSTORE_DIGEST_HEX_LEN) {
        memset(out, 0, sizeof(*out));
        if (len > PKGSTORE_DIGEST_HEX_LEN)
            return ps_error_set(PKGSTORE_EINVALID,
                                "digest: too long: more than %d hex characters",
                                PKGSTORE_DIGEST_HEX_LEN);
        return ps_error_set(PKGSTORE_EINVALID, "digest: wrong length: %zu hex characters, want %d",
                            len, PKGSTORE_DIGEST_HEX_LEN);
    }
    return 0;
}

PKGSTORE_API int pkgstore_digest_parse(pkgstore_digest *out, const char *str)
{
    static const char prefix[] = PKGSTORE_DIGEST_PREFIX;
    const size_t prefix_len = sizeof(prefix) - 1;
    const char *colon;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL output");
    memset(out, 0, sizeof(*out));
    if (str == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "digest: NULL input");
    if (strncmp(str, prefix, prefix_len) == 0)
        return pkgstore_digest_parse_hex(out, str + prefix_len);
    colon = strchr(str, ':');
    if (colon != NULL && colon != str && colon - str <= 16) {
        if (strncasecmp(str, prefix, prefix_len) == 0)
            return ps_error_set(PKGSTORE_EINVALID,
                                "digest: algorithm must be written in lower case as \"sha256:\"");
        return ps_error_set(PKGSTORE_EINVALID,
                            "digest: unsupported algorithm \"%.*s\"; only sha256 is supported",
                            (int)(colon - str), str);
    }
    return ps_error_set(PKGSTORE_EINVALID,
                        "digest: missing \"sha256:\" prefix; expected sha256:<64 lowercase hex>");
}

PKGSTORE_API int pkgstore_digest_validate(const char *str)
{
    pkgstore_digest scratch;
    return pkgstore_digest_parse(&scratch, str);
}

PKGSTORE_API void pkgstore_digest_format_hex(char out[PKGSTORE_DIGEST_HEX_LEN + 1],
                                             const pkgstore_digest *digest)
{
    for (size_t i = 0; i < PKGSTORE_DIGEST_SIZE; i++) {
        out[2 * i] = hex_digits[digest->bytes[i] >> 4];
        out[2 * i + 1] = hex_digits[digest->bytes[i] & 0xf];
    }
    out[PKGSTORE_DIGEST_HEX_LEN] = '\0';
}

PKGSTORE_API void pkgstore_digest_format(char out[PKGSTORE_DIGEST_STR_SIZE],
                                         const pkgstore_digest *digest)
{
    memcpy(out, PKGSTORE_DIGEST_PREFIX, sizeof(PKGSTORE_DIGEST_PREFIX) - 1);
    pkgstore_digest_format_hex(out + sizeof(PKGSTORE_DIGEST_PREFIX) - 1, digest);
}

PKGSTORE_API int pkgstore_digest_equal(const pkgstore_digest *a, const pkgstore_digest *b)
{
    unsigned char diff = 0;
    for (size_t i = 0; i < PKGSTORE_DIGEST_SIZE; i++)
        diff |= a->bytes[i] ^ b->bytes[i];
    return diff == 0;
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
