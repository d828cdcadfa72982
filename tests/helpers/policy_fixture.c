/*
 * Package versions and policies for the policy and fleet tests
 * (policy_fixture.h).
 */
#include <stdio.h>
#include <string.h>

#include "policy_fixture.h"

int fixture_add_artifact(pkgstore_digest *digest_out, pkgstore_store *store, pkgstore_registry *reg,
                         const char *name, const char *version, pkgstore_package_type type,
                         const char *platform, const char *bytes, const pkgstore_dependency *deps,
                         size_t ndeps)
{
    pkgstore_artifact artifact;
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    int error;

    memset(&artifact, 0, sizeof(artifact));
    if ((error = pkgstore_store_add_buffer(&artifact.digest, store, bytes, strlen(bytes))) < 0)
        return error;
    snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform);
    snprintf(artifact.format, sizeof(artifact.format), "binary");
    snprintf(artifact.entrypoint, sizeof(artifact.entrypoint), "%s", name);
    opts.type = type;
    opts.force = 1;
    opts.dependencies = deps;
    opts.dependency_count = ndeps;
    if ((error = pkgstore_registry_add(NULL, NULL, reg, name, version, &artifact, &opts)) < 0)
        return error;
    if (digest_out)
        *digest_out = artifact.digest;
    return 0;
}

int fixture_put_policy(pkgstore_registry *reg, const char *name, const char *package,
                       const char *version, const char *selector, int priority)
{
    pkgstore_policy *policy = NULL;
    int error = pkgstore_policy_new(&policy, name, package, version);
    if (error == 0 && selector)
        error = pkgstore_policy_set_selector(policy, selector);
    if (error == 0)
        error = pkgstore_policy_set_priority(policy, priority);
    if (error == 0)
        error = pkgstore_policy_put(NULL, reg, policy);
    pkgstore_policy_free(policy);
    return error;
}
