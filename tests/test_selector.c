/*
 * Label selectors and label validation: every form, canonical text, errors
 * with their positions, and matching. Pure functions: no store needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pkgstore.h"

/* Parse text and check its canonical form. */
static void assert_canonical(const char *text, const char *expected)
{
    pkgstore_selector *sel = NULL;
    int rc = pkgstore_selector_parse(&sel, text);
    if (rc != 0)
        print_error("parse '%s': %s\n", text, pkgstore_error_detail());
    assert_int_equal(rc, 0);
    assert_string_equal(pkgstore_selector_string(sel), expected);

    /* the canonical text parses to itself */
    pkgstore_selector *again = NULL;
    assert_int_equal(pkgstore_selector_parse(&again, expected), 0);
    assert_string_equal(pkgstore_selector_string(again), expected);
    pkgstore_selector_free(again);
    pkgstore_selector_free(sel);
}

/* Parse text, expect failure with code and a detail containing needle. */
static void assert_parse_error(const char *text, int code, const char *needle)
{
    pkgstore_selector *sel = (pkgstore_selector *)0x1;
    int rc = pkgstore_selector_parse(&sel, text);
    assert_int_equal(rc, code);
    assert_null(sel);
    if (!strstr(pkgstore_error_detail(), needle)) {
        print_error("selector '%s': detail '%s' lacks '%s'\n", text, pkgstore_error_detail(),
                    needle);
        fail();
    }
}

static int matches(const char *text, const pkgstore_label *labels, size_t count)
{
    pkgstore_selector *sel = NULL;
    assert_int_equal(pkgstore_selector_parse(&sel, text), 0);
    int m = pkgstore_selector_matches(sel, labels, count);
    pkgstore_selector_free(sel);
    return m;
}

static void test_selector__every_form_parses(void **state)
{
    (void)state;
    assert_canonical("env=dev", "env=dev");
    assert_canonical("env==dev", "env=dev");
    assert_canonical("env!=prod", "env!=prod");
    assert_canonical("env in (dev,staging)", "env in (dev,staging)");
    assert_canonical("env notin (prod)", "env notin (prod)");
    assert_canonical("canary", "canary");
    assert_canonical("!canary", "!canary");
    assert_canonical("env=", "env=");
    assert_canonical("example.com/ring=a", "example.com/ring=a");
}

static void test_selector__whitespace_tolerant(void **state)
{
    (void)state;
    assert_canonical("  env = dev ,  canary  ", "canary,env=dev");
    assert_canonical("env\tin\t( b ,a , b )", "env in (a,b)");
    assert_canonical("! canary , env != prod", "!canary,env!=prod");
    assert_canonical("env in(a)", "env in (a)");
    assert_canonical("", "");
    assert_canonical("   ", "");
}

static void test_selector__canonical_sorted_and_deduplicated(void **state)
{
    (void)state;
    assert_canonical("zone=b,env=dev,env=dev,canary", "canary,env=dev,zone=b");
    assert_canonical("env in (c,a,b,a)", "env in (a,b,c)");
    assert_canonical("env!=x,env=y,!env", "!env,env=y,env!=x");
}

static void test_selector__errors_name_the_position(void **state)
{
    (void)state;
    assert_parse_error("env=dev,", PKGSTORE_EINVALID, "position 9: expected a requirement");
    assert_parse_error(",env", PKGSTORE_EINVALID, "position 1: expected a label key");
    assert_parse_error("env=dev,,x", PKGSTORE_EINVALID, "position 9: expected a requirement");
    assert_parse_error("env=dev x", PKGSTORE_EINVALID, "position 9: expected ',' or the end");
    assert_parse_error("env ~ dev", PKGSTORE_EINVALID, "position 5: expected '='");
    assert_parse_error("env in a", PKGSTORE_EINVALID, "position 8: expected '('");
    assert_parse_error("env in (a", PKGSTORE_EINVALID, "position 10: expected ',' or ')'");
    assert_parse_error("env in ()", PKGSTORE_EINVALID, "position 9: expected a label value");
    assert_parse_error("env in (a,)", PKGSTORE_EINVALID, "position 11: expected a label value");
    assert_parse_error("env=d$v", PKGSTORE_EINVALID, "position 6: expected ',' or the end, found '$'");
    assert_parse_error("env=$", PKGSTORE_EINVALID, "position 5: expected a label value");
    assert_parse_error("!", PKGSTORE_EINVALID, "position 2: expected a label key, found end");
    assert_parse_error("!env=x", PKGSTORE_EINVALID, "position 5: expected ',' or the end");
    assert_parse_error("-env=x", PKGSTORE_EINVALID, "position 1: label key: must start and end");
    assert_parse_error("env=x-", PKGSTORE_EINVALID, "position 5: label value: must start and end");
    assert_parse_error("a/b/c=x", PKGSTORE_EINVALID, "position 1: label key: more than one '/'");
    assert_parse_error("Ex.com/a=x", PKGSTORE_EINVALID, "invalid character 0x45 in prefix");
    assert_parse_error("env=\xc3\xa9", PKGSTORE_EINVALID, "position 5: expected a label value, found byte 0xc3");
}

