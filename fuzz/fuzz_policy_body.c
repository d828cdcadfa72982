/*
 * fuzz_policy_body: the body of PUT /v1/policies/NAME
 * (server/api/policy_body.c), which any holder of the admin token controls.
 * Checks:
 *   - the result is 0, EINVALID or ELIMIT (ENOMEM aside), never another
 *     code; on failure *out is NULL and the message is set, and ELIMIT
 *     comes with status 413;
 *   - on success the policy has the name asked for, a valid package name, a
 *     version that parses, a priority in range, and a selector whose
 *     canonical text parses back to itself.
 */
#include <pkgstore.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../server/api/policy_body.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pkgstore_policy *policy = NULL;
    fleet_error err;
    int rc;

    if (size > 65536)
        return 0;
    memset(&err, 0, sizeof(err));
    rc = policy_body_parse(&policy, "fuzz-policy", (const char *)data, size, &err);
    if (rc < 0) {
        CHECK(policy == NULL);
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ELIMIT || rc == PKGSTORE_ENOMEM);
        CHECK(err.code == rc && err.message[0] != '\0');
        CHECK(rc != PKGSTORE_ELIMIT || err.http_status == 413);
        return 0;
    }
    CHECK(rc == 0 && policy != NULL);
    CHECK(strcmp(pkgstore_policy_name(policy), "fuzz-policy") == 0);
    CHECK(pkgstore_manifest_name_validate(pkgstore_policy_package(policy)) == 0);
    pkgstore_semver semver;
    CHECK(pkgstore_version_parse(&semver, pkgstore_policy_version(policy)) == 0);
    CHECK(pkgstore_policy_priority(policy) >= PKGSTORE_POLICY_PRIORITY_MIN &&
          pkgstore_policy_priority(policy) <= PKGSTORE_POLICY_PRIORITY_MAX);
    const char *canonical = pkgstore_policy_selector_text(policy);
    pkgstore_selector *again = NULL;
    CHECK(pkgstore_selector_parse(&again, canonical) == 0);
    CHECK(strcmp(pkgstore_selector_string(again), canonical) == 0);
    pkgstore_selector_free(again);
    pkgstore_policy_free(policy);
    return 0;
}
