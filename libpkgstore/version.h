/*
 * Private: lexing helpers shared by version.c and version_constraint.c.
 * Positions are 0-based byte offsets into str (len bytes, no NUL needed).
 */
#ifndef PS_VERSION_H
#define PS_VERSION_H

#include "pkgstore/version.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool ps_version_is_digit(char c);

/* Set "<what>: <reason> at position N (<char>) in "<excerpt>"" with the
 * byte at pos in brackets, and return PKGSTORE_EINVALID. */
int ps_version_syntax_error(const char *what, const char *str, size_t len, size_t pos,
                            const char *reason);

/* Parse a decimal number without leading zeros at str[*pos] into *out,
 * advancing *pos; field ("major", ...) names it in errors. */
int ps_version_parse_number(uint64_t *out, const char *what, const char *str, size_t len,
                            size_t *pos, const char *field);

/* Parse dot-separated [0-9A-Za-z-]+ identifiers at str[*pos] into out
 * (max characters plus a NUL), advancing *pos. Numeric pre-release
 * identifiers may not have leading zeros. */
int ps_version_parse_identifiers(char *out, size_t max, const char *what, const char *str,
                                 size_t len, size_t *pos, bool prerelease);

/* Precedence of two non-empty pre-release strings (SemVer 11.4). */
int ps_version_compare_prerelease(const char *a, const char *b);

/* pkgstore_version_compare(), inlined into the constraint matcher: resolve
 * runs it millions of times per second, mostly deciding on the numbers. */
static inline int ps_version_compare(const pkgstore_semver *a, const pkgstore_semver *b)
{
    if (a->major != b->major)
        return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor)
        return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch)
        return a->patch < b->patch ? -1 : 1;
    if (a->prerelease[0] == '\0' || b->prerelease[0] == '\0') {
        if (a->prerelease[0] == b->prerelease[0])
            return 0;
        return a->prerelease[0] == '\0' ? 1 : -1;
    }
    return ps_version_compare_prerelease(a->prerelease, b->prerelease);
}

#endif
