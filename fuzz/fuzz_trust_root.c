/*
 * fuzz_trust_root: root.json parsing and verification (docs/trust.md).
 * Checks:
 *   - a failure is EINVALID, ELIMIT or EUNSUPPORTED, with a detail, and
 *     leaves the output NULL;
 *   - on success: 1 <= threshold <= keys <= the limit, every key id is 64
 *     hex characters, the canonical form is a fixed point;
 *   - verifying it alone, or as the successor of a fixed trusted root, is
 *     0 or EDENIED; as a successor, only when its version is higher.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MC4CAQAwBQYDK2VwBCIEIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n"
                              "-----END PRIVATE KEY-----\n";

static pkgstore_trust_root *trusted;

static void setup(void)
{
    pkgstore_trust_key *key = NULL;
    CHECK(pkgstore_trust_key_parse(&key, key_pem, sizeof(key_pem) - 1) == 0);
    CHECK(pkgstore_trust_root_new(&trusted, 1) == 0);
    CHECK(pkgstore_trust_root_add_key(trusted, key, NULL) == 0);
    CHECK(pkgstore_trust_root_sign(trusted, key) == 0);
    pkgstore_trust_key_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_trust_root *root = NULL, *again = NULL;
    if (!trusted)
        setup();
    int rc = pkgstore_trust_root_parse(&root, data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT || rc == PKGSTORE_EUNSUPPORTED);
        CHECK(root == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    size_t keys = pkgstore_trust_root_key_count(root);
    unsigned threshold = pkgstore_trust_root_threshold(root);
    CHECK(keys >= 1 && keys <= PKGSTORE_TRUST_ROOT_KEYS_MAX);
    CHECK(threshold >= 1 && threshold <= keys);
    CHECK(pkgstore_trust_root_version(root) >= 1);
    for (size_t i = 0; i < keys; i++) {
        const char *keyid = NULL, *name = NULL;
        CHECK(pkgstore_trust_root_key(&keyid, &name, root, i) == 0);
        CHECK(strlen(keyid) == 64 && name != NULL);
    }

    char *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    CHECK(pkgstore_trust_root_serialize(&first, &first_len, root) == 0);
    CHECK(pkgstore_trust_root_parse(&again, first, first_len) == 0);
    CHECK(pkgstore_trust_root_serialize(&second, &second_len, again) == 0);
    CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);

    rc = pkgstore_trust_root_verify(root, NULL);
    CHECK(rc == 0 || rc == PKGSTORE_EDENIED);
    int rotated = pkgstore_trust_root_verify(root, trusted);
    CHECK(rotated == 0 || rotated == PKGSTORE_EDENIED);
    if (rotated == 0)
        CHECK(rc == 0 && pkgstore_trust_root_version(root) > 1);

    pkgstore_free(first);
    pkgstore_free(second);
    pkgstore_trust_root_free(root);
    pkgstore_trust_root_free(again);
    return 0;
}
