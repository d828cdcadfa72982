/*
 * examples/embed_policy.c - embedding libpkgstore: policies and offers.
 *
 * Publishes FILE as otelcol-contrib 0.98.0 for linux/amd64, puts a policy
 * "canary" that assigns it to the nodes labelled env=dev,canary=true, then
 * hands a sample heartbeat of such a node (running 0.97.0 on linux/x86_64)
 * to the library and prints the response JSON with the offer, and the
 * policy's rollout status:
 *
 *   example-embed_policy STORE FILE
 *
 * This is what pkgstored does per request, minus HTTP: the body of
 * POST /v1/agents/heartbeat goes to pkgstore_policy_heartbeat() and its
 * result is the reply. Only the public API is used (#include <pkgstore.h>).
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

/* A node's heartbeat as an agent sends it (DESIGN.md, "Heartbeat
 * protocol"). The platform alias is normalized to linux/amd64. */
static const char sample_heartbeat[] =
    "{\"node_id\": \"edge-42\","
    " \"labels\": {\"env\": \"dev\", \"canary\": \"true\", \"region\": \"eu\"},"
    " \"platform\": \"linux/x86_64\", \"agent_version\": \"0.1.0\","
    " \"packages\": [{\"name\": \"otelcol-contrib\", \"type\": \"primary\","
    "                 \"version\": \"0.97.0\", \"state\": \"Running\"}]}";

int main(int argc, char **argv)
{
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_policy_db *db = NULL;
    pkgstore_policy_options policy_opts = PKGSTORE_POLICY_OPTIONS_INIT;
    pkgstore_artifact artifact;
    pkgstore_policy policy, stored;
    char *response = NULL, *status_json = NULL;
    int error, status = 1;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: %s STORE FILE\nPublish FILE, put a canary policy and print the "
               "offer for a sample heartbeat.\n", PROG);
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

    /*
     * 2. The policy database. Nodes are kept in memory and written behind
     * by a background thread; a short-lived program can do without the
     * thread: pkgstore_policy_flush() / _free() write what is pending.
     */
    policy_opts.no_flusher = 1;
    if ((error = pkgstore_policy_open(&db, store, &policy_opts)) < 0) {
        lib_error("store", error);
        goto out;
    }

    /* 3. The policy: a plain value; put validates every field, stores the
     * selector in canonical form and sets created/updated. */
    memset(&policy, 0, sizeof(policy));
    strcpy(policy.name, "canary");
    strcpy(policy.selector, "env=dev,canary=true");
    strcpy(policy.package, "otelcol-contrib");
    strcpy(policy.version, "0.98.0");
    policy.type = PKGSTORE_TYPE_PRIMARY;
    policy.priority = 10;
    if ((error = pkgstore_policy_put(&stored, db, &policy)) < 0) {
        lib_error("policy canary", error);
        goto out;
    }
    printf("policy %s: selector \"%s\" -> %s %s (priority %d)\n", stored.name, stored.selector,
           stored.package, stored.version, stored.priority);

    /* 4. A heartbeat in, the response (with the offers) out. The response
     * is a new string: free it with pkgstore_free(). */
    if ((error = pkgstore_policy_heartbeat(&response, db, sample_heartbeat,
                                           strlen(sample_heartbeat))) < 0) {
        lib_error("heartbeat", error);
        goto out;
    }
    printf("heartbeat response: %s\n", response);

    /* 5. The rollout status the server shows under GET /v1/policies/canary. */
    if ((error = pkgstore_policy_get_json(&status_json, db, "canary", 1)) < 0) {
        lib_error("policy canary", error);
        goto out;
    }
    printf("policy status: %s\n", status_json);

    /* Write the node record now, to see the error (free would drop it). */
    if ((error = pkgstore_policy_flush(db)) < 0) {
        lib_error("nodes", error);
        goto out;
    }
    status = 0;

out:
    /* Reverse order: the policy db and the registry borrow the store. */
    pkgstore_free(status_json);
    pkgstore_free(response);
    pkgstore_policy_free(db);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}
