/*
 * digest: the "sha256:<64 lowercase hex>" text form: parse, validate,
 * format, compare. No OpenSSL here, so a program may link this part alone
 * (the resident pkgstore-agent does).
 */
#include "digest.h"
#include "error.h"

#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

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
