/*
 * fuzz_trust_revocation: revocation statement parsing and verification
 * (docs/trust.md).
 * Checks:
 *   - a failure is EINVALID, ELIMIT or EUNSUPPORTED, with a detail, and
 *     leaves the output NULL;
 *   - on success: a valid package name and a normalized version, and the
 *     canonical form is a fixed point;
 *   - verifying it against a fixed root is 0 or EDENIED.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MC4CAQAwBQYDK2VwBCIEIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n"
                              "-----END PRIVATE KEY-----\n";

static pkgstore_trust_root *root;

static void setup(void)
{
    pkgstore_trust_key *key = NULL;
    CHECK(pkgstore_trust_key_parse(&key, key_pem, sizeof(key_pem) - 1) == 0);
    CHECK(pkgstore_trust_root_new(&root, 1) == 0);
    CHECK(pkgstore_trust_root_add_key(root, key, NULL) == 0);
    pkgstore_trust_key_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_trust_revocation *rev = NULL, *again = NULL;
    if (!root)
        setup();
    int rc = pkgstore_trust_revocation_parse(&rev, data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT || rc == PKGSTORE_EUNSUPPORTED);
        CHECK(rev == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    CHECK(pkgstore_manifest_name_validate(pkgstore_trust_revocation_name(rev)) == 0);
    pkgstore_semver version;
    char normalized[PKGSTORE_SEMVER_STR_SIZE];
    CHECK(pkgstore_version_parse(&version, pkgstore_trust_revocation_version(rev)) == 0);
    pkgstore_version_format(normalized, &version);
    CHECK(strcmp(normalized, pkgstore_trust_revocation_version(rev)) == 0);

    char *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    CHECK(pkgstore_trust_revocation_serialize(&first, &first_len, rev) == 0);
    CHECK(pkgstore_trust_revocation_parse(&again, first, first_len) == 0);
    CHECK(pkgstore_trust_revocation_serialize(&second, &second_len, again) == 0);
    CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);

    rc = pkgstore_trust_revocation_verify(rev, root);
    CHECK(rc == 0 || rc == PKGSTORE_EDENIED);

    pkgstore_free(first);
    pkgstore_free(second);
    pkgstore_trust_revocation_free(rev);
    pkgstore_trust_revocation_free(again);
    return 0;
}
