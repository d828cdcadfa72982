/*
 * version: Semantic Versioning 2.0.0 values: parse, format and precedence.
 * Constraints live in version_constraint.c; the lexing helpers both use
 * (numbers, identifiers, positioned syntax errors) are shared through the
 * private version.h.
 */
#include "pkgstore/version.h"
#include "version.h"
#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ps_version_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
    return ps_version_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Describe the byte at str[pos] for an error message. */
static const char *describe_char(char buf[16], const char *str, size_t len, size_t pos)
{
    unsigned char c;
    if (pos >= len)
        return "end of input";
    c = (unsigned char)str[pos];
    if (c > 0x20 && c < 0x7f) {
        buf[0] = '\'';
        buf[1] = (char)c;
        buf[2] = '\'';
        buf[3] = '\0';
    } else if (c == ' ') {
        strcpy(buf, "a space");
    } else {
        static const char hex[] = "0123456789abcdef";
        strcpy(buf, "byte 0x");
        buf[7] = hex[c >> 4];
        buf[8] = hex[c & 0xf];
        buf[9] = '\0';
    }
    return buf;
}

/* Print str (at most 64 bytes around pos) with the byte at pos (or the end)
 * in brackets: ">=1.2 [<]<1.3". Non-printable bytes become '?'. */
