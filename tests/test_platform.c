/*
 * test_platform: parsing with every alias of the DESIGN.md table, ranking
 * order, best-match ties and host detection. Pure value code apart from
 * uname(), so no temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include <cmocka.h>

#include <pkgstore.h>

static pkgstore_platform P(const char *text)
{
    pkgstore_platform p;
    if (pkgstore_platform_parse(&p, text) != 0)
        fail_msg("parse \"%s\": %s", text, pkgstore_error_detail());
    return p;
}

static void assert_normalizes(const char *input, const char *canonical)
{
    char out[PKGSTORE_PLATFORM_STR_SIZE], again[PKGSTORE_PLATFORM_STR_SIZE];
    if (pkgstore_platform_normalize(out, input) != 0)
        fail_msg("normalize \"%s\": %s", input, pkgstore_error_detail());
    if (strcmp(out, canonical) != 0)
        fail_msg("normalize \"%s\" = \"%s\", want \"%s\"", input, out, canonical);
    assert_int_equal(pkgstore_platform_normalize(again, out), 0);
    assert_string_equal(again, out);
}

static void assert_invalid(const char *input, const char *detail_part)
{
    char out[PKGSTORE_PLATFORM_STR_SIZE];
    pkgstore_platform p;
    int rc = pkgstore_platform_normalize(out, input);
    if (rc != PKGSTORE_EINVALID)
        fail_msg("\"%s\": rc %d (\"%s\"), expected EINVALID", input, rc, out);
    assert_string_equal(out, "");
    if (detail_part != NULL && strstr(pkgstore_error_detail(), detail_part) == NULL)
        fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", input, pkgstore_error_detail(), detail_part);
    assert_int_equal(pkgstore_platform_parse(&p, input), PKGSTORE_EINVALID);
    assert_string_equal(p.os, "");
    assert_string_equal(p.arch, "");
}

static int R(const char *node, const char *artifact)
{
    pkgstore_platform n = P(node), a = P(artifact);
    return pkgstore_platform_rank(&n, &a);
}

static void test_platform__every_alias_of_the_table(void **state)
{
    (void)state;
    /* x86_64, x86-64, x64, amd64 -> amd64 */
    assert_normalizes("linux/x86_64", "linux/amd64");
    assert_normalizes("linux/x86-64", "linux/amd64");
    assert_normalizes("linux/x64", "linux/amd64");
    assert_normalizes("linux/amd64", "linux/amd64");
    /* i386, i686, 386 -> 386 */
    assert_normalizes("linux/i386", "linux/386");
    assert_normalizes("linux/i686", "linux/386");
    assert_normalizes("linux/386", "linux/386");
    /* aarch64, arm64 -> arm64 (variant v8 dropped) */
    assert_normalizes("linux/aarch64", "linux/arm64");
    assert_normalizes("linux/arm64", "linux/arm64");
    assert_normalizes("linux/arm64/v8", "linux/arm64");
    assert_normalizes("linux/aarch64/v8", "linux/arm64");
    /* armv7l, armhf, arm -> arm/v7 */
    assert_normalizes("linux/armv7l", "linux/arm/v7");
    assert_normalizes("linux/armhf", "linux/arm/v7");
    assert_normalizes("linux/arm", "linux/arm/v7");
    /* armv6l, armel -> arm/v6 */
    assert_normalizes("linux/armv6l", "linux/arm/v6");
    assert_normalizes("linux/armel", "linux/arm/v6");
    /* macos -> darwin */
    assert_normalizes("macos/arm64", "darwin/arm64");
    assert_normalizes("macos/x86_64", "darwin/amd64");
    assert_normalizes("darwin/amd64", "darwin/amd64");
}

