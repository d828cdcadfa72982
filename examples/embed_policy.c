/*
 * examples/embed_policy.c - embedding libpkgstore: policies and offers.
 *
 * Publishes FILE as otelcol-contrib 0.98.0 for linux/amd64, puts a policy
 * "canary" that assigns it to the nodes labelled env=dev,canary=true, then
 * evaluates a sample node (labels env=dev, canary=true, region=eu; platform
 * linux/amd64; running 0.97.0) against every stored policy and prints what
 * to offer it:
 *
 *   example-embed_policy STORE FILE
 *
 * This is the decision pkgstored makes per heartbeat, minus HTTP and the
 * node table (which are the server's: server/fleet/). Only the public API
 * is used (#include <pkgstore.h>).
 * Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include <pkgstore.h>

#define PROG "example-embed_policy"

/* "prog: object: reason". The reason is the thread-local detail (it names
 * the cause; valid until the next library call on this thread), or the
 * code's fixed message when there is no detail. */
static void lib_error(const char *object, int code)
{
    const char *detail = pkgstore_error_detail();
    fprintf(stderr, "%s: %s: %s\n", PROG, object,
            detail[0] != '\0' ? detail : pkgstore_strerror(code));
}

/* The lookup pkgstore_policy_evaluate() asks for manifests: here straight
 * from the registry; the manifests are kept until the decisions are done. */
struct lookup {
    pkgstore_registry *reg;
    pkgstore_manifest *manifests[8];
    size_t count;
};

static int lookup_manifest(const pkgstore_manifest **out, const char *package,
                           const char *version, void *payload)
{
    struct lookup *lookup = payload;
    pkgstore_manifest *manifest = NULL;
    int error;
    if (lookup->count == sizeof(lookup->manifests) / sizeof(*lookup->manifests))
        return PKGSTORE_ELIMIT;
    if ((error = pkgstore_registry_get(&manifest, NULL, lookup->reg, package, version)) < 0)
        return error;
    lookup->manifests[lookup->count++] = manifest;
    *out = manifest;
    return 0;
}

int main(int argc, char **argv)
{
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_policy *policy = NULL, *stored = NULL;
    pkgstore_policies *set = NULL;
    pkgstore_artifact artifact;
    pkgstore_decision decisions[8];
    struct lookup lookup = {NULL, {NULL}, 0};
    size_t count = 0;
    int error, status = 1;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: %s STORE FILE\nPublish FILE, put a canary policy and print what it "
               "offers a sample node.\n", PROG);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s (pkgstore) %s\n", PROG, pkgstore_library_version());
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s STORE FILE\n", PROG);
        return 2;
    }

    if ((error = pkgstore_store_open(&store, argv[1], NULL)) < 0) {
        lib_error("store", error);
        return 1;
    }

    /* 1. The package version the policy will assign must exist. */
    if ((error = pkgstore_registry_open(&reg, store)) < 0) {
        lib_error("store", error);
        goto out;
    }
    memset(&artifact, 0, sizeof(artifact));
    if ((error = pkgstore_store_add_file(&artifact.digest, &artifact.size, store, argv[2], NULL,
                                         -1)) < 0) {
        lib_error("artifact", error);
        goto out;
    }
    strcpy(artifact.platform, "linux/amd64");
    strcpy(artifact.format, "binary");
    strcpy(artifact.entrypoint, "otelcol-contrib");
    if ((error = pkgstore_registry_add(NULL, NULL, reg, "otelcol-contrib", "0.98.0", &artifact,
                                       NULL)) < 0) {
        lib_error("otelcol-contrib 0.98.0", error);
        goto out;
    }

    /* 2. The policy: built, then stored through the registry, which checks
     * in the same transaction that the version exists, keeps the selector
     * in canonical form and sets created/updated. */
    if ((error = pkgstore_policy_new(&policy, "canary", "otelcol-contrib", "0.98.0")) < 0 ||
        (error = pkgstore_policy_set_selector(policy, "env=dev,canary=true")) < 0 ||
        (error = pkgstore_policy_set_priority(policy, 10)) < 0 ||
        (error = pkgstore_policy_put(&stored, reg, policy)) < 0) {
        lib_error("policy canary", error);
        goto out;
    }
    printf("policy %s: selector \"%s\" -> %s %s (priority %d)\n", pkgstore_policy_name(stored),
           pkgstore_policy_selector_text(stored), pkgstore_policy_package(stored),
           pkgstore_policy_version(stored), pkgstore_policy_priority(stored));

    /* 3. Every stored policy, ranked, and a node to evaluate. */
    if ((error = pkgstore_policies_load(&set, reg)) < 0) {
        lib_error("policies", error);
        goto out;
    }
    static const pkgstore_label labels[] = {
        {"canary", "true"}, {"env", "dev"}, {"region", "eu"}};
    static const pkgstore_node_package running[] = {
        {"otelcol-contrib", PKGSTORE_TYPE_PRIMARY, "0.97.0", NULL}};
    pkgstore_node_facts node = {"linux/amd64", labels, 3, running, 1};
    lookup.reg = reg;
    if ((error = pkgstore_policy_evaluate(decisions, 8, &count, set, &node, lookup_manifest,
                                          &lookup)) < 0) {
        lib_error("evaluate", error);
        goto out;
    }

    /* 4. One decision per package slot: the governing policy and what it
     * means for this node. */
    for (size_t i = 0; i < count; i++) {
        const pkgstore_decision *d = &decisions[i];
        char digest[PKGSTORE_DIGEST_STR_SIZE] = "-";
        if (d->artifact)
            pkgstore_digest_format(digest, &d->artifact->digest);
        printf("decision: policy=%s verdict=%s package=%s version=%s platform=%s digest=%s\n",
               pkgstore_policy_name(d->policy), pkgstore_verdict_name(d->verdict),
               pkgstore_policy_package(d->policy), pkgstore_policy_version(d->policy),
               d->artifact ? d->artifact->platform : "-", digest);
    }
    status = 0;

out:
    /* Reverse order: the decisions borrow the set and the manifests, the
     * registry borrows the store. */
    for (size_t i = 0; i < lookup.count; i++)
        pkgstore_manifest_free(lookup.manifests[i]);
    pkgstore_policies_free(set);
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}
