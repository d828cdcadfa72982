/*
 * platform: "os/arch[/variant]" values. Parsing lower-cases and resolves
 * the alias table of DESIGN.md (uname and distribution spellings such as
 * x86_64, i686, aarch64, armv7l, armhf), so everything past parse works on
 * one canonical spelling. Ranking decides which artifact a node gets.
 */
#include "pkgstore/platform.h"
#include "error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

typedef struct arch_alias {
    const char *input;
    const char *arch;
    const char *variant; /* implied variant, NULL if none */
} arch_alias;

static const arch_alias arch_aliases[] = {
    {"x86_64", "amd64", NULL}, {"x86-64", "amd64", NULL}, {"x64", "amd64", NULL},
    {"amd64", "amd64", NULL},  {"i386", "386", NULL},      {"i686", "386", NULL},
    {"386", "386", NULL},      {"aarch64", "arm64", NULL}, {"arm64", "arm64", NULL},
    {"armv7l", "arm", "v7"},   {"armhf", "arm", "v7"},     {"armv6l", "arm", "v6"},
    {"armel", "arm", "v6"},    {"armv8l", "arm", "v8"},
};

static bool valid_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Copy the lower-cased field str[start, end) into out (size bytes). */
static int copy_field(char *out, size_t size, const char *name, const char *str, size_t start,
                      size_t end)
{
    if (end == start)
        return ps_error_set(PKGSTORE_EINVALID, "platform \"%.64s\": empty %s", str, name);
    if (end - start >= size)
        return ps_error_set(PKGSTORE_EINVALID, "platform \"%.64s\": %s longer than %zu characters",
                            str, name, size - 1);
    for (size_t i = start; i < end; i++) {
        char c = lower(str[i]);
        if (!valid_char(c)) {
            unsigned char byte = (unsigned char)str[i];
            if (byte > 0x20 && byte < 0x7f)
                return ps_error_set(PKGSTORE_EINVALID,
                                    "platform \"%.64s\": invalid character '%c' in %s at position "
                                    "%zu; expected os/arch[/variant] of [a-z0-9._-]",
                                    str, str[i], name, i);
            return ps_error_set(PKGSTORE_EINVALID,
                                "platform \"%.64s\": invalid byte 0x%02x in %s at position %zu", str,
                                byte, name, i);
        }
        out[i - start] = c;
    }
    out[end - start] = '\0';
    /* "..", "." or ".x" would name a directory when a platform is used in
     * a path: a field starts with a letter or a digit. */
    if (!((out[0] >= 'a' && out[0] <= 'z') || (out[0] >= '0' && out[0] <= '9')))
        return ps_error_set(PKGSTORE_EINVALID,
                            "platform \"%.64s\": %s must start with a letter or a digit", str,
                            name);
    return 0;
}

/* Normalize arch and variant in place (both already lower case). */
static int normalize_arch(pkgstore_platform *p, const char *str)
{
    const char *implied = NULL;
    for (size_t i = 0; i < sizeof(arch_aliases) / sizeof(arch_aliases[0]); i++) {
        if (strcmp(p->arch, arch_aliases[i].input) == 0) {
            strcpy(p->arch, arch_aliases[i].arch);
            implied = arch_aliases[i].variant;
            break;
        }
    }
    if (strcmp(p->arch, "arm") == 0 || strcmp(p->arch, "arm64") == 0) {
        /* Variants may be written without the 'v': "arm/7" is arm/v7. */
        if (p->variant[0] >= '0' && p->variant[0] <= '9' &&
            strlen(p->variant) + 1 < sizeof(p->variant)) {
            memmove(p->variant + 1, p->variant, strlen(p->variant) + 1);
            p->variant[0] = 'v';
        }
    }
    if (implied != NULL) {
        if (p->variant[0] != '\0' && strcmp(p->variant, implied) != 0)
            return ps_error_set(PKGSTORE_EINVALID,
                                "platform \"%.64s\": the arch implies variant %s, not %s", str,
                                implied, p->variant);
        strcpy(p->variant, implied);
    }
    if (strcmp(p->arch, "arm") == 0 && p->variant[0] == '\0')
        strcpy(p->variant, "v7");
    if (strcmp(p->arch, "arm64") == 0 && strcmp(p->variant, "v8") == 0)
        p->variant[0] = '\0';
    if (strcmp(p->arch, PKGSTORE_PLATFORM_ANY) == 0 && p->variant[0] != '\0')
        return ps_error_set(PKGSTORE_EINVALID, "platform \"%.64s\": the arch \"any\" takes no variant",
                            str);
    return 0;
}

