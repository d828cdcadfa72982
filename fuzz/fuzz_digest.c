/*
 * fuzz_digest: the "sha256:<hex>" grammar and streaming hashing.
 * Checks: a digest that parses formats back to exactly the input (the form
 * is canonical); validate agrees with parse; hashing in two pieces equals
 * hashing in one.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    pkgstore_digest parsed, hex_parsed, one_shot, streamed;
    pkgstore_digest_ctx *ctx = NULL;
    size_t split;
    int rc;
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    rc = pkgstore_digest_parse(&parsed, text);
    CHECK(rc == 0 || rc == PKGSTORE_EINVALID);
    CHECK((pkgstore_digest_validate(text) == 0) == (rc == 0));
    if (rc == 0) {
        char formatted[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(formatted, &parsed);
        CHECK(strcmp(formatted, text) == 0);
        CHECK(pkgstore_digest_parse_hex(&hex_parsed, text + 7) == 0);
        CHECK(pkgstore_digest_equal(&parsed, &hex_parsed));
    } else {
        static const pkgstore_digest zero;
        CHECK(memcmp(&parsed, &zero, sizeof(zero)) == 0); /* zeroed on failure */
        CHECK(pkgstore_error_detail()[0] != '\0');
    }
    rc = pkgstore_digest_parse_hex(&hex_parsed, text);
    if (rc == 0) {
        char formatted[PKGSTORE_DIGEST_HEX_LEN + 1];
        pkgstore_digest_format_hex(formatted, &hex_parsed);
        CHECK(strcmp(formatted, text) == 0);
    }

    CHECK(pkgstore_digest_buffer(&one_shot, data, size) == 0);
    split = size > 0 ? data[0] % (size + 1) : 0;
    CHECK(pkgstore_digest_ctx_new(&ctx) == 0);
    CHECK(pkgstore_digest_ctx_update(ctx, data, split) == 0);
    CHECK(pkgstore_digest_ctx_update(ctx, data + split, size - split) == 0);
    CHECK(pkgstore_digest_ctx_final(&streamed, ctx) == 0);
    CHECK(pkgstore_digest_equal(&one_shot, &streamed));
    pkgstore_digest_ctx_free(ctx);
    free(text);
    return 0;
}
