/*
 * pkgstore/version.h - Semantic Versioning 2.0.0 values, precedence and
 * constraints such as ">=0.90.0 <1.0.0", "^0.98", "~1.2", "1.x || 2.x".
 *
 * A pkgstore_semver is a small value: parse once, then copy and compare it
 * freely. Comparing never allocates and never re-parses numbers.
 * docs/versions.md is the reference for the grammar and the semantics.
 */
#ifndef PKGSTORE_VERSION_H
#define PKGSTORE_VERSION_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest pre-release and build metadata, in characters (without the '-'
 * or '+'); longer ones are refused with PKGSTORE_EINVALID. */
#define PKGSTORE_SEMVER_PRERELEASE_MAX 127
#define PKGSTORE_SEMVER_BUILD_MAX      127
/* Buffer size that holds any formatted version and its NUL:
 * 3 * 20 digits + 2 dots + "-" pre-release + "+" build + NUL. */
#define PKGSTORE_SEMVER_STR_SIZE 320

/**
 * A parsed version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]. The pre-release
 * and build strings are stored without their '-' and '+' and are "" when
 * absent. Needs no free.
 */
typedef struct pkgstore_semver {
    uint64_t major;
    uint64_t minor;
    uint64_t patch;
    char prerelease[PKGSTORE_SEMVER_PRERELEASE_MAX + 1];
    char build[PKGSTORE_SEMVER_BUILD_MAX + 1];
} pkgstore_semver;

/**
 * Parse a SemVer 2.0.0 string into *out. One leading 'v' or 'V' is accepted
 * and dropped ("v1.2.3" is 1.2.3). Nothing else is tolerated: no spaces, no
 * partial versions, no leading zeros in numbers or numeric pre-release
 * identifiers, no empty identifiers, numbers up to UINT64_MAX.
 * Errors: PKGSTORE_EINVALID, with a detail naming the position of the
 * offending character. On failure *out is zeroed.
 */
PKGSTORE_API int pkgstore_version_parse(pkgstore_semver *out, const char *str);

/** As pkgstore_version_parse() on the len bytes at str (no NUL needed; an
 * embedded NUL is an invalid character). */
PKGSTORE_API int pkgstore_version_parse_n(pkgstore_semver *out, const char *str, size_t len);

/** Write the canonical form "1.2.3[-pre][+build]" (no 'v') and a NUL into
 * out. Returns the length written. */
PKGSTORE_API size_t pkgstore_version_format(char out[PKGSTORE_SEMVER_STR_SIZE],
                                            const pkgstore_semver *version);

/**
 * Compare by SemVer precedence: <0 if a < b, 0 if equal, >0 if a > b.
 * Build metadata is ignored (1.0.0+a == 1.0.0+b). A pre-release is lower
 * than its release; identifiers compare numerically when both are numeric,
 * else in ASCII order, numeric below alphanumeric, and a shorter list is
 * lower when all preceding identifiers are equal. Both must be non-NULL.
 */
PKGSTORE_API int pkgstore_version_compare(const pkgstore_semver *a, const pkgstore_semver *b);

/** 1 if the version has a pre-release part, else 0. */
PKGSTORE_API int pkgstore_version_is_prerelease(const pkgstore_semver *version);

/** A compiled constraint (opaque). Immutable once parsed: it may be shared
 * by threads for matching. */
typedef struct pkgstore_version_constraint pkgstore_version_constraint;

/* Limits on constraint text. */
#define PKGSTORE_VERSION_CONSTRAINT_MAX_LEN   4096 /* bytes */
#define PKGSTORE_VERSION_CONSTRAINT_MAX_TERMS 256  /* comparators in total */

/**
 * Compile a constraint into *out; free it with
 * pkgstore_version_constraint_free().
 *
 * Grammar (docs/versions.md): alternatives separated by "||"; each is one
 * or more comparators separated by spaces (or commas), all of which must
 * hold. A comparator is an optional operator (=, !=, >, >=, <, <=, ^, ~)
 * followed by a full or partial version with optional 'v' and the x, X, *
 * wildcards: "1.2.3", "1.2", "1", "1.2.x", "1.x", "*". An alternative may
 * instead be a hyphen range: "1.2.3 - 2.3.4" = >=1.2.3 <=2.3.4.
 *   ^1.2.3 = >=1.2.3 <2.0.0     ^0.98 = >=0.98.0 <0.99.0   ^0.0.3 = =0.0.3
 *   ~1.2.3 = >=1.2.3 <1.3.0     ~1.2  = >=1.2.0 <1.3.0     ~1 = >=1.0.0 <2.0.0
 *   1.2 = 1.2.x = >=1.2.0 <1.3.0      >1.2 = >=1.3.0      <=1.2 = <1.3.0
 * Pre-release versions match only when a comparator of the same
 * alternative names a pre-release of the same MAJOR.MINOR.PATCH (the npm
 * rule), so ">=1.0.0" does not match 2.0.0-rc.1 but ">=2.0.0-rc.0" does.
 *
 * Errors: PKGSTORE_EINVALID (detail: the reason, the 0-based position and
 * an excerpt with the offending character in brackets, e.g. "constraint:
 * expected the major number or a wildcard at position 7 ('<') in
 * \">=1.2 <[<]1.3\""),
 * PKGSTORE_ELIMIT (longer than PKGSTORE_VERSION_CONSTRAINT_MAX_LEN or more
 * than PKGSTORE_VERSION_CONSTRAINT_MAX_TERMS comparators), PKGSTORE_ENOMEM.
 * On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_version_constraint_parse(pkgstore_version_constraint **out,
                                                   const char *str);

/**
 * 1 if version satisfies the constraint, 0 if not (also when either is
 * NULL). Never allocates, never fails.
 */
PKGSTORE_API int pkgstore_version_constraint_match(const pkgstore_version_constraint *constraint,
                                                   const pkgstore_semver *version);

/** The constraint text as it was given to parse. Valid until free. */
PKGSTORE_API const char *pkgstore_version_constraint_string(
    const pkgstore_version_constraint *constraint);

/** Free a constraint. Accepts NULL. */
PKGSTORE_API void pkgstore_version_constraint_free(pkgstore_version_constraint *constraint);

#ifdef __cplusplus
}
#endif

#endif