static void test_platform__lower_case_variants_and_any(void **state)
{
    (void)state;
    assert_normalizes("Linux/X86_64", "linux/amd64");
    assert_normalizes("LINUX/AARCH64/V8", "linux/arm64");
    assert_normalizes("MacOS/ARM64", "darwin/arm64");
    assert_normalizes("linux/arm/v6", "linux/arm/v6");
    assert_normalizes("linux/arm/5", "linux/arm/v5"); /* digits get their 'v' */
    assert_normalizes("linux/arm/V7", "linux/arm/v7");
    assert_normalizes("linux/arm64/8", "linux/arm64");
    assert_normalizes("linux/armv7l/v7", "linux/arm/v7"); /* consistent variant */
    assert_normalizes("linux/x86_64/v3", "linux/amd64/v3");
    assert_normalizes("windows/amd64", "windows/amd64");
    assert_normalizes("linux/riscv64", "linux/riscv64"); /* unknown arches pass */
    assert_normalizes("any/any", "any/any");
    assert_normalizes("linux/any", "linux/any");
    assert_normalizes("ANY/amd64", "any/amd64");
}

static void test_platform__fields(void **state)
{
    (void)state;
    pkgstore_platform p = P("linux/armhf");
    char text[PKGSTORE_PLATFORM_STR_SIZE];
    assert_string_equal(p.os, "linux");
    assert_string_equal(p.arch, "arm");
    assert_string_equal(p.variant, "v7");
    assert_int_equal(pkgstore_platform_format(text, &p), strlen("linux/arm/v7"));
    assert_string_equal(text, "linux/arm/v7");
    p = P("linux/amd64");
    assert_string_equal(p.variant, "");
    assert_int_equal(pkgstore_platform_format(text, &p), 11);
}

static void test_platform__rejects_bad_input(void **state)
{
    char longest[64];
    (void)state;
    assert_invalid("", "empty string");
    assert_invalid("linux", "missing the arch");
    assert_invalid("linux/", "empty arch");
    assert_invalid("/amd64", "empty os");
    assert_invalid("linux/arm/", "empty variant");
    assert_invalid("linux//amd64", "empty arch");
    assert_invalid("linux/arm/v7/x", "too many '/'");
    assert_invalid("linux /amd64", "invalid byte 0x20 in os at position 5");
    assert_invalid("linux/amd64\n", "invalid byte 0x0a in arch at position 11");
    assert_invalid("linux/am*d64", "invalid character '*' in arch at position 8");
    assert_invalid("linux/\xc3\xa9", "invalid byte 0xc3");
    assert_invalid("linux/armv7l/v6", "implies variant v7, not v6");
    assert_invalid("linux/armel/v7", "implies variant v6, not v7");
    assert_invalid("linux/any/v7", "\"any\" takes no variant");
    memset(longest, 'x', 32);
    strcpy(longest + 32, "/amd64");
    assert_invalid(longest, "os longer than 31 characters");
    strcpy(longest + 31, "/amd64");
    assert_normalizes(longest, longest); /* 31 characters fit */
    assert_invalid("linux/arm/v12345678901234567", "variant longer than 15");
    {
        pkgstore_platform p;
        char out[PKGSTORE_PLATFORM_STR_SIZE];
        assert_int_equal(pkgstore_platform_parse(&p, NULL), PKGSTORE_EINVALID);
        assert_int_equal(pkgstore_platform_parse(NULL, "linux/amd64"), PKGSTORE_EINVALID);
        assert_int_equal(pkgstore_platform_normalize(out, NULL), PKGSTORE_EINVALID);
    }
}

/* A platform ends up in paths and URLs: "../..", "./." or "linux/amd64/.."
 * must never pass as one. A field starts with a letter or a digit. */
static void test_platform__rejects_dot_fields(void **state)
{
    (void)state;
    assert_invalid("../..", "os must start with a letter or a digit");
    assert_invalid("./.", "os must start with a letter or a digit");
    assert_invalid("linux/..", "arch must start with a letter or a digit");
    assert_invalid("linux/amd64/..", "variant must start with a letter or a digit");
    assert_invalid("linux/amd64/.", "variant must start with a letter or a digit");
    assert_invalid("linux/.hidden", "arch must start with a letter or a digit");
    assert_invalid("-linux/amd64", "os must start with a letter or a digit");
    assert_invalid("linux/_x", "arch must start with a letter or a digit");
    assert_normalizes("linux/amd64/v1.2", "linux/amd64/v1.2"); /* dots inside stay valid */
    assert_normalizes("linux/x86_64", "linux/amd64");
}

