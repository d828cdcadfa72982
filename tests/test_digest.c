/*
 * test_digest: the "sha256:<64 lowercase hex>" grammar with its edge cases,
 * known SHA-256 vectors, streaming against one-shot, and hashing fds and
 * files. Each case gets a fresh mkdtemp() directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <pkgstore.h>

#define EMPTY_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_HEX   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* SHA-256 of the 448-bit FIPS 180-2 message below. */
#define LONG_MSG  "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define LONG_HEX  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
/* SHA-256 of one million 'a' bytes. */
#define MILLION_A_HEX "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

typedef struct fixture {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/test_digest.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void assert_digest_hex(const pkgstore_digest *d, const char *hex)
{
    char text[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(text, d);
    assert_memory_equal(text, "sha256:", 7);
    assert_string_equal(text + 7, hex);
}

static void assert_rejected(const char *text, const char *detail_part)
{
    pkgstore_digest d;
    static const pkgstore_digest zero;
    memset(&d, 0xaa, sizeof(d));
    if (pkgstore_digest_parse(&d, text) != PKGSTORE_EINVALID)
        fail_msg("\"%s\" was accepted", text);
    assert_memory_equal(&d, &zero, sizeof(d)); /* zeroed on failure */
    if (strstr(pkgstore_error_detail(), detail_part) == NULL)
        fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", text, pkgstore_error_detail(), detail_part);
    assert_int_equal(pkgstore_digest_validate(text), PKGSTORE_EINVALID);
}

static void test_digest__parse_and_format_round_trip(void **state)
{
    pkgstore_digest d;
    char text[PKGSTORE_DIGEST_STR_SIZE], hex[PKGSTORE_DIGEST_HEX_LEN + 1];
    (void)state;
    assert_int_equal(pkgstore_digest_parse(&d, "sha256:" ABC_HEX), 0);
    assert_int_equal(d.bytes[0], 0xba);
    assert_int_equal(d.bytes[31], 0xad);
    pkgstore_digest_format(text, &d);
    assert_string_equal(text, "sha256:" ABC_HEX);
    assert_int_equal(strlen(text), PKGSTORE_DIGEST_STR_SIZE - 1);
    pkgstore_digest_format_hex(hex, &d);
    assert_string_equal(hex, ABC_HEX);
    assert_int_equal(pkgstore_digest_parse_hex(&d, ABC_HEX), 0);
    assert_int_equal(pkgstore_digest_validate("sha256:" EMPTY_HEX), 0);
    assert_int_equal(pkgstore_digest_validate("sha256:"
                                              "0000000000000000000000000000000000000000000000000000000000000000"),
                     0);
}

static void test_digest__rejects_upper_case(void **state)
{
    (void)state;
    assert_rejected("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                    "upper-case hex 'B' at position 0");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD",
                    "upper-case hex 'D' at position 63");
    assert_rejected("SHA256:" ABC_HEX, "lower case");
    assert_rejected("Sha256:" ABC_HEX, "lower case");
}

static void test_digest__rejects_wrong_length(void **state)
{
    (void)state;
    assert_rejected("sha256:", "wrong length: 0 hex characters, want 64");
    assert_rejected("sha256:ba7816bf", "wrong length: 8 hex characters");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
                    "wrong length: 63");
    assert_rejected("sha256:" ABC_HEX "0", "too long");
    assert_rejected("sha256:" ABC_HEX ABC_HEX, "too long");
    assert_rejected("sha256:" ABC_HEX "\n", "too long");
}

static void test_digest__rejects_missing_prefix_and_other_algorithms(void **state)
{
    (void)state;
    assert_rejected(ABC_HEX, "missing \"sha256:\" prefix");
    assert_rejected("", "missing \"sha256:\" prefix");
    assert_rejected(":" ABC_HEX, "missing");
    assert_rejected(" sha256:" ABC_HEX, "");
    assert_rejected("sha512:" ABC_HEX ABC_HEX, "unsupported algorithm \"sha512\"");
    assert_rejected("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm \"md5\"");
    assert_rejected("blake3:" ABC_HEX, "unsupported algorithm \"blake3\"");
    assert_rejected("sha256-" ABC_HEX, "missing");
}

static void test_digest__rejects_non_hex_and_odd_bytes(void **state)
{
    pkgstore_digest d;
    const char embedded[] = "sha256:ba7816bf\0" "8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    (void)state;
    assert_rejected("sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                    "non-hex character 'g' at position 0");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a-",
                    "non-hex character '-' at position 63");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae 223b00361a396177a9cb410ff61f20015ad",
                    "non-hex");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae\t223b00361a396177a9cb410ff61f20015ad",
                    "non-hex byte 0x09 at position 28");
    assert_rejected("sha256:ba7816bf8f01cfea414140de5dae\xc3\xa9" "23b00361a396177a9cb410ff61f20015ad",
                    "non-hex byte 0xc3 at position 28");
    /* An embedded NUL ends the C string: the digest is then too short. */
    assert_int_equal(pkgstore_digest_parse(&d, embedded), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "wrong length: 8"));
}

