/*
 * fuzz_manifest: manifest v1 parsing and the canonical form.
 * Checks:
 *   - a failure is EINVALID, ELIMIT or EUNSUPPORTED, with a detail, and
 *     leaves the output NULL;
 *   - on success: parse, then canonical, then parse again gives identical
 *     bytes (the canonical form is a fixed point), and the digest of the
 *     manifest is the SHA-256 of those bytes;
 *   - the pretty form parses to the same canonical bytes;
 *   - a deep copy serializes to the same bytes.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *canonical(size_t *len, const pkgstore_manifest *m, unsigned int flags)
{
    char *out = NULL;
    CHECK(pkgstore_manifest_serialize(&out, len, m, flags) == 0);
    CHECK(out != NULL && strlen(out) == *len);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_manifest *m = NULL, *again = NULL, *copy = NULL, *from_pretty = NULL;
    int rc = pkgstore_manifest_parse(&m, data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT || rc == PKGSTORE_EUNSUPPORTED);
        CHECK(m == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    CHECK(m != NULL);
    CHECK(pkgstore_manifest_artifact_count(m) >= 1);
    CHECK(pkgstore_manifest_artifact_count(m) <= PKGSTORE_MANIFEST_ARTIFACTS_MAX);

    size_t first_len, second_len, pretty_len, copy_len, from_pretty_len;
    char *first = canonical(&first_len, m, 0);
    CHECK(first_len <= PKGSTORE_MANIFEST_SIZE_MAX);
    CHECK(pkgstore_manifest_parse(&again, first, first_len) == 0);
    char *second = canonical(&second_len, again, 0);
    CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);

    pkgstore_digest from_manifest, from_bytes;
    CHECK(pkgstore_manifest_digest(&from_manifest, m) == 0);
    CHECK(pkgstore_digest_buffer(&from_bytes, first, first_len) == 0);
    CHECK(pkgstore_digest_equal(&from_manifest, &from_bytes));

    char *pretty = canonical(&pretty_len, m, PKGSTORE_MANIFEST_PRETTY);
    /* the pretty form may exceed the size limit only by its whitespace */
    if (pretty_len <= PKGSTORE_MANIFEST_SIZE_MAX) {
        CHECK(pkgstore_manifest_parse(&from_pretty, pretty, pretty_len) == 0);
        char *c = canonical(&from_pretty_len, from_pretty, 0);
        CHECK(from_pretty_len == first_len && memcmp(c, first, first_len) == 0);
        pkgstore_free(c);
    }

    CHECK(pkgstore_manifest_dup(&copy, m) == 0);
    char *copied = canonical(&copy_len, copy, 0);
    CHECK(copy_len == first_len && memcmp(copied, first, first_len) == 0);

    pkgstore_free(first);
    pkgstore_free(second);
    pkgstore_free(pretty);
    pkgstore_free(copied);
    pkgstore_manifest_free(m);
    pkgstore_manifest_free(again);
    pkgstore_manifest_free(copy);
    pkgstore_manifest_free(from_pretty);
    return 0;
}
