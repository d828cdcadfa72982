/*
 * test_version: SemVer 2.0.0 parsing, formatting, precedence (every example
 * of the specification) and constraints of every kind, with error positions.
 * Pure value code: no files, so no temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pkgstore.h>

static pkgstore_semver V(const char *text)
{
    pkgstore_semver v;
    int rc = pkgstore_version_parse(&v, text);
    if (rc != 0)
        fail_msg("parse \"%s\": %s", text, pkgstore_error_detail());
    return v;
}

static void assert_invalid_version(const char *text, const char *detail_part)
{
    pkgstore_semver v;
    int rc = pkgstore_version_parse(&v, text);
    if (rc != PKGSTORE_EINVALID)
        fail_msg("\"%s\" parsed (rc %d), expected EINVALID", text, rc);
    assert_int_equal(v.major, 0);
    assert_string_equal(v.prerelease, "");
    if (detail_part != NULL && strstr(pkgstore_error_detail(), detail_part) == NULL)
        fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", text, pkgstore_error_detail(), detail_part);
}

/* Does constraint c match version v? */
static int M(const char *constraint, const char *version)
{
    pkgstore_version_constraint *c = NULL;
    pkgstore_semver v = V(version);
    int rc = pkgstore_version_constraint_parse(&c, constraint);
    int matched;
    if (rc != 0)
        fail_msg("constraint \"%s\": %s", constraint, pkgstore_error_detail());
    matched = pkgstore_version_constraint_match(c, &v);
    pkgstore_version_constraint_free(c);
    return matched;
}

#define assert_match(c, v)                                                                    \
    do {                                                                                      \
        if (!M(c, v))                                                                         \
            fail_msg("\"%s\" should match %s", c, v);                                         \
    } while (0)
#define assert_no_match(c, v)                                                                 \
    do {                                                                                      \
        if (M(c, v))                                                                          \
            fail_msg("\"%s\" should not match %s", c, v);                                     \
    } while (0)

static void assert_invalid_constraint(const char *text, int code, const char *detail_part)
{
    pkgstore_version_constraint *c = (pkgstore_version_constraint *)1;
    int rc = pkgstore_version_constraint_parse(&c, text);
    if (rc != code)
        fail_msg("constraint \"%.60s\": rc %d, expected %d (%s)", text, rc, code,
                 pkgstore_error_detail());
    assert_null(c);
    if (detail_part != NULL && strstr(pkgstore_error_detail(), detail_part) == NULL)
        fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", text, pkgstore_error_detail(), detail_part);
}

static void test_version__parses_fields(void **state)
{
    (void)state;
    pkgstore_semver v = V("1.22.333-rc.1+build.5");
    assert_int_equal(v.major, 1);
    assert_int_equal(v.minor, 22);
    assert_int_equal(v.patch, 333);
    assert_string_equal(v.prerelease, "rc.1");
    assert_string_equal(v.build, "build.5");
    assert_true(pkgstore_version_is_prerelease(&v));
    v = V("0.0.0");
    assert_false(pkgstore_version_is_prerelease(&v));
    assert_string_equal(v.build, "");
    v = V("18446744073709551615.18446744073709551615.18446744073709551615");
    assert_true(v.major == UINT64_MAX && v.minor == UINT64_MAX && v.patch == UINT64_MAX);
    v = V("1.0.0---x.-");
    assert_string_equal(v.prerelease, "--x.-");
    v = V("1.0.0+001.0a");
    assert_string_equal(v.build, "001.0a"); /* leading zeros are fine in build metadata */
}

static void test_version__leading_v_is_normalized_away(void **state)
{
    char text[PKGSTORE_SEMVER_STR_SIZE];
    (void)state;
    pkgstore_semver v = V("v1.2.3");
    assert_int_equal(pkgstore_version_format(text, &v), 5);
    assert_string_equal(text, "1.2.3");
    v = V("V0.98.0-rc.1");
    pkgstore_version_format(text, &v);
    assert_string_equal(text, "0.98.0-rc.1");
    assert_invalid_version("vv1.2.3", "position 1");
    assert_invalid_version("v", "end of input");
}