static void test_digest__misuse(void **state)
{
    pkgstore_digest d;
    (void)state;
    assert_int_equal(pkgstore_digest_parse(NULL, "sha256:" ABC_HEX), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_parse(&d, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_parse_hex(&d, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_validate(NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_buffer(NULL, "x", 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_buffer(&d, NULL, 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_buffer(&d, NULL, 0), 0); /* empty input is fine */
    assert_digest_hex(&d, EMPTY_HEX);
    assert_int_equal(pkgstore_digest_ctx_new(NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_ctx_update(NULL, "x", 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_ctx_final(&d, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_fd(&d, NULL, -1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_digest_file(&d, NULL, NULL), PKGSTORE_EINVALID);
    pkgstore_digest_ctx_free(NULL);
}

static void test_digest__known_vectors(void **state)
{
    pkgstore_digest d;
    char *million;
    (void)state;
    assert_int_equal(pkgstore_digest_buffer(&d, "", 0), 0);
    assert_digest_hex(&d, EMPTY_HEX);
    assert_int_equal(pkgstore_digest_buffer(&d, "abc", 3), 0);
    assert_digest_hex(&d, ABC_HEX);
    assert_int_equal(pkgstore_digest_buffer(&d, LONG_MSG, strlen(LONG_MSG)), 0);
    assert_digest_hex(&d, LONG_HEX);
    million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    assert_int_equal(pkgstore_digest_buffer(&d, million, 1000000), 0);
    assert_digest_hex(&d, MILLION_A_HEX);
    free(million);
}

static void test_digest__streaming_equals_one_shot(void **state)
{
    unsigned char data[5000];
    pkgstore_digest one_shot, streamed;
    pkgstore_digest_ctx *ctx = NULL;
    static const size_t splits[] = {0, 1, 63, 64, 65, 2500, 4999, 5000};
    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 131 + 7);
    assert_int_equal(pkgstore_digest_buffer(&one_shot, data, sizeof(data)), 0);
    assert_int_equal(pkgstore_digest_ctx_new(&ctx), 0);
    for (size_t s = 0; s < sizeof(splits) / sizeof(splits[0]); s++) {
        /* The context resets after final, so one context serves every split. */
        assert_int_equal(pkgstore_digest_ctx_update(ctx, data, splits[s]), 0);
        assert_int_equal(pkgstore_digest_ctx_update(ctx, data + splits[s], sizeof(data) - splits[s]),
                         0);
        assert_int_equal(pkgstore_digest_ctx_final(&streamed, ctx), 0);
        assert_true(pkgstore_digest_equal(&one_shot, &streamed));
    }
    /* Byte by byte. */
    for (size_t i = 0; i < sizeof(data); i++)
        assert_int_equal(pkgstore_digest_ctx_update(ctx, data + i, 1), 0);
    assert_int_equal(pkgstore_digest_ctx_final(&streamed, ctx), 0);
    assert_true(pkgstore_digest_equal(&one_shot, &streamed));
    /* A fresh stream after final is the empty digest. */
    assert_int_equal(pkgstore_digest_ctx_final(&streamed, ctx), 0);
    assert_digest_hex(&streamed, EMPTY_HEX);
    assert_int_equal(pkgstore_digest_ctx_update(ctx, "abc", 3), 0);
    assert_int_equal(pkgstore_digest_ctx_final(&streamed, ctx), 0);
    assert_digest_hex(&streamed, ABC_HEX);
    pkgstore_digest_ctx_free(ctx);
}

static void test_digest__equal(void **state)
{
    pkgstore_digest a, b;
    (void)state;
    assert_int_equal(pkgstore_digest_parse(&a, "sha256:" ABC_HEX), 0);
    b = a;
    assert_true(pkgstore_digest_equal(&a, &b));
    b.bytes[31] ^= 1;
    assert_false(pkgstore_digest_equal(&a, &b));
    b = a;
    b.bytes[0] ^= 0x80;
    assert_false(pkgstore_digest_equal(&a, &b));
}

static void test_digest__file_and_fd(void **state)
{
    fixture *f = *state;
    char path[128];
    pkgstore_digest d;
    uint64_t size = 99;
    unsigned char *big;
    const size_t big_len = 3 * 1024 * 1024 + 17; /* crosses the 1 MiB read chunks */
    pkgstore_digest expected;
    int fd;

    snprintf(path, sizeof(path), "%s/abc", f->dir);
    write_file(path, "abc", 3);
    assert_int_equal(pkgstore_digest_file(&d, &size, path), 0);
    assert_digest_hex(&d, ABC_HEX);
    assert_int_equal(size, 3);

    snprintf(path, sizeof(path), "%s/empty", f->dir);
    write_file(path, "", 0);
    assert_int_equal(pkgstore_digest_file(&d, &size, path), 0);
    assert_digest_hex(&d, EMPTY_HEX);
    assert_int_equal(size, 0);

    big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (unsigned char)(i ^ (i >> 8));
    assert_int_equal(pkgstore_digest_buffer(&expected, big, big_len), 0);
    snprintf(path, sizeof(path), "%s/big", f->dir);
    write_file(path, big, big_len);
    assert_int_equal(pkgstore_digest_file(&d, NULL, path), 0);
    assert_true(pkgstore_digest_equal(&d, &expected));

    /* digest_fd hashes from the current offset to EOF. */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 1000, SEEK_SET), 1000);
    assert_int_equal(pkgstore_digest_fd(&d, &size, fd), 0);
    assert_int_equal(size, big_len - 1000);
    assert_int_equal(pkgstore_digest_buffer(&expected, big + 1000, big_len - 1000), 0);
    assert_true(pkgstore_digest_equal(&d, &expected));
    close(fd);

    /* A pipe works too (no size known in advance). */
    {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        assert_int_equal(write(fds[1], "abc", 3), 3);
        close(fds[1]);
        assert_int_equal(pkgstore_digest_fd(&d, &size, fds[0]), 0);
        assert_digest_hex(&d, ABC_HEX);
        assert_int_equal(size, 3);
        close(fds[0]);
    }
    free(big);
}

static void test_digest__file_errors(void **state)
{
    fixture *f = *state;
    char path[128];
    pkgstore_digest d;
    uint64_t size = 99;
    int fd;

    snprintf(path, sizeof(path), "%s/missing", f->dir);
    assert_int_equal(pkgstore_digest_file(&d, &size, path), PKGSTORE_ENOTFOUND);
    assert_int_equal(size, 0);
    assert_non_null(strstr(pkgstore_error_detail(), path));

    /* A directory cannot be read: an I/O error naming the path. */
    assert_int_equal(pkgstore_digest_file(&d, NULL, f->dir), PKGSTORE_EIO);
    assert_non_null(strstr(pkgstore_error_detail(), f->dir));

    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/secret", f->dir);
        write_file(path, "x", 1);
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(pkgstore_digest_file(&d, NULL, path), PKGSTORE_EDENIED);
    } else {
        print_message("skipping the EDENIED case: running as root, permissions do not apply\n");
    }

    /* A write-only fd fails with EIO (EBADF on read). */
    snprintf(path, sizeof(path), "%s/wo", f->dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pkgstore_digest_fd(&d, &size, fd), PKGSTORE_EIO);
    assert_non_null(strstr(pkgstore_error_detail(), "read"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_digest__parse_and_format_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__rejects_upper_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__rejects_wrong_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__rejects_missing_prefix_and_other_algorithms,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__rejects_non_hex_and_odd_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_digest__misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__known_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__streaming_equals_one_shot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__file_and_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest__file_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
