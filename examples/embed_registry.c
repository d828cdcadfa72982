/*
 * examples/embed_registry.c - embedding libpkgstore: packages.
 *
 * Adds FILE as the artifact of (NAME, VERSION, PLATFORM), prints the
 * resulting manifest JSON, then resolves (NAME, CONSTRAINT, NODE_PLATFORM)
 * the way the server does for a node, and prints the chosen artifact:
 *
 *   example-embed_registry STORE NAME VERSION PLATFORM FILE [CONSTRAINT [NODE_PLATFORM]]
 *
 * CONSTRAINT defaults to any version ("" or "*"), NODE_PLATFORM to PLATFORM.
 * Output: the manifest (indented JSON), then one line
 *   resolved NAME VERSION PLATFORM sha256:HEX SIZE FORMAT ENTRYPOINT
 *
 * Only the public API is used (#include <pkgstore.h>, -lpkgstore).
 * Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <pkgstore.h>

#define PROG "example-embed_registry"

/* "prog: object: reason". The reason is the thread-local detail (it names
 * the cause; valid until the next library call on this thread), or the
 * code's fixed message when there is no detail. */
static void lib_error(const char *object, int code)
{
    const char *detail = pkgstore_error_detail();
    fprintf(stderr, "%s: %s: %s\n", PROG, object,
            detail[0] != '\0' ? detail : pkgstore_strerror(code));
}

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: %s STORE NAME VERSION PLATFORM FILE [CONSTRAINT [NODE_PLATFORM]]\n"
            "Add FILE as the PLATFORM artifact of NAME VERSION, print the manifest,\n"
            "then resolve NAME CONSTRAINT for NODE_PLATFORM and print the artifact.\n",
            PROG);
    return status;
}

int main(int argc, char **argv)
{
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_manifest *manifest = NULL;
    pkgstore_artifact artifact;
    pkgstore_resolution resolution;
    pkgstore_digest manifest_digest;
    char *json = NULL;
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    const char *store_dir, *name, *version, *platform, *file;
    const char *constraint = NULL, *node_platform;
    int error, status = 1;

    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return usage(stdout, 0);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s (pkgstore) %s\n", PROG, pkgstore_library_version());
        return 0;
    }
    if (argc < 6 || argc > 8)
        return usage(stderr, 2);
    store_dir = argv[1];
    name = argv[2];
    version = argv[3];
    platform = argv[4];
    file = argv[5];
    if (argc > 6)
        constraint = argv[6];
    node_platform = argc > 7 ? argv[7] : platform;

    /* NULL options: create the store if missing, fsync every blob. */
    if ((error = pkgstore_store_open(&store, store_dir, NULL)) < 0) {
        lib_error("store", error);
        return 1;
    }
    /* The registry borrows the store: free the registry first. */
    if ((error = pkgstore_registry_open(&reg, store)) < 0) {
        lib_error("store", error);
        goto out;
    }

    /*
     * An artifact refers to a blob, so the bytes go in first. Adding a blob
     * that is already there is a success that writes nothing.
     */
    memset(&artifact, 0, sizeof(artifact));
    if ((error = pkgstore_store_add_file(&artifact.digest, &artifact.size, store, file, NULL,
                                         -1)) < 0) {
        lib_error("artifact", error);
        goto out;
    }

    /*
     * Fixed-size fields: snprintf and check for truncation. The library
     * validates and normalizes the platform ("linux/x86_64" becomes
     * "linux/amd64"). format "" means "detect from the content" and an empty
     * entrypoint of a plain binary means the package name.
     */
    if ((size_t)snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform) >=
        sizeof(artifact.platform)) {
        fprintf(stderr, "%s: %s: platform too long\n", PROG, platform);
        goto out;
    }

    /* NULL options: a primary package, dependencies checked, created now.
     * The manifest is rewritten with this artifact added (or replacing the
     * one of the same platform), stored as a blob and indexed. */
    if ((error = pkgstore_registry_add(&manifest, &manifest_digest, reg, name, version,
                                       &artifact, NULL)) < 0) {
        char object[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + 2];
        snprintf(object, sizeof(object), "%s %s", name, version);
        lib_error(object, error);
        goto out;
    }

    /* PKGSTORE_MANIFEST_PRETTY is for people; flags 0 gives the canonical
     * bytes whose SHA-256 is the manifest digest. */
    if ((error = pkgstore_manifest_serialize(&json, NULL, manifest, PKGSTORE_MANIFEST_PRETTY)) <
        0) {
        lib_error("manifest", error);
        goto out;
    }
    pkgstore_digest_format(digest_str, &manifest_digest);
    printf("manifest %s\n%s\n", digest_str, json);

    /*
     * Resolve as for a node: the highest version satisfying the constraint
     * that has an artifact the node can run (exact platform first, then the
     * compatible fallbacks such as 386 on amd64, then "any").
     * pkgstore_resolution is a plain value: nothing to free.
     */
    if ((error = pkgstore_registry_resolve(&resolution, reg, name, constraint, node_platform)) <
        0) {
        lib_error("resolve", error);
        goto out;
    }
    pkgstore_digest_format(digest_str, &resolution.artifact.digest);
    printf("resolved %s %s %s %s %" PRIu64 " %s %s\n", resolution.name, resolution.version,
           resolution.artifact.platform, digest_str, resolution.artifact.size,
           resolution.artifact.format, resolution.artifact.entrypoint);
    status = 0;

out:
    /* Release in reverse order; every _free accepts NULL. */
    pkgstore_free(json);
    pkgstore_manifest_free(manifest);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}