static void test_version__format_round_trips(void **state)
{
    static const char *const texts[] = {"0.0.0", "1.2.3", "1.0.0-alpha.1", "1.0.0+build",
                                        "1.0.0-rc.1+b.2",
                                        "18446744073709551615.0.18446744073709551615-x"};
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char text[PKGSTORE_SEMVER_STR_SIZE];
        pkgstore_semver v = V(texts[i]), w;
        assert_int_equal(pkgstore_version_format(text, &v), strlen(texts[i]));
        assert_string_equal(text, texts[i]);
        w = V(text);
        assert_memory_equal(&v, &w, sizeof(v));
    }
}

static void test_version__spec_precedence_examples(void **state)
{
    /* SemVer 2.0.0 section 11, both example chains, in increasing order. */
    static const char *const chains[][9] = {
        {"1.0.0", "2.0.0", "2.1.0", "2.1.1", NULL},
        {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
         "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", NULL},
    };
    (void)state;
    for (size_t c = 0; c < 2; c++) {
        for (size_t i = 0; chains[c][i] != NULL; i++) {
            for (size_t j = 0; chains[c][j] != NULL; j++) {
                pkgstore_semver a = V(chains[c][i]), b = V(chains[c][j]);
                int cmp = pkgstore_version_compare(&a, &b);
                int want = i < j ? -1 : i > j ? 1 : 0;
                if ((cmp > 0) - (cmp < 0) != want)
                    fail_msg("compare(%s, %s) = %d, want %d", chains[c][i], chains[c][j], cmp,
                             want);
            }
        }
    }
}

static void test_version__precedence_details(void **state)
{
    (void)state;
    pkgstore_semver a, b;
    /* Build metadata is ignored. */
    a = V("1.0.0+a");
    b = V("1.0.0+b");
    assert_int_equal(pkgstore_version_compare(&a, &b), 0);
    a = V("1.0.0-rc.1+x");
    b = V("1.0.0-rc.1");
    assert_int_equal(pkgstore_version_compare(&a, &b), 0);
    /* Numbers compare numerically, not as text. */
    a = V("1.10.0");
    b = V("1.9.0");
    assert_true(pkgstore_version_compare(&a, &b) > 0);
    a = V("1.0.0-10");
    b = V("1.0.0-9");
    assert_true(pkgstore_version_compare(&a, &b) > 0);
    /* Numeric identifiers are lower than alphanumeric ones. */
    a = V("1.0.0-999");
    b = V("1.0.0-a");
    assert_true(pkgstore_version_compare(&a, &b) < 0);
    /* ASCII order: upper case before lower case, '-' before digits. */
    a = V("1.0.0-B");
    b = V("1.0.0-a");
    assert_true(pkgstore_version_compare(&a, &b) < 0);
    a = V("1.0.0-a-b");
    b = V("1.0.0-a0");
    assert_true(pkgstore_version_compare(&a, &b) < 0);
    /* A longer numeric identifier beyond 64 bits still compares right. */
    a = V("1.0.0-99999999999999999999999");
    b = V("1.0.0-99999999999999999999998");
    assert_true(pkgstore_version_compare(&a, &b) > 0);
    /* Large numbers. */
    a = V("18446744073709551615.0.0");
    b = V("18446744073709551614.99.99");
    assert_true(pkgstore_version_compare(&a, &b) > 0);
}

static void test_version__rejects_invalid_forms(void **state)
{
    (void)state;
    assert_invalid_version("", "empty");
    assert_invalid_version("1", "position 1");
    assert_invalid_version("1.2", "expected '.' after the minor number at position 3");
    assert_invalid_version("1.2.3.4", "position 5");
    assert_invalid_version("01.2.3", "leading zero in the major number at position 0");
    assert_invalid_version("1.02.3", "leading zero in the minor number at position 2");
    assert_invalid_version("1.2.03", "leading zero in the patch number at position 4");
    assert_invalid_version("1.2.3-01", "leading zero in a numeric pre-release identifier");
    assert_invalid_version("1.2.3-", "empty pre-release identifier at position 6");
    assert_invalid_version("1.2.3-a..b", "empty pre-release identifier at position 8");
    assert_invalid_version("1.2.3-a.", "empty pre-release identifier");
    assert_invalid_version("1.2.3+", "empty build metadata identifier");
    assert_invalid_version("1.2.3+a..b", "empty build metadata identifier");
    assert_invalid_version("1.2.3-a_b", "position 7");
    assert_invalid_version("1.2.3-é", "byte 0xc3");
    assert_invalid_version(" 1.2.3", "a space");
    assert_invalid_version("1.2.3 ", "a space");
    assert_invalid_version("-1.2.3", "position 0");
    assert_invalid_version("1.2.x", "position 4");
    assert_invalid_version("99999999999999999999.0.0", "larger than 18446744073709551615");
    assert_invalid_version("18446744073709551616.0.0", "larger than");
    assert_invalid_version("1.18446744073709551616.0", "minor number is larger");
}

