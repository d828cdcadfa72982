/*
 * Evaluation: which policy governs each package slot of a node, and what
 * that means for it (offer, nothing to do, incompatible, unmet dependency,
 * unresolved). A pure function of its inputs: the caller supplies the
 * manifests through a lookup, so a fleet server can serve them from a
 * cache and a tool can read them from the registry.
 */
#include <string.h>

#include "error.h"
#include "policy.h"
#include "pkgstore/version.h"

static const char *const verdict_names[] = {"offer", "current", "incompatible", "unmet",
                                            "unresolved"};

const char *pkgstore_verdict_name(pkgstore_verdict verdict)
{
    if ((int)verdict < 0 || (size_t)verdict >= sizeof(verdict_names) / sizeof(*verdict_names))
        return NULL;
    return verdict_names[verdict];
}

static int runs_digest(const pkgstore_node_facts *node, const pkgstore_digest *digest)
{
    for (size_t i = 0; i < node->package_count; i++) {
        const pkgstore_digest *d = node->packages[i].digest;
        if (d && memcmp(d->bytes, digest->bytes, PKGSTORE_DIGEST_SIZE) == 0)
            return 1;
    }
    return 0;
}

/* 1 when the node runs dep->name at a version that meets dep->constraint. */
static int dependency_met(const pkgstore_node_facts *node, const pkgstore_dependency *dep)
{
    pkgstore_version_constraint *constraint = NULL;
    int met = 0;

    if (pkgstore_version_constraint_parse(&constraint, dep->constraint) < 0)
        return 0; /* manifests are validated on the way in; refuse what does not parse */
    for (size_t i = 0; i < node->package_count && !met; i++) {
        const pkgstore_node_package *pkg = &node->packages[i];
        pkgstore_semver version;
        if (!pkg->name || strcmp(pkg->name, dep->name) != 0 || !pkg->version ||
            pkgstore_version_parse(&version, pkg->version) < 0)
            continue;
        met = pkgstore_version_constraint_match(constraint, &version) == 1;
    }
    pkgstore_version_constraint_free(constraint);
    return met;
}

/* The first dependency of manifest (other than on its own package) that
 * the node does not meet, or NULL. */
static const pkgstore_dependency *first_unmet(const pkgstore_manifest *manifest,
                                              const pkgstore_node_facts *node)
{
    const char *self = pkgstore_manifest_name(manifest);
    for (size_t i = 0; i < pkgstore_manifest_dependency_count(manifest); i++) {
        const pkgstore_dependency *dep = pkgstore_manifest_dependency(manifest, i);
        if (strcmp(dep->name, self) != 0 && !dependency_met(node, dep))
            return dep;
    }
    return NULL;
}

/* Is the slot of policy already governed by an earlier decision? */
static int slot_taken(const pkgstore_decision *decisions, size_t n, const pkgstore_policy *policy)
{
    for (size_t j = 0; j < n; j++) {
        const pkgstore_policy *other = decisions[j].policy;
        if (other->type != policy->type)
            continue;
        if (policy->type == PKGSTORE_TYPE_PRIMARY || strcmp(other->package, policy->package) == 0)
            return 1;
    }
    return 0;
}

int pkgstore_policy_evaluate(pkgstore_decision *decisions, size_t capacity, size_t *count,
                             const pkgstore_policies *set, const pkgstore_node_facts *node,
                             pkgstore_manifest_lookup lookup, void *payload)
{
    size_t n = 0;

    if (count)
        *count = 0;
    if (!count || !set || !node || !lookup || (!decisions && capacity > 0))
        return ps_error_set(PKGSTORE_EINVALID, "policy_evaluate: NULL argument");
    for (size_t rank = 0; rank < pkgstore_policies_count(set); rank++) {
        const pkgstore_policy *policy = pkgstore_policies_at(set, rank);

        if (!pkgstore_selector_matches(policy->selector, node->labels, node->label_count))
            continue;
        if (slot_taken(decisions, n, policy))
            continue;
        if (n == capacity) {
            *count = pkgstore_policies_count(set); /* always enough */
            return ps_error_set(PKGSTORE_ELIMIT,
                                "policy_evaluate: room for %zu decisions; %zu is always enough",
                                capacity, *count);
        }
        pkgstore_decision *d = &decisions[n++];
        memset(d, 0, sizeof(*d));
        d->policy = policy;
        d->rank = rank;
        const pkgstore_manifest *manifest = NULL;
        int error = lookup(&manifest, policy->package, policy->version, payload);
        if (error < 0 || !manifest) {
            d->verdict = PKGSTORE_VERDICT_UNRESOLVED;
            d->error = error < 0 ? error : PKGSTORE_ENOTFOUND;
            continue;
        }
        d->manifest = manifest;
        if (pkgstore_manifest_best_artifact(&d->artifact, manifest, node->platform) < 0 ||
            !d->artifact) {
            d->artifact = NULL;
            d->verdict = PKGSTORE_VERDICT_INCOMPATIBLE;
        } else if (runs_digest(node, &d->artifact->digest)) {
            d->verdict = PKGSTORE_VERDICT_CURRENT;
        } else if ((d->unmet = first_unmet(manifest, node))) {
            d->verdict = PKGSTORE_VERDICT_UNMET;
        } else {
            d->verdict = PKGSTORE_VERDICT_OFFER;
        }
    }
    pkgstore_error_clear();
    *count = n;
    return 0;
}
