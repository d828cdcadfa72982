/*
 * fuzz_trust_key: PEM key parsing (docs/trust.md, "Key files").
 * Checks:
 *   - a failure is EINVALID or ELIMIT, with a detail, and leaves the output
 *     NULL;
 *   - on success the key id is 64 lower-case hex characters, and a private
 *     key signs a manifest whose envelope verifies against a root of that
 *     key alone.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_trust_key *key = NULL;
    int rc = pkgstore_trust_key_parse(&key, data, size);
    if (rc != 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT);
        CHECK(key == NULL);
        CHECK(pkgstore_error_detail()[0] != '\0');
        return 0;
    }
    const char *keyid = pkgstore_trust_key_id(key);
    CHECK(strlen(keyid) == 64 && strspn(keyid, "0123456789abcdef") == 64);
    if (pkgstore_trust_key_has_private(key)) {
        pkgstore_trust_root *root = NULL;
        pkgstore_manifest *m = NULL;
        pkgstore_trust_envelope *env = NULL;
        pkgstore_artifact a;
        char *text = NULL, *manifest = NULL;
        size_t len = 0, manifest_len = 0;
        memset(&a, 0, sizeof(a));
        strcpy(a.platform, "linux/amd64");
        strcpy(a.format, "binary");
        CHECK(pkgstore_manifest_new(&m, "otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY) == 0);
        CHECK(pkgstore_manifest_add_artifact(m, &a) == 0);
        CHECK(pkgstore_manifest_serialize(&manifest, &manifest_len, m, 0) == 0);
        CHECK(pkgstore_trust_manifest_sign(&text, &len, key, m) == 0);
        CHECK(pkgstore_trust_envelope_parse(&env, text, len) == 0);
        CHECK(pkgstore_trust_root_new(&root, 1) == 0);
        CHECK(pkgstore_trust_root_add_key(root, key, NULL) == 0);
        pkgstore_trust_envelope *list[1] = {env};
        CHECK(pkgstore_trust_manifest_verify(NULL, NULL, root, manifest, manifest_len, list, 1) ==
              0);
        pkgstore_trust_root_free(root);
        pkgstore_trust_envelope_free(env);
        pkgstore_free(text);
        pkgstore_free(manifest);
        pkgstore_manifest_free(m);
    }
    pkgstore_trust_key_free(key);
    return 0;
}