static void test_version__error_detail_shows_position_and_excerpt(void **state)
{
    pkgstore_semver v;
    (void)state;
    assert_int_equal(pkgstore_version_parse(&v, "1.2.3-beta..1"), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_error_detail(),
                        "version: empty pre-release identifier at position 11 ('.') in "
                        "\"1.2.3-beta.[.]1\"");
    assert_int_equal(pkgstore_version_parse(&v, "1.2"), PKGSTORE_EINVALID);
    assert_string_equal(pkgstore_error_detail(),
                        "version: expected '.' after the minor number at position 3 (end of "
                        "input) in \"1.2[]\"");
}

static void test_version__length_limits(void **state)
{
    char text[400];
    pkgstore_semver v;
    (void)state;
    memset(text, 0, sizeof(text));
    strcpy(text, "1.0.0-");
    memset(text + 6, 'a', PKGSTORE_SEMVER_PRERELEASE_MAX);
    assert_int_equal(pkgstore_version_parse(&v, text), 0);
    assert_int_equal(strlen(v.prerelease), PKGSTORE_SEMVER_PRERELEASE_MAX);
    text[6 + PKGSTORE_SEMVER_PRERELEASE_MAX] = 'a';
    assert_invalid_version(text, "longer than 127");
    strcpy(text, "1.0.0+");
    memset(text + 6, 'b', PKGSTORE_SEMVER_BUILD_MAX + 1);
    text[6 + PKGSTORE_SEMVER_BUILD_MAX + 1] = '\0';
    assert_invalid_version(text, "build metadata longer than 127");
}

