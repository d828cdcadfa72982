/*
 * test_error: the code table (messages and names for every code, numbers
 * that never change), the thread-local detail message, and the private
 * ps_error_* helpers every module uses. No files, so no temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <pkgstore.h>

#include "error.h" /* ps_error_set and friends (the tests link the static library) */

static void test_error__every_code_has_a_message_and_a_name(void **state)
{
    static const struct {
        int code;
        int number;
        const char *name;
        const char *message;
    } table[] = {
        {PKGSTORE_OK, 0, "OK", "success"},
        {PKGSTORE_ENOTFOUND, -1, "NOTFOUND", "not found"},
        {PKGSTORE_EEXISTS, -2, "EXISTS", "already exists"},
        {PKGSTORE_EINVALID, -3, "INVALID", "invalid argument"},
        {PKGSTORE_ENOMEM, -4, "NOMEM", "out of memory"},
        {PKGSTORE_EIO, -5, "IO", "input/output error"},
        {PKGSTORE_ENOSPC, -6, "NOSPC", "no space left on device"},
        {PKGSTORE_EDIGEST_MISMATCH, -7, "DIGEST_MISMATCH", "digest mismatch"},
        {PKGSTORE_ESIZE_MISMATCH, -8, "SIZE_MISMATCH", "size mismatch"},
        {PKGSTORE_ECORRUPT, -9, "CORRUPT", "corrupt data"},
        {PKGSTORE_EFORMAT, -10, "FORMAT", "unsupported or malformed format"},
        {PKGSTORE_ELOCKED, -11, "LOCKED", "locked by another process"},
        {PKGSTORE_EUNSUPPORTED, -12, "UNSUPPORTED", "unsupported operation"},
        {PKGSTORE_EDENIED, -13, "DENIED", "permission denied"},
        {PKGSTORE_ENET, -14, "NET", "network error"},
        {PKGSTORE_ELIMIT, -15, "LIMIT", "limit exceeded"},
        {PKGSTORE_EUNSAFE, -16, "UNSAFE", "unsafe content refused"},
        {PKGSTORE_EDEPENDENCY, -17, "DEPENDENCY", "unmet dependency"},
        {PKGSTORE_ECONFLICT, -18, "CONFLICT", "conflicts with existing state"},
        {PKGSTORE_ETIMEOUT, -19, "TIMEOUT", "timed out"},
        {PKGSTORE_EINTERNAL, -20, "INTERNAL", "internal error"},
    };
    size_t listed = 0;
    (void)state;
#define COUNT_CODE(name, value, message) listed++;
    PKGSTORE_ERROR_LIST(COUNT_CODE)
#undef COUNT_CODE
    /* The table above covers the whole list: a new code needs a test row. */
    assert_int_equal(listed, sizeof(table) / sizeof(table[0]));
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        /* Numbers never change. */
        assert_int_equal(table[i].code, table[i].number);
        assert_string_equal(pkgstore_error_name(table[i].code), table[i].name);
        assert_string_equal(pkgstore_strerror(table[i].code), table[i].message);
        /* Names and messages are distinct. */
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(pkgstore_error_name(table[i].code),
                                    pkgstore_error_name(table[j].code));
            assert_string_not_equal(pkgstore_strerror(table[i].code),
                                    pkgstore_strerror(table[j].code));
        }
    }
}

static void test_error__unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(pkgstore_strerror(-21), "unknown error");
    assert_string_equal(pkgstore_strerror(1), "unknown error");
    assert_string_equal(pkgstore_strerror(INT32_MIN), "unknown error");
    assert_string_equal(pkgstore_error_name(-9999), "UNKNOWN");
    assert_string_equal(pkgstore_error_name(42), "UNKNOWN");
}

static void test_error__detail_set_clear_prefix(void **state)
{
    (void)state;
    pkgstore_error_clear();
    assert_string_equal(pkgstore_error_detail(), "");
    assert_int_equal(ps_error_set(PKGSTORE_ECORRUPT, "blob %s: %d bytes", "ab12", 7),
                     PKGSTORE_ECORRUPT);
    assert_string_equal(pkgstore_error_detail(), "blob ab12: 7 bytes");
    ps_error_prefix("store %s", "/srv");
    assert_string_equal(pkgstore_error_detail(), "store /srv: blob ab12: 7 bytes");
    pkgstore_error_clear();
    ps_error_prefix("only");
    assert_string_equal(pkgstore_error_detail(), "only");
    pkgstore_error_clear();
    assert_string_equal(pkgstore_error_detail(), "");
}