static void excerpt(char *out, size_t out_size, const char *str, size_t len, size_t pos)
{
    size_t start = pos > 40 ? pos - 40 : 0;
    size_t end = len - pos > 24 ? pos + 24 : len;
    size_t o = 0;
    if (start > 0 && o + 3 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    for (size_t i = start; i <= end && o + 8 < out_size; i++) {
        if (i == pos)
            out[o++] = '[';
        if (i < end) {
            unsigned char c = (unsigned char)str[i];
            out[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
        }
        if (i == pos)
            out[o++] = ']';
    }
    if (end < len && o + 4 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int ps_version_syntax_error(const char *what, const char *str, size_t len, size_t pos,
                        const char *reason)
{
    char cbuf[16], ex[160];
    excerpt(ex, sizeof(ex), str, len, pos);
    return ps_error_set(PKGSTORE_EINVALID, "%s: %s at position %zu (%s) in \"%s\"", what, reason, pos,
                        describe_char(cbuf, str, len, pos), ex);
}

/* Parse a decimal number without leading zeros at str[*pos]. */
int ps_version_parse_number(uint64_t *out, const char *what, const char *str, size_t len,
                        size_t *pos, const char *field)
{
    size_t start = *pos;
    uint64_t value = 0;
    char reason[64];
    if (start >= len || !ps_version_is_digit(str[start])) {
        snprintf(reason, sizeof(reason), "expected the %s number", field);
        return ps_version_syntax_error(what, str, len, start, reason);
    }
    if (str[start] == '0' && start + 1 < len && ps_version_is_digit(str[start + 1])) {
        snprintf(reason, sizeof(reason), "leading zero in the %s number", field);
        return ps_version_syntax_error(what, str, len, start, reason);
    }
    while (*pos < len && ps_version_is_digit(str[*pos])) {
        unsigned digit = (unsigned)(str[*pos] - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            snprintf(reason, sizeof(reason), "the %s number is larger than 18446744073709551615",
                     field);
            return ps_version_syntax_error(what, str, len, start, reason);
        }
        value = value * 10 + digit;
        (*pos)++;
    }
    *out = value;
    return 0;
}

/*
 * Parse dot-separated identifiers at str[*pos] up to the first byte that is
 * neither an identifier character nor a dot, into out (size max + 1).
 * Pre-release identifiers must not be numeric with a leading zero.
 */
int ps_version_parse_identifiers(char *out, size_t max, const char *what, const char *str, size_t len,
                             size_t *pos, bool prerelease)
{
    const char *field = prerelease ? "pre-release" : "build metadata";
    size_t start = *pos;
    char reason[96];
    for (;;) {
        size_t ident = *pos;
        bool numeric = true;
        while (*pos < len && is_ident_char(str[*pos])) {
            if (!ps_version_is_digit(str[*pos]))
                numeric = false;
            (*pos)++;
        }
        if (*pos == ident) {
            snprintf(reason, sizeof(reason), "empty %s identifier", field);
            return ps_version_syntax_error(what, str, len, *pos, reason);
        }
        if (prerelease && numeric && str[ident] == '0' && *pos - ident > 1) {
            snprintf(reason, sizeof(reason), "leading zero in a numeric %s identifier", field);
            return ps_version_syntax_error(what, str, len, ident, reason);
        }
        if (*pos < len && str[*pos] == '.') {
            (*pos)++;
            continue;
        }
        break;
    }
    if (*pos - start > max) {
        return ps_error_set(PKGSTORE_EINVALID, "%s: %s longer than %zu characters", what, field,
                            max);
    }
    memcpy(out, str + start, *pos - start);
    out[*pos - start] = '\0';
    return 0;
}

/* Parse a complete version at str[*pos]; stops at the first byte that cannot
 * continue it (the caller decides whether trailing bytes are an error). */
static int parse_version_at(pkgstore_semver *out, const char *what, const char *str, size_t len,
                            size_t *pos)
{
    int error;
    if (*pos < len && (str[*pos] == 'v' || str[*pos] == 'V'))
        (*pos)++;
    if ((error = ps_version_parse_number(&out->major, what, str, len, pos, "major")) < 0)
        return error;
    if (*pos >= len || str[*pos] != '.')
        return ps_version_syntax_error(what, str, len, *pos, "expected '.' after the major number");
    (*pos)++;
    if ((error = ps_version_parse_number(&out->minor, what, str, len, pos, "minor")) < 0)
        return error;
    if (*pos >= len || str[*pos] != '.')
        return ps_version_syntax_error(what, str, len, *pos, "expected '.' after the minor number");
    (*pos)++;
    if ((error = ps_version_parse_number(&out->patch, what, str, len, pos, "patch")) < 0)
        return error;
    if (*pos < len && str[*pos] == '-') {
        (*pos)++;
        if ((error = ps_version_parse_identifiers(out->prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX, what, str,
                                       len, pos, true)) < 0)
            return error;
    }
    if (*pos < len && str[*pos] == '+') {
        (*pos)++;
        if ((error = ps_version_parse_identifiers(out->build, PKGSTORE_SEMVER_BUILD_MAX, what, str, len, pos,
                                       false)) < 0)
            return error;
    }
    return 0;
}

PKGSTORE_API int pkgstore_version_parse_n(pkgstore_semver *out, const char *str, size_t len)
{
    size_t pos = 0;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL output");
    memset(out, 0, sizeof(*out));
    if (str == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL input");
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "version: empty string");
    if ((error = parse_version_at(out, "version", str, len, &pos)) < 0)
        goto fail;
    if (pos != len) {
        error = ps_version_syntax_error("version", str, len, pos,
                             "expected '-', '+' or the end after the version");
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return error;
}

PKGSTORE_API int pkgstore_version_parse(pkgstore_semver *out, const char *str)
{
    if (str == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL input");
    }
    return pkgstore_version_parse_n(out, str, strlen(str));
}

static size_t format_u64(char *out, uint64_t value)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

PKGSTORE_API size_t pkgstore_version_format(char out[PKGSTORE_SEMVER_STR_SIZE],
                                            const pkgstore_semver *version)
{
    size_t o = 0, n;
    o += format_u64(out + o, version->major);
    out[o++] = '.';
    o += format_u64(out + o, version->minor);
    out[o++] = '.';
    o += format_u64(out + o, version->patch);
    n = strnlen(version->prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX);
    if (n > 0) {
        out[o++] = '-';
        memcpy(out + o, version->prerelease, n);
        o += n;
    }
    n = strnlen(version->build, PKGSTORE_SEMVER_BUILD_MAX);
    if (n > 0) {
        out[o++] = '+';
        memcpy(out + o, version->build, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* Compare dot-separated pre-release identifier lists per SemVer 11.4. */
int ps_version_compare_prerelease(const char *a, const char *b)
{
    for (;;) {
        size_t alen = strcspn(a, "."), blen = strcspn(b, ".");
        bool anum = true, bnum = true;
        int cmp;
        for (size_t i = 0; i < alen; i++)
            if (!ps_version_is_digit(a[i])) {
                anum = false;
                break;
            }
        for (size_t i = 0; i < blen; i++)
            if (!ps_version_is_digit(b[i])) {
                bnum = false;
                break;
            }
        if (anum && bnum) {
            /* No leading zeros: the longer number is the larger one. */
            if (alen != blen)
                return alen < blen ? -1 : 1;
            cmp = memcmp(a, b, alen);
        } else if (anum != bnum) {
            return anum ? -1 : 1;
        } else {
            cmp = memcmp(a, b, alen < blen ? alen : blen);
            if (cmp == 0 && alen != blen)
                cmp = alen < blen ? -1 : 1;
        }
        if (cmp != 0)
            return cmp < 0 ? -1 : 1;
        a += alen;
        b += blen;
        if (*a == '\0' || *b == '\0')
            return (*a == '\0') == (*b == '\0') ? 0 : (*a == '\0' ? -1 : 1);
        a++;
        b++;
    }
}

PKGSTORE_API int pkgstore_version_compare(const pkgstore_semver *a, const pkgstore_semver *b)
{
    return ps_version_compare(a, b);
}

PKGSTORE_API int pkgstore_version_is_prerelease(const pkgstore_semver *version)
{
    return version != NULL && version->prerelease[0] != '\0';
}