static void test_platform__ranking_order(void **state)
{
    (void)state;
    /* Exact matches rank 0, whatever the input spelling. */
    assert_int_equal(R("linux/x86_64", "linux/amd64"), 0);
    assert_int_equal(R("linux/armv7l", "linux/armhf"), 0);
    /* amd64 runs 386. */
    assert_int_equal(R("linux/amd64", "linux/386"), 1);
    assert_int_equal(R("linux/386", "linux/amd64"), PKGSTORE_PLATFORM_RANK_NONE);
    /* arm/v7 runs v6, then v5; not v8 and not arm64. */
    assert_true(R("linux/arm/v7", "linux/arm/v6") > 0);
    assert_true(R("linux/arm/v7", "linux/arm/v5") > R("linux/arm/v7", "linux/arm/v6"));
    assert_int_equal(R("linux/arm/v6", "linux/arm/v7"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("linux/arm/v7", "linux/arm64"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("linux/arm/v6", "linux/arm/v5"), 1);
    /* arm64 runs arm64, then arm/v8, v7, v6, v5 in that order. */
    {
        static const char *const order[] = {"linux/arm64", "linux/arm/v8", "linux/arm/v7",
                                            "linux/arm/v6", "linux/arm/v5", "linux/any",
                                            "any/arm64", "any/any"};
        int previous = -1;
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            int rank = R("linux/aarch64", order[i]);
            if (rank <= previous)
                fail_msg("rank(linux/arm64, %s) = %d, not above %d", order[i], rank, previous);
            previous = rank;
        }
    }
    /* `any` comes after every real fallback. */
    assert_true(R("linux/amd64", "linux/any") > R("linux/amd64", "linux/386"));
    assert_true(R("linux/amd64", "any/amd64") > R("linux/amd64", "linux/any"));
    assert_true(R("linux/amd64", "any/any") > R("linux/amd64", "any/amd64"));
    assert_true(R("linux/amd64", "any/386") > R("linux/amd64", "linux/any"));
    /* Other OSes and arches never match. */
    assert_int_equal(R("linux/amd64", "darwin/amd64"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("linux/amd64", "linux/arm64"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("linux/arm64", "linux/amd64"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("darwin/arm64", "any/amd64"), PKGSTORE_PLATFORM_RANK_NONE);
    /* A variant-less build runs on every variant; not the other way round. */
    assert_int_equal(R("linux/amd64/v3", "linux/amd64"), 1);
    assert_int_equal(R("linux/amd64", "linux/amd64/v3"), PKGSTORE_PLATFORM_RANK_NONE);
    assert_int_equal(R("linux/amd64/v3", "linux/386"), 1);
}

/* Found by fuzz_platform's first replay: any/any ranked 8 against itself
 * because the `any` fallback was checked before the exact match. */
static void test_platform__wildcard_platform_is_exact_for_itself(void **state)
{
    (void)state;
    assert_int_equal(R("any/any", "any/any"), 0);
    assert_int_equal(R("linux/any", "linux/any"), 0);
    assert_int_equal(R("any/amd64", "any/amd64"), 0);
    assert_int_equal(R("any/any", "linux/amd64"), PKGSTORE_PLATFORM_RANK_NONE);
}

static void test_platform__compatible(void **state)
{
    pkgstore_platform node = P("linux/arm64"), art = P("linux/armv6l");
    (void)state;
    assert_true(pkgstore_platform_compatible(&node, &art));
    art = P("linux/x86_64");
    assert_false(pkgstore_platform_compatible(&node, &art));
    assert_false(pkgstore_platform_compatible(NULL, &art));
    assert_int_equal(pkgstore_platform_rank(&node, NULL), PKGSTORE_PLATFORM_RANK_NONE);
}

static void test_platform__best_match(void **state)
{
    pkgstore_platform candidates[6];
    pkgstore_platform node = P("linux/arm64");
    size_t index = 99;
    (void)state;
    candidates[0] = P("any/any");
    candidates[1] = P("linux/arm/v5");
    candidates[2] = P("linux/amd64");
    candidates[3] = P("linux/armv7l");
    candidates[4] = P("linux/aarch64");
    candidates[5] = P("darwin/arm64");
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 6), 0);
    assert_int_equal(index, 4);
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 4), 0);
    assert_int_equal(index, 3); /* arm/v7 beats arm/v5 and any */
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 2), 0);
    assert_int_equal(index, 1);
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 1), 0);
    assert_int_equal(index, 0);
    node = P("windows/386");
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates + 1, 5),
                     PKGSTORE_ENOTFOUND);
    assert_int_equal(index, (size_t)-1);
    assert_non_null(strstr(pkgstore_error_detail(), "no artifact for platform windows/386"));
    assert_int_equal(pkgstore_platform_best_match(&index, &node, NULL, 0), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_platform_best_match(NULL, &node, candidates, 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_platform_best_match(&index, NULL, candidates, 1), PKGSTORE_EINVALID);
}