static void test_error__detail_is_truncated_not_overflowed(void **state)
{
    char big[3000];
    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ps_error_set(PKGSTORE_EINVALID, "%s", big);
    assert_true(strlen(pkgstore_error_detail()) < sizeof(big) - 1);
    assert_true(strlen(pkgstore_error_detail()) > 500);
    ps_error_prefix("%s", big);
    assert_true(strlen(pkgstore_error_detail()) < sizeof(big) - 1);
    assert_int_equal(ps_error_errno(ENOSPC, "%s", big), PKGSTORE_ENOSPC);
    assert_true(strlen(pkgstore_error_detail()) < sizeof(big) - 1);
}

static void test_error__errno_mapping(void **state)
{
    static const struct {
        int err;
        int code;
    } map[] = {
        {ENOSPC, PKGSTORE_ENOSPC},       {EDQUOT, PKGSTORE_ENOSPC},
        {ENOENT, PKGSTORE_ENOTFOUND},    {ENOTDIR, PKGSTORE_ENOTFOUND},
        {EEXIST, PKGSTORE_EEXISTS},      {EACCES, PKGSTORE_EDENIED},
        {EPERM, PKGSTORE_EDENIED},       {EROFS, PKGSTORE_EDENIED},
        {ENOMEM, PKGSTORE_ENOMEM},       {EWOULDBLOCK, PKGSTORE_ELOCKED},
        {EINVAL, PKGSTORE_EINVALID},     {ENAMETOOLONG, PKGSTORE_EINVALID},
        {EIO, PKGSTORE_EIO},             {EBADF, PKGSTORE_EIO},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_int_equal(ps_error_code_from_errno(map[i].err), map[i].code);
    assert_int_equal(ps_error_errno(ENOSPC, "blobs/sha256/ab/%s: fsync", "ab12"), PKGSTORE_ENOSPC);
    assert_string_equal(pkgstore_error_detail(), "blobs/sha256/ab/ab12: fsync: No space left on device");
}

struct thread_result {
    int ok;
    char seen_at_start[64];
};

static void *other_thread(void *arg)
{
    struct thread_result *result = arg;
    /* A new thread starts with no detail, whatever the main thread did. */
    snprintf(result->seen_at_start, sizeof(result->seen_at_start), "%s", pkgstore_error_detail());
    for (int i = 0; i < 1000; i++) {
        char want[32];
        snprintf(want, sizeof(want), "thread %d", i);
        ps_error_set(PKGSTORE_EIO, "thread %d", i);
        if (strcmp(pkgstore_error_detail(), want) != 0)
            return NULL;
    }
    result->ok = 1;
    return NULL;
}

static void test_error__detail_is_thread_local(void **state)
{
    pthread_t thread;
    struct thread_result result;
    pkgstore_semver v;
    (void)state;
    memset(&result, 0, sizeof(result));
    ps_error_set(PKGSTORE_EINVALID, "main thread detail");
    assert_int_equal(pthread_create(&thread, NULL, other_thread, &result), 0);
    /* Meanwhile this thread keeps failing on its own. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(pkgstore_version_parse(&v, "1.2"), PKGSTORE_EINVALID);
        assert_non_null(strstr(pkgstore_error_detail(), "version:"));
    }
    ps_error_set(PKGSTORE_EINVALID, "main thread detail");
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_true(result.ok);
    assert_string_equal(result.seen_at_start, "");
    assert_string_equal(pkgstore_error_detail(), "main thread detail");
}

static void test_error__library_version(void **state)
{
    char from_numbers[32];
    (void)state;
    /* the headers' version, at compile time, in its three spellings */
    snprintf(from_numbers, sizeof(from_numbers), "%d.%d.%d", PKGSTORE_VERSION_MAJOR,
             PKGSTORE_VERSION_MINOR, PKGSTORE_VERSION_PATCH);
    assert_string_equal(from_numbers, PKGSTORE_VERSION_STRING);
    assert_int_equal(PKGSTORE_VERSION_NUMBER, PKGSTORE_VERSION_MAJOR * 10000 +
                                                  PKGSTORE_VERSION_MINOR * 100 +
                                                  PKGSTORE_VERSION_PATCH);
#if PKGSTORE_VERSION_NUMBER < 100
#error "PKGSTORE_VERSION_NUMBER is usable in #if and is at least 0.1.0"
#endif
    /* the library built from these headers says the same at run time */
    assert_non_null(pkgstore_library_version());
    assert_string_equal(pkgstore_library_version(), PKGSTORE_VERSION_STRING);
    /* the old name stays, deprecated, for the 0.1 series */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    assert_string_equal(pkgstore_version(), pkgstore_library_version());
#pragma GCC diagnostic pop
    pkgstore_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error__every_code_has_a_message_and_a_name),
        cmocka_unit_test(test_error__unknown_codes),
        cmocka_unit_test(test_error__detail_set_clear_prefix),
        cmocka_unit_test(test_error__detail_is_truncated_not_overflowed),
        cmocka_unit_test(test_error__errno_mapping),
        cmocka_unit_test(test_error__detail_is_thread_local),
        cmocka_unit_test(test_error__library_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