PKGSTORE_API int pkgstore_platform_parse(pkgstore_platform *out, const char *str)
{
    size_t len, slash1, slash2;
    const char *s;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL output");
    memset(out, 0, sizeof(*out));
    if (str == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL input");
    len = strlen(str);
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID,
                            "platform: empty string; expected os/arch[/variant]");
    s = memchr(str, '/', len);
    if (s == NULL)
        return ps_error_set(PKGSTORE_EINVALID,
                            "platform \"%.64s\": missing the arch; expected os/arch[/variant]",
                            str);
    slash1 = (size_t)(s - str);
    s = memchr(str + slash1 + 1, '/', len - slash1 - 1);
    slash2 = s != NULL ? (size_t)(s - str) : len;
    if (slash2 < len && memchr(str + slash2 + 1, '/', len - slash2 - 1) != NULL)
        return ps_error_set(PKGSTORE_EINVALID,
                            "platform \"%.64s\": too many '/'; expected os/arch[/variant]", str);
    if ((error = copy_field(out->os, sizeof(out->os), "os", str, 0, slash1)) < 0 ||
        (error = copy_field(out->arch, sizeof(out->arch), "arch", str, slash1 + 1, slash2)) < 0)
        goto fail;
    if (slash2 < len &&
        (error = copy_field(out->variant, sizeof(out->variant), "variant", str, slash2 + 1, len)) <
            0)
        goto fail;
    if (strcmp(out->os, "macos") == 0)
        strcpy(out->os, "darwin");
    if ((error = normalize_arch(out, str)) < 0)
        goto fail;
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return error;
}

PKGSTORE_API size_t pkgstore_platform_format(char out[PKGSTORE_PLATFORM_STR_SIZE],
                                             const pkgstore_platform *platform)
{
    int n;
    if (platform->variant[0] != '\0')
        n = snprintf(out, PKGSTORE_PLATFORM_STR_SIZE, "%.31s/%.31s/%.15s", platform->os,
                     platform->arch, platform->variant);
    else
        n = snprintf(out, PKGSTORE_PLATFORM_STR_SIZE, "%.31s/%.31s", platform->os, platform->arch);
    return n < 0 ? 0 : (size_t)n;
}

PKGSTORE_API int pkgstore_platform_normalize(char out[PKGSTORE_PLATFORM_STR_SIZE], const char *str)
{
    pkgstore_platform platform;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL output");
    out[0] = '\0';
    if ((error = pkgstore_platform_parse(&platform, str)) < 0)
        return error;
    pkgstore_platform_format(out, &platform);
    return 0;
}

PKGSTORE_API int pkgstore_platform_equal(const pkgstore_platform *a, const pkgstore_platform *b)
{
    if (a == NULL || b == NULL)
        return 0;
    return strcmp(a->os, b->os) == 0 && strcmp(a->arch, b->arch) == 0 &&
           strcmp(a->variant, b->variant) == 0;
}

/* The arm generation of a variant "v5".."v8", or 0. */
static int arm_generation(const char *variant)
{
    if (variant[0] == 'v' && variant[1] >= '5' && variant[1] <= '8' && variant[2] == '\0')
        return variant[1] - '0';
    return 0;
}

#define RANK_ARCH_ANY 8
#define RANK_OS_ANY   16