static void test_version__parse_n_and_misuse(void **state)
{
    pkgstore_semver v;
    (void)state;
    assert_int_equal(pkgstore_version_parse_n(&v, "1.2.3garbage", 5), 0);
    assert_int_equal(v.patch, 3);
    assert_int_equal(pkgstore_version_parse_n(&v, "1.2.3\0-x", 8), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "at position 5 (byte 0x00)"));
    assert_int_equal(pkgstore_version_parse(&v, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_version_parse(NULL, "1.2.3"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_version_constraint_parse(NULL, "1"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_version_constraint_match(NULL, &v), 0);
    assert_string_equal(pkgstore_version_constraint_string(NULL), "");
    pkgstore_version_constraint_free(NULL);
}

static void test_version__constraint_operators(void **state)
{
    (void)state;
    assert_match("=1.2.3", "1.2.3");
    assert_match("1.2.3", "1.2.3+build");
    assert_match("=v1.2.3", "1.2.3");
    assert_no_match("=1.2.3", "1.2.4");
    assert_match("!=1.2.3", "1.2.4");
    assert_no_match("!=1.2.3", "1.2.3");
    assert_match(">1.2.3", "1.2.4");
    assert_no_match(">1.2.3", "1.2.3");
    assert_match(">=1.2.3", "1.2.3");
    assert_no_match(">=1.2.3", "1.2.2");
    assert_match("<1.2.3", "1.2.2");
    assert_no_match("<1.2.3", "1.2.3");
    assert_match("<=1.2.3", "1.2.3");
    assert_no_match("<=1.2.3", "1.2.4");
    assert_match(">= 1.2.3", "1.2.3"); /* space after the operator */
    assert_match("  >=1.0.0\t<2  ", "1.5.0");
}

static void test_version__constraint_and_or(void **state)
{
    (void)state;
    assert_match(">=0.90.0 <1.0.0", "0.90.0");
    assert_match(">=0.90.0 <1.0.0", "0.99.99");
    assert_no_match(">=0.90.0 <1.0.0", "1.0.0");
    assert_no_match(">=0.90.0 <1.0.0", "0.89.9");
    assert_match(">=1.2, <1.5", "1.4.0"); /* Cargo-style commas */
    assert_no_match(">=1.2, <1.5", "1.5.0");
    assert_match("1.x || 3.x", "3.1.0");
    assert_no_match("1.x || 3.x", "2.0.0");
    assert_match("<1.0.0 || >=2.0.0 <2.1.0 || 5", "2.0.5");
    assert_match("<1.0.0 || >=2.0.0 <2.1.0 || 5", "5.9.9");
    assert_no_match("<1.0.0 || >=2.0.0 <2.1.0 || 5", "2.1.0");
    assert_match("1.0.0||2.0.0", "2.0.0");
    assert_match(">=1.0.0 !=1.5.0 <2", "1.4.0");
    assert_no_match(">=1.0.0 !=1.5.0 <2", "1.5.0");
    assert_no_match("!=1.5", "1.5.7"); /* a partial != excludes the whole minor */
    assert_match("!=1.5", "1.6.0");
}

static void test_version__caret_ranges(void **state)
{
    (void)state;
    /* ^0.98 = >=0.98.0 <0.99.0 */
    assert_match("^0.98", "0.98.0");
    assert_match("^0.98", "0.98.7");
    assert_no_match("^0.98", "0.99.0");
    assert_no_match("^0.98", "0.97.9");
    /* ^1.2.3 = >=1.2.3 <2.0.0 */
    assert_match("^1.2.3", "1.2.3");
    assert_match("^1.2.3", "1.9.0");
    assert_no_match("^1.2.3", "1.2.2");
    assert_no_match("^1.2.3", "2.0.0");
    /* ^0.2.3 = >=0.2.3 <0.3.0 */
    assert_match("^0.2.3", "0.2.9");
    assert_no_match("^0.2.3", "0.3.0");
    /* ^0.0.3 = >=0.0.3 <0.0.4 */
    assert_match("^0.0.3", "0.0.3");
    assert_no_match("^0.0.3", "0.0.4");
    /* ^0.0 = >=0.0.0 <0.1.0; ^0 = >=0.0.0 <1.0.0; ^1 = ^1.x = >=1.0.0 <2.0.0 */
    assert_match("^0.0", "0.0.9");
    assert_no_match("^0.0", "0.1.0");
    assert_match("^0", "0.9.0");
    assert_no_match("^0", "1.0.0");
    assert_match("^1", "1.9.9");
    assert_match("^1.x", "1.0.0");
    assert_no_match("^1.x", "2.0.0");
    assert_match("^1.2.x", "1.3.0");
    assert_no_match("^1.2.x", "1.1.0");
    assert_match("^*", "7.0.0");
}

static void test_version__tilde_ranges(void **state)
{
    (void)state;
    /* ~1.2.3 = >=1.2.3 <1.3.0; ~1.2 = >=1.2.0 <1.3.0; ~1 = >=1.0.0 <2.0.0 */
    assert_match("~1.2.3", "1.2.9");
    assert_no_match("~1.2.3", "1.2.2");
    assert_no_match("~1.2.3", "1.3.0");
    assert_match("~1.2", "1.2.0");
    assert_no_match("~1.2", "1.3.0");
    assert_match("~1", "1.9.0");
    assert_no_match("~1", "2.0.0");
    assert_match("~0.2.3", "0.2.4");
    assert_no_match("~0.2.3", "0.3.0");
    assert_match("~1.x", "1.5.0");
}

static void test_version__wildcards_and_partials(void **state)
{
    (void)state;
    assert_match("*", "0.0.0");
    assert_match("*", "18446744073709551615.0.0");
    assert_match("x", "1.0.0");
    assert_match("X", "1.0.0");
    assert_match("1.2.x", "1.2.99");
    assert_no_match("1.2.x", "1.3.0");
    assert_match("1.2.*", "1.2.0");
    assert_match("1.X", "1.99.0");
    assert_match("1.x.x", "1.0.0");
    assert_no_match("1.x", "2.0.0");
    assert_match("1", "1.5.5");
    assert_match("1.2", "1.2.5");
    assert_no_match("1.2", "1.20.0");
    /* Comparisons with partial versions cover the whole partial range. */
    assert_match(">1.2", "1.3.0");
    assert_no_match(">1.2", "1.2.99");
    assert_match(">=1.2", "1.2.0");
    assert_match("<1.2", "1.1.99");
    assert_no_match("<1.2", "1.2.0");
    assert_match("<=1.2", "1.2.99");
    assert_no_match("<=1.2", "1.3.0");
    assert_match(">=*", "0.0.0");
    assert_no_match(">*", "1.0.0");
    assert_no_match("<*", "1.0.0");
    assert_no_match("!=*", "1.0.0");
    /* Bounds at the top of the number range do not wrap around. */
    assert_no_match(">18446744073709551615", "0.0.0");
    assert_no_match(">18446744073709551615", "18446744073709551615.0.0");
    assert_match(">1.18446744073709551615", "2.0.0");
    assert_no_match(">1.18446744073709551615", "1.18446744073709551615.5");
    assert_match("<=1.18446744073709551615", "1.18446744073709551615.99");
    assert_no_match("<=1.18446744073709551615", "2.0.0");
    assert_match("18446744073709551615.x", "18446744073709551615.7.0");
}

static void test_version__hyphen_ranges(void **state)
{
    (void)state;
    assert_match("1.2.3 - 2.3.4", "1.2.3");
    assert_match("1.2.3 - 2.3.4", "2.3.4");
    assert_no_match("1.2.3 - 2.3.4", "2.3.5");
    assert_no_match("1.2.3 - 2.3.4", "1.2.2");
    assert_match("1.2 - 2.3", "2.3.9"); /* partial upper end covers 2.3.x */
    assert_no_match("1.2 - 2.3", "2.4.0");
    assert_match("1.2 - 2.3", "1.2.0");
    assert_match("* - 2", "0.0.1");
    /* A pre-release at either end admits pre-releases of that M.m.p. */
    assert_match("1.0.0-rc.1 - 1.0.0", "1.0.0-rc.2");
    assert_match("0.9.0 - 1.0.0-rc.1", "1.0.0-rc.0");
    assert_no_match("0.9.0 - 1.0.0-rc.1", "1.0.0-rc.2");
    assert_no_match("0.9.0 - 1.0.0-rc.1", "0.9.5-rc.0");
}

static void test_version__prerelease_rule(void **state)
{
    (void)state;
    /* A pre-release matches only if the same alternative names a
     * pre-release of the same MAJOR.MINOR.PATCH (npm). */
    assert_no_match(">=1.0.0", "2.0.0-rc.1");
    assert_no_match("*", "1.0.0-alpha");
    assert_no_match("^1.2.3", "1.5.0-beta");
    assert_no_match("<2.0.0", "2.0.0-rc.1");
    assert_no_match("^1.2.3", "2.0.0-rc.1");
    assert_match(">=2.0.0-rc.0", "2.0.0-rc.1");
    assert_match(">=2.0.0-rc.0", "2.0.0");
    assert_match(">=2.0.0-rc.0", "2.1.0");
    assert_no_match(">=2.0.0-rc.0", "2.1.0-rc.1"); /* other M.m.p */
    assert_match("^1.2.3-beta.2", "1.2.3-beta.3");
    assert_no_match("^1.2.3-beta.2", "1.2.3-beta.1");
    assert_no_match("^1.2.3-beta.2", "1.2.4-beta.9");
    assert_match("^1.2.3-beta.2", "1.2.4");
    assert_match("=1.0.0-alpha", "1.0.0-alpha");
    assert_match("1.0.0-alpha", "1.0.0-alpha+build");
    assert_no_match("1.0.0-alpha", "1.0.0-alpha.1");
    assert_match("~1.2.3-beta", "1.2.3-rc.1");
    assert_match(">1.0.0-alpha <1.0.0", "1.0.0-beta");
    /* Synthesized upper bounds exclude the next version's pre-releases. */
    assert_no_match(">=1.9.0-0 <2", "2.0.0-0");
    assert_no_match("1.x || >=2.0.0-rc.0 <2.0.0-rc.5", "2.0.0-rc.7");
    assert_match("1.x || >=2.0.0-rc.0 <2.0.0-rc.5", "2.0.0-rc.3");
}

static void test_version__constraint_errors_point_at_the_character(void **state)
{
    (void)state;
    assert_invalid_constraint("", PKGSTORE_EINVALID, "empty constraint");
    assert_invalid_constraint("   ", PKGSTORE_EINVALID, "empty constraint");
    assert_invalid_constraint(">=1.2 <<1.3", PKGSTORE_EINVALID,
                              "at position 7 ('<') in \">=1.2 <[<]1.3\"");
    assert_invalid_constraint("=>1.0", PKGSTORE_EINVALID, "position 1 ('>')");
    assert_invalid_constraint("1.0 | 2.0", PKGSTORE_EINVALID, "expected \"||\" at position 4");
    assert_invalid_constraint("1.0 ||", PKGSTORE_EINVALID, "expected a comparator at position 6");
    assert_invalid_constraint("|| 1.0", PKGSTORE_EINVALID, "expected a comparator at position 0");
    assert_invalid_constraint("1.0 || || 2", PKGSTORE_EINVALID, "position 7");
    assert_invalid_constraint(">=", PKGSTORE_EINVALID, "end of input");
    assert_invalid_constraint("1.x.3", PKGSTORE_EINVALID,
                              "only wildcards may follow a wildcard at position 4");
    assert_invalid_constraint("1.2-beta", PKGSTORE_EINVALID, "needs a full MAJOR.MINOR.PATCH");
    assert_invalid_constraint("1.02", PKGSTORE_EINVALID, "leading zero in the minor number");
    assert_invalid_constraint(">=1.2<2", PKGSTORE_EINVALID, "position 5 ('<')");
    assert_invalid_constraint("1.2.3.4", PKGSTORE_EINVALID, "position 5");
    assert_invalid_constraint("1.0,", PKGSTORE_EINVALID, "after ','");
    assert_invalid_constraint("~>1.0", PKGSTORE_EINVALID, "position 1");
    assert_invalid_constraint("1.2.3 -", PKGSTORE_EINVALID, "position 6");
    assert_invalid_constraint("latest", PKGSTORE_EINVALID, "position 0 ('l')");
    assert_invalid_constraint(">=1.0.0-01", PKGSTORE_EINVALID, "leading zero");
    assert_invalid_constraint("99999999999999999999", PKGSTORE_EINVALID, "larger than");
}

static void test_version__constraint_limits(void **state)
{
    char *text;
    size_t len = 0;
    pkgstore_version_constraint *c = NULL;
    (void)state;
    text = calloc(1, PKGSTORE_VERSION_CONSTRAINT_MAX_LEN + 2);
    assert_non_null(text);
    memset(text, ' ', PKGSTORE_VERSION_CONSTRAINT_MAX_LEN + 1);
    text[0] = '1';
    assert_invalid_constraint(text, PKGSTORE_ELIMIT, "longer than 4096");
    memset(text, 0, PKGSTORE_VERSION_CONSTRAINT_MAX_LEN + 2);
    for (int i = 0; i < PKGSTORE_VERSION_CONSTRAINT_MAX_TERMS; i++)
        len += (size_t)sprintf(text + len, "%s%d", i ? " || " : "", i);
    assert_int_equal(pkgstore_version_constraint_parse(&c, text), 0);
    assert_match(text, "255.1.0");
    pkgstore_version_constraint_free(c);
    strcat(text, " || 999");
    assert_invalid_constraint(text, PKGSTORE_ELIMIT, "more than 256");
    free(text);
}

static void test_version__constraint_keeps_its_text(void **state)
{
    pkgstore_version_constraint *c = NULL;
    (void)state;
    assert_int_equal(pkgstore_version_constraint_parse(&c, " ^0.98 || ~1.2 "), 0);
    assert_string_equal(pkgstore_version_constraint_string(c), " ^0.98 || ~1.2 ");
    pkgstore_version_constraint_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version__parses_fields),
        cmocka_unit_test(test_version__leading_v_is_normalized_away),
        cmocka_unit_test(test_version__format_round_trips),
        cmocka_unit_test(test_version__spec_precedence_examples),
        cmocka_unit_test(test_version__precedence_details),
        cmocka_unit_test(test_version__rejects_invalid_forms),
        cmocka_unit_test(test_version__error_detail_shows_position_and_excerpt),
        cmocka_unit_test(test_version__length_limits),
        cmocka_unit_test(test_version__parse_n_and_misuse),
        cmocka_unit_test(test_version__constraint_operators),
        cmocka_unit_test(test_version__constraint_and_or),
        cmocka_unit_test(test_version__caret_ranges),
        cmocka_unit_test(test_version__tilde_ranges),
        cmocka_unit_test(test_version__wildcards_and_partials),
        cmocka_unit_test(test_version__hyphen_ranges),
        cmocka_unit_test(test_version__prerelease_rule),
        cmocka_unit_test(test_version__constraint_errors_point_at_the_character),
        cmocka_unit_test(test_version__constraint_limits),
        cmocka_unit_test(test_version__constraint_keeps_its_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
