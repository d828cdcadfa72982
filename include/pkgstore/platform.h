/*
 * pkgstore/platform.h - platforms "os/arch[/variant]": parse, normalize
 * aliases, compatibility ranking, best match and host detection.
 *
 * docs/platforms.md is the reference: the alias table (x86_64 -> amd64,
 * aarch64 -> arm64, armv7l -> arm/v7, macos -> darwin, ...) and the ranking.
 */
#ifndef PKGSTORE_PLATFORM_H
#define PKGSTORE_PLATFORM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Field sizes including the NUL; longer fields are refused. */
#define PKGSTORE_PLATFORM_OS_SIZE      32
#define PKGSTORE_PLATFORM_ARCH_SIZE    32
#define PKGSTORE_PLATFORM_VARIANT_SIZE 16
/* Buffer size that holds any formatted platform and its NUL. */
#define PKGSTORE_PLATFORM_STR_SIZE \
    (PKGSTORE_PLATFORM_OS_SIZE + PKGSTORE_PLATFORM_ARCH_SIZE + PKGSTORE_PLATFORM_VARIANT_SIZE)

/** The wildcard OS or arch ("any/any", "linux/any"): runs everywhere. */
#define PKGSTORE_PLATFORM_ANY "any"

/**
 * A normalized platform: lower case, aliases resolved, variant "" when
 * there is none. A small value: copy it freely; needs no free.
 */
typedef struct pkgstore_platform {
    char os[PKGSTORE_PLATFORM_OS_SIZE];
    char arch[PKGSTORE_PLATFORM_ARCH_SIZE];
    char variant[PKGSTORE_PLATFORM_VARIANT_SIZE];
} pkgstore_platform;

/**
 * Parse "os/arch[/variant]" and normalize it into *out: lower case, then the
 * aliases (x86_64, x86-64, x64 -> amd64; i386, i686 -> 386; aarch64 ->
 * arm64 and a v8 variant dropped; armv7l, armhf, arm -> arm/v7; armv6l,
 * armel -> arm/v6; macos -> darwin; arm variants "7" -> "v7").
 * Fields are [a-z0-9._-]+ (after lower-casing) and must fit the sizes above.
 * Each field is [A-Za-z0-9._-] and starts with a letter or a digit, so
 * "../..", "./." and "linux/amd64/.." are refused.
 * Errors: PKGSTORE_EINVALID with a detail naming the field and the cause
 * (missing arch, empty field, bad character at a position, a field that
 * starts with another character, too long, an alias that implies another
 * variant such as "linux/armv7l/v6").
 * On failure *out is zeroed.
 */
PKGSTORE_API int pkgstore_platform_parse(pkgstore_platform *out, const char *str);

/** Write the canonical "os/arch[/variant]" and a NUL into out. Returns the
 * length written. */
PKGSTORE_API size_t pkgstore_platform_format(char out[PKGSTORE_PLATFORM_STR_SIZE],
                                             const pkgstore_platform *platform);

/** Parse then format: the canonical spelling of str in out.
 * Errors: as pkgstore_platform_parse(); on failure out is "". */
PKGSTORE_API int pkgstore_platform_normalize(char out[PKGSTORE_PLATFORM_STR_SIZE], const char *str);

/** 1 if both platforms are identical (all three fields), else 0 (also
 * when either is NULL). */
PKGSTORE_API int pkgstore_platform_equal(const pkgstore_platform *a, const pkgstore_platform *b);

/* pkgstore_platform_rank() result for an artifact the node cannot run. */
#define PKGSTORE_PLATFORM_RANK_NONE (-1)

/**
 * How well an artifact built for `artifact` suits a node of platform
 * `node`: 0 is an exact match, larger is a worse fallback, and
 * PKGSTORE_PLATFORM_RANK_NONE means it cannot run there. Order:
 *   0      exact (os, arch and variant equal)
 *   1..4   same os, compatible arch: amd64 runs 386; arm/v7 runs arm/v6
 *          then arm/v5; arm64 runs arm/v8, arm/v7, arm/v6, arm/v5;
 *          an artifact without a variant runs on any variant of its arch
 *   8..    `any` as the arch, then `any` as the os (any/any is last)
 * Both arguments must be normalized (from pkgstore_platform_parse()).
 */
PKGSTORE_API int pkgstore_platform_rank(const pkgstore_platform *node,
                                        const pkgstore_platform *artifact);

/** 1 if a node of platform `node` can run `artifact` (rank is not NONE). */
PKGSTORE_API int pkgstore_platform_compatible(const pkgstore_platform *node,
                                              const pkgstore_platform *artifact);

/**
 * Pick the best of count candidate platforms for node: the lowest rank,
 * ties to the first listed. *index_out receives its index.
 * Errors: PKGSTORE_ENOTFOUND when none is compatible (detail lists the
 * node platform), PKGSTORE_EINVALID on NULL arguments.
 * On failure *index_out is (size_t)-1.
 */
PKGSTORE_API int pkgstore_platform_best_match(size_t *index_out, const pkgstore_platform *node,
                                              const pkgstore_platform *candidates, size_t count);

/**
 * The platform of the running host from uname(): sysname lower-cased
 * (Linux -> linux, Darwin -> darwin), machine normalized (x86_64 -> amd64,
 * aarch64 -> arm64, armv7l -> arm/v7, ...).
 * Errors: PKGSTORE_EIO when uname() fails, PKGSTORE_EUNSUPPORTED when its
 * answer cannot be expressed as a platform. On failure *out is zeroed.
 */
PKGSTORE_API int pkgstore_platform_host(pkgstore_platform *out);

#ifdef __cplusplus
}
#endif

#endif