static void test_selector__limits(void **state)
{
    (void)state;
    char key[80], value[80], text[2048];

    memset(key, 'k', 64);
    key[64] = '\0';
    snprintf(text, sizeof(text), "%s=x", key);
    assert_parse_error(text, PKGSTORE_EINVALID, "label key: longer than 63");
    key[63] = '\0';
    snprintf(text, sizeof(text), "%s=x", key);
    assert_canonical(text, text);

    memset(value, 'v', 64);
    value[64] = '\0';
    snprintf(text, sizeof(text), "k=%s", value);
    assert_parse_error(text, PKGSTORE_EINVALID, "label value: longer than 63");

    memset(text, ' ', PKGSTORE_SELECTOR_MAX + 1);
    text[PKGSTORE_SELECTOR_MAX + 1] = '\0';
    assert_parse_error(text, PKGSTORE_ELIMIT, "longer than");
    assert_parse_error(NULL, PKGSTORE_EINVALID, "NULL");
}

static void test_selector__matching(void **state)
{
    (void)state;
    const pkgstore_label labels[] = {
        {"env", "dev"}, {"canary", "true"}, {"zone", "eu-1"}, {"empty", ""}};
    const size_t n = sizeof(labels) / sizeof(labels[0]);

    assert_true(matches("", labels, n));
    assert_true(matches("", NULL, 0));
    assert_true(matches("env=dev", labels, n));
    assert_false(matches("env=prod", labels, n));
    assert_false(matches("missing=dev", labels, n));
    assert_true(matches("env!=prod", labels, n));
    assert_false(matches("env!=dev", labels, n));
    assert_true(matches("missing!=dev", labels, n)); /* absent counts as different */
    assert_true(matches("env in (prod,dev)", labels, n));
    assert_false(matches("env in (prod,staging)", labels, n));
    assert_false(matches("missing in (dev)", labels, n));
    assert_true(matches("env notin (prod)", labels, n));
    assert_false(matches("env notin (dev)", labels, n));
    assert_true(matches("missing notin (dev)", labels, n));
    assert_true(matches("canary", labels, n));
    assert_false(matches("missing", labels, n));
    assert_true(matches("!missing", labels, n));
    assert_false(matches("!canary", labels, n));
    assert_true(matches("empty=", labels, n));
    assert_true(matches("empty", labels, n));
    assert_true(matches("env=dev,canary=true,zone in (eu-1,eu-2)", labels, n));
    assert_false(matches("env=dev,canary=false", labels, n)); /* AND */
    assert_false(pkgstore_selector_matches(NULL, labels, n));
}

static void test_selector__label_validation(void **state)
{
    (void)state;
    assert_int_equal(pkgstore_label_key_validate("env"), 0);
    assert_int_equal(pkgstore_label_key_validate("app.kubernetes.io/name"), 0);
    assert_int_equal(pkgstore_label_key_validate("a_b.c-d"), 0);
    assert_int_equal(pkgstore_label_key_validate(""), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_key_validate("a b"), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "position 2"));
    assert_int_equal(pkgstore_label_key_validate("/a"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_key_validate("a/"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_key_validate("_a"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_key_validate(NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_value_validate(""), 0);
    assert_int_equal(pkgstore_label_value_validate("v1.2_3-x"), 0);
    assert_int_equal(pkgstore_label_value_validate("a,b"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_value_validate(".a"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_label_value_validate(NULL), PKGSTORE_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selector__every_form_parses),
        cmocka_unit_test(test_selector__whitespace_tolerant),
        cmocka_unit_test(test_selector__canonical_sorted_and_deduplicated),
        cmocka_unit_test(test_selector__errors_name_the_position),
        cmocka_unit_test(test_selector__limits),
        cmocka_unit_test(test_selector__matching),
        cmocka_unit_test(test_selector__label_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