static void test_platform__best_match_ties_go_to_the_first(void **state)
{
    pkgstore_platform candidates[4];
    pkgstore_platform node = P("linux/amd64");
    size_t index = 99;
    (void)state;
    candidates[0] = P("linux/386");
    candidates[1] = P("linux/x86_64");
    candidates[2] = P("linux/amd64");
    candidates[3] = P("linux/x64");
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 4), 0);
    assert_int_equal(index, 1);
    candidates[0] = P("linux/any");
    candidates[1] = P("linux/i686");
    candidates[2] = P("linux/i386");
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 3), 0);
    assert_int_equal(index, 1);
    candidates[0] = P("any/any");
    candidates[1] = P("any/any");
    assert_int_equal(pkgstore_platform_best_match(&index, &node, candidates, 2), 0);
    assert_int_equal(index, 0);
}

static void test_platform__host(void **state)
{
    pkgstore_platform host, expected;
    struct utsname uts;
    char spec[2 * sizeof(uts.machine) + 2];
    char text[PKGSTORE_PLATFORM_STR_SIZE];
    (void)state;
    assert_int_equal(pkgstore_platform_host(&host), 0);
    assert_int_equal(uname(&uts), 0);
    snprintf(spec, sizeof(spec), "%s/%s", uts.sysname, uts.machine);
    expected = P(spec);
    assert_true(pkgstore_platform_equal(&host, &expected));
    pkgstore_platform_format(text, &host);
    print_message("host platform: %s (uname %s)\n", text, spec);
    /* Whatever the machine, the result is canonical and runs its own builds. */
    assert_normalizes(text, text);
    assert_int_equal(pkgstore_platform_rank(&host, &host), 0);
#if defined(__linux__)
    assert_string_equal(host.os, "linux");
#endif
#if defined(__linux__) && defined(__x86_64__)
    assert_string_equal(text, "linux/amd64");
#elif defined(__linux__) && defined(__aarch64__)
    assert_string_equal(text, "linux/arm64");
#endif
    assert_int_equal(pkgstore_platform_host(NULL), PKGSTORE_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_platform__every_alias_of_the_table),
        cmocka_unit_test(test_platform__lower_case_variants_and_any),
        cmocka_unit_test(test_platform__fields),
        cmocka_unit_test(test_platform__rejects_bad_input),
        cmocka_unit_test(test_platform__rejects_dot_fields),
        cmocka_unit_test(test_platform__ranking_order),
        cmocka_unit_test(test_platform__wildcard_platform_is_exact_for_itself),
        cmocka_unit_test(test_platform__compatible),
        cmocka_unit_test(test_platform__best_match),
        cmocka_unit_test(test_platform__best_match_ties_go_to_the_first),
        cmocka_unit_test(test_platform__host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
