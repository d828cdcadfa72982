/*
 * fuzz_trust_envelope: signature envelope parsing (docs/trust.md) and
 * verification of the parsed envelope against a fixed manifest and root.
 * Checks:
 *   - a failure is EINVALID, ELIMIT or EUNSUPPORTED, with a detail, and
 *     leaves the output NULL;
 *   - on success the canonical form is a fixed point (serialize, parse,
 *     serialize gives identical bytes), at most the size limit;
 *   - verifying it is 0 or EDENIED, never anything else; it is 0 only when
 *     it is byte for byte the one valid envelope (Ed25519 signatures are
 *     deterministic and canonical base64 has one spelling).
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/* The fixed private key the seed corpus was signed with (PKCS#8 of a seed
 * of 32 bytes 0x01). */
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MC4CAQAwBQYDK2VwBCIEIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n"
                              "-----END PRIVATE KEY-----\n";

static pkgstore_trust_root *root;
static char *manifest_text, *valid_envelope;
static size_t manifest_len, valid_len;

static void setup(void)
{
    pkgstore_trust_key *key = NULL;
    pkgstore_manifest *m = NULL;
    pkgstore_artifact a;
    CHECK(pkgstore_trust_key_parse(&key, key_pem, sizeof(key_pem) - 1) == 0);
    CHECK(pkgstore_trust_root_new(&root, 1) == 0);
    CHECK(pkgstore_trust_root_add_key(root, key, NULL) == 0);
    memset(&a, 0, sizeof(a));
    strcpy(a.platform, "linux/amd64");
    CHECK(pkgstore_digest_parse(
              &a.digest,
              "sha256:1111111111111111111111111111111111111111111111111111111111111111") == 0);
    a.size = 10;
    strcpy(a.format, "binary");
    CHECK(pkgstore_manifest_new(&m, "otelcol", "0.98.0", PKGSTORE_TYPE_PRIMARY) == 0);
    CHECK(pkgstore_manifest_set_created(m, 1796292000) == 0);
    CHECK(pkgstore_manifest_add_artifact(m, &a) == 0);
    CHECK(pkgstore_manifest_serialize(&manifest_text, &manifest_len, m, 0) == 0);
    CHECK(pkgstore_trust_manifest_sign(&valid_envelope, &valid_len, key, m) == 0);
    pkgstore_manifest_free(m);
    pkgstore_trust_key_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_trust_envelope *env = NULL, *again = NULL;
    if (!root)
        setup();
    int rc = pkgstore_trust_envelope_parse(&env, data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT || rc == PKGSTORE_EUNSUPPORTED);
        CHECK(env == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    char *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    CHECK(pkgstore_trust_envelope_serialize(&first, &first_len, env) == 0);
    CHECK(first_len <= PKGSTORE_TRUST_ENVELOPE_SIZE_MAX);
    CHECK(pkgstore_trust_envelope_parse(&again, first, first_len) == 0);
    CHECK(pkgstore_trust_envelope_serialize(&second, &second_len, again) == 0);
    CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);

    size_t valid = 99;
    pkgstore_trust_envelope *list[1] = {env};
    rc = pkgstore_trust_manifest_verify(NULL, &valid, root, manifest_text, manifest_len, list, 1);
    CHECK(rc == 0 || rc == PKGSTORE_EDENIED);
    CHECK(valid <= 1 && (rc == 0) == (valid == 1));
    if (rc == 0)
        CHECK(first_len == valid_len && memcmp(first, valid_envelope, valid_len) == 0);

    pkgstore_free(first);
    pkgstore_free(second);
    pkgstore_trust_envelope_free(env);
    pkgstore_trust_envelope_free(again);
    return 0;
}
