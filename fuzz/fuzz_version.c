/*
 * fuzz_version: SemVer parsing, precedence and constraints.
 * The input is "VERSION\nCONSTRAINT" (no newline: the whole input is tried
 * as both). Checks:
 *   - round trip: parse(format(parse(x))) == parse(x), field by field, and
 *     format is stable;
 *   - parse_n on the raw bytes agrees with parse on the NUL-terminated text;
 *   - compare is reflexive and antisymmetric against fixed versions;
 *   - "=V", "!=V", ">V", ">=V", "<V", "<=V" agree with compare() on a set
 *     of known versions (and V itself), with the pre-release rule;
 *   - every failure is EINVALID/ELIMIT with a detail.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *const fixed_versions[] = {
    "0.0.0", "0.0.1-0", "0.98.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.11", "1.0.0",
    "1.2.3", "2.0.0-rc.1", "18446744073709551615.18446744073709551615.18446744073709551615",
};
#define FIXED_COUNT (sizeof(fixed_versions) / sizeof(fixed_versions[0]))

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static void check_constraint(const char *text, const pkgstore_semver *versions, size_t count)
{
    pkgstore_version_constraint *constraint = NULL;
    int rc = pkgstore_version_constraint_parse(&constraint, text);
    CHECK(rc == 0 || rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
    if (rc != 0) {
        CHECK(constraint == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return;
    }
    CHECK(strcmp(pkgstore_version_constraint_string(constraint), text) == 0);
    for (size_t i = 0; i < count; i++) {
        int m = pkgstore_version_constraint_match(constraint, &versions[i]);
        CHECK(m == 0 || m == 1);
    }
    pkgstore_version_constraint_free(constraint);
}

/* A full-version comparator against every known version must agree with
 * pkgstore_version_compare(), plus the pre-release rule: a pre-release
 * matches only when the comparator names a pre-release of its M.m.p. */
static void check_exact_constraints(const pkgstore_semver *v, const pkgstore_semver *known,
                                    size_t count)
{
    char formatted[PKGSTORE_SEMVER_STR_SIZE];
    char text[PKGSTORE_SEMVER_STR_SIZE + 4];
    static const char *const ops[] = {"=", ">=", "<=", "", "<", ">", "!="};
    pkgstore_version_format(formatted, v);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        pkgstore_version_constraint *constraint = NULL;
        strcpy(text, ops[i]);
        strcat(text, formatted);
        CHECK(pkgstore_version_constraint_parse(&constraint, text) == 0);
        for (size_t k = 0; k < count; k++) {
            const pkgstore_semver *w = &known[k];
            int cmp = pkgstore_version_compare(w, v);
            int want;
            switch (ops[i][0]) {
            case '>': want = ops[i][1] == '=' ? cmp >= 0 : cmp > 0; break;
            case '<': want = ops[i][1] == '=' ? cmp <= 0 : cmp < 0; break;
            case '!': want = cmp != 0; break;
            default: want = cmp == 0; break;
            }
            if (w->prerelease[0] != '\0' &&
                !(v->prerelease[0] != '\0' && v->major == w->major && v->minor == w->minor &&
                  v->patch == w->patch))
                want = 0;
            CHECK(pkgstore_version_constraint_match(constraint, w) == want);
        }
        pkgstore_version_constraint_free(constraint);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_semver fixed[FIXED_COUNT + 1];
    pkgstore_semver parsed, raw, again;
    char *text, *constraint_text;
    char formatted[PKGSTORE_SEMVER_STR_SIZE], formatted2[PKGSTORE_SEMVER_STR_SIZE];
    int rc, raw_rc;
    size_t count = FIXED_COUNT;

    if (size > 8192)
        return 0;
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (size_t i = 0; i < FIXED_COUNT; i++)
        CHECK(pkgstore_version_parse(&fixed[i], fixed_versions[i]) == 0);

    constraint_text = strchr(text, '\n');
    if (constraint_text != NULL)
        *constraint_text++ = '\0';
    else
        constraint_text = text;

    /* Version: parse, round trip, parse_n agreement. */
    rc = pkgstore_version_parse(&parsed, text);
    CHECK(rc == 0 || rc == PKGSTORE_EINVALID);
    raw_rc = pkgstore_version_parse_n(&raw, (const char *)data, size);
    if (memchr(data, '\0', size) == NULL && memchr(data, '\n', size) == NULL) {
        CHECK(raw_rc == rc);
        if (rc == 0)
            CHECK(memcmp(&raw, &parsed, sizeof(raw)) == 0);
    }
    if (rc == 0) {
        size_t len = pkgstore_version_format(formatted, &parsed);
        CHECK(len == strlen(formatted));
        CHECK(len < PKGSTORE_SEMVER_STR_SIZE);
        CHECK(pkgstore_version_parse(&again, formatted) == 0);
        CHECK(again.major == parsed.major && again.minor == parsed.minor &&
              again.patch == parsed.patch);
        CHECK(strcmp(again.prerelease, parsed.prerelease) == 0);
        CHECK(strcmp(again.build, parsed.build) == 0);
        CHECK(pkgstore_version_compare(&again, &parsed) == 0);
        pkgstore_version_format(formatted2, &again);
        CHECK(strcmp(formatted, formatted2) == 0);
        CHECK(pkgstore_version_is_prerelease(&parsed) == (parsed.prerelease[0] != '\0'));
        for (size_t i = 0; i < FIXED_COUNT; i++) {
            int ab = pkgstore_version_compare(&parsed, &fixed[i]);
            int ba = pkgstore_version_compare(&fixed[i], &parsed);
            CHECK(sign(ab) == -sign(ba));
        }
        fixed[count++] = parsed;
        check_exact_constraints(&parsed, fixed, count);
    } else {
        CHECK(pkgstore_error_detail()[0] != '\0');
        CHECK(parsed.major == 0 && parsed.prerelease[0] == '\0');
    }

    /* Constraint: parse and match against the fixed versions (and the
     * parsed one). */
    check_constraint(constraint_text, fixed, count);
    free(text);
    return 0;
}