static int arch_rank(const pkgstore_platform *node, const pkgstore_platform *artifact)
{
    if (strcmp(node->arch, artifact->arch) == 0 && strcmp(node->variant, artifact->variant) == 0)
        return 0;
    if (strcmp(artifact->arch, PKGSTORE_PLATFORM_ANY) == 0)
        return RANK_ARCH_ANY;
    if (strcmp(node->arch, artifact->arch) == 0) {
        int have, want;
        if (artifact->variant[0] == '\0')
            return 1; /* a generic build runs on every variant */
        if (strcmp(node->arch, "arm") == 0) {
            /* arm/v7 runs v6 then v5; arm/v8 (32-bit) runs v7, v6, v5. */
            have = arm_generation(node->variant);
            want = arm_generation(artifact->variant);
            if (have != 0 && want != 0 && want < have)
                return have - want;
        }
        return PKGSTORE_PLATFORM_RANK_NONE;
    }
    if (strcmp(node->arch, "amd64") == 0 && strcmp(artifact->arch, "386") == 0 &&
        artifact->variant[0] == '\0')
        return 1;
    if (strcmp(node->arch, "arm64") == 0 && strcmp(artifact->arch, "arm") == 0) {
        int want = arm_generation(artifact->variant);
        if (want != 0)
            return 9 - want; /* v8 1, v7 2, v6 3, v5 4 */
    }
    return PKGSTORE_PLATFORM_RANK_NONE;
}

PKGSTORE_API int pkgstore_platform_rank(const pkgstore_platform *node,
                                        const pkgstore_platform *artifact)
{
    int os_penalty, rank;
    if (node == NULL || artifact == NULL)
        return PKGSTORE_PLATFORM_RANK_NONE;
    if (strcmp(node->os, artifact->os) == 0)
        os_penalty = 0;
    else if (strcmp(artifact->os, PKGSTORE_PLATFORM_ANY) == 0)
        os_penalty = RANK_OS_ANY;
    else
        return PKGSTORE_PLATFORM_RANK_NONE;
    rank = arch_rank(node, artifact);
    if (rank == PKGSTORE_PLATFORM_RANK_NONE)
        return rank;
    return os_penalty + rank;
}

PKGSTORE_API int pkgstore_platform_compatible(const pkgstore_platform *node,
                                              const pkgstore_platform *artifact)
{
    return pkgstore_platform_rank(node, artifact) != PKGSTORE_PLATFORM_RANK_NONE;
}

PKGSTORE_API int pkgstore_platform_best_match(size_t *index_out, const pkgstore_platform *node,
                                              const pkgstore_platform *candidates, size_t count)
{
    int best_rank = PKGSTORE_PLATFORM_RANK_NONE;
    size_t best = (size_t)-1;
    char node_str[PKGSTORE_PLATFORM_STR_SIZE];
    if (index_out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL output");
    *index_out = (size_t)-1;
    if (node == NULL || (candidates == NULL && count > 0))
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL node or candidates");
    for (size_t i = 0; i < count; i++) {
        int rank = pkgstore_platform_rank(node, &candidates[i]);
        if (rank != PKGSTORE_PLATFORM_RANK_NONE &&
            (best_rank == PKGSTORE_PLATFORM_RANK_NONE || rank < best_rank)) {
            best_rank = rank;
            best = i;
            if (rank == 0)
                break;
        }
    }
    if (best == (size_t)-1) {
        pkgstore_platform_format(node_str, node);
        return ps_error_set(PKGSTORE_ENOTFOUND, "no artifact for platform %s among %zu candidate%s",
                            node_str, count, count == 1 ? "" : "s");
    }
    *index_out = best;
    return 0;
}

PKGSTORE_API int pkgstore_platform_host(pkgstore_platform *out)
{
    struct utsname uts;
    char spec[sizeof(uts.sysname) + sizeof(uts.machine) + 2];
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "platform: NULL output");
    memset(out, 0, sizeof(*out));
    if (uname(&uts) != 0)
    {
        (void)ps_error_errno(errno, "uname");
        return PKGSTORE_EIO;
    }
    snprintf(spec, sizeof(spec), "%s/%s", uts.sysname, uts.machine);
    if ((error = pkgstore_platform_parse(out, spec)) < 0) {
        ps_error_prefix("host platform from uname()");
        return PKGSTORE_EUNSUPPORTED;
    }
    return 0;
}
