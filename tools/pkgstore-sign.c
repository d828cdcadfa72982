/*
 * pkgstore-sign: sign a package version's canonical manifest, or revoke a
 * version, with one or more offline keys (docs/trust.md).
 */
#include "cli.h"
#include "files.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "Usage: pkgstore-sign [--store DIR] --key KEY [--key KEY]... [--output-dir DIR]\n"
    "                     [--no-store] [--root ROOT] [--json] NAME VERSION\n"
    "       pkgstore-sign --manifest FILE --key KEY... --output-dir DIR NAME VERSION\n"
    "       pkgstore-sign [--store DIR] --import ENVELOPE... [--root ROOT] NAME VERSION\n"
    "       pkgstore-sign [--store DIR] --root ROOT [--json] NAME VERSION\n"
    "       pkgstore-sign --revoke --key KEY [--key KEY]... [--reason TEXT]\n"
    "                     --output FILE NAME VERSION\n"
    "Sign the canonical manifest of VERSION of package NAME with each private\n"
    "KEY: one signature envelope per key, kept in the store beside the\n"
    "manifest (and written to DIR with --output-dir). With --root, check that\n"
    "the version's stored signatures reach ROOT's threshold; with --root and\n"
    "no --key, only check. With --manifest, sign a manifest file instead (the\n"
    "canonical bytes pkgstore-show --canonical prints, on a machine without\n"
    "the store); --import then records those envelopes in the store. With\n"
    "--revoke, write a signed statement that VERSION of NAME is revoked to\n"
    "FILE; when FILE already holds that revocation, the signatures are added\n"
    "to it (co-signing), atomically.\n"
    "\n"
    "  --store DIR       the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --key KEY         a private key file (pkgstore-key generate); repeatable\n"
    "  --output-dir DIR  also write each envelope to DIR/NAME_VERSION_KEYID.sig\n"
    "  --no-store        do not record the signatures in the store (with\n"
    "                    --output-dir)\n"
    "  --root ROOT       check the stored signatures against ROOT (root.json)\n"
    "  --manifest FILE   sign the manifest in FILE (it must be NAME VERSION);\n"
    "                    needs --output-dir, opens no store\n"
    "  --import FILE     record the envelope in FILE in the store; repeatable\n"
    "  --revoke          sign a revocation of NAME VERSION instead\n"
    "  --reason TEXT     with --revoke: why (UTF-8, at most 1024 bytes)\n"
    "  --output FILE     with --revoke: the revocation file\n"
    "  --json            print JSON\n"
    "  --help            show this help\n"
    "  --version         show the program version\n"
    "\n"
    "Exit status: 0 success, 1 no such version, or the signatures do not reach\n"
    "the root's threshold, 2 usage error, 3 any other error.\n";

enum {
    OPT_STORE = 256,
    OPT_KEY,
    OPT_OUTPUT_DIR,
    OPT_NO_STORE,
    OPT_ROOT,
    OPT_MANIFEST,
    OPT_IMPORT,
    OPT_REVOKE,
    OPT_REASON,
    OPT_OUTPUT,
    OPT_JSON,
    OPT_HELP,
    OPT_VERSION
};

#define MAX_KEYS 64

typedef struct args {
    const char *store, *output_dir, *root, *reason, *output, *manifest;
    const char *keys[MAX_KEYS];
    size_t key_count;
    const char *imports[MAX_KEYS];
    size_t import_count;
    int no_store, revoke, json;
    const char *name, *version;
} args;

static int load_keys(pkgstore_trust_key **keys, const args *a)
{
    for (size_t i = 0; i < a->key_count; i++) {
        int error = pkgstore_trust_key_load(&keys[i], a->keys[i]);
        if (error < 0) {
            cli_lib_error(a->keys[i], error);
            return -1;
        }
        if (!pkgstore_trust_key_has_private(keys[i])) {
            cli_error(a->keys[i], "a public key cannot sign (pass the .key file)");
            return -1;
        }
    }
    return 0;
}

static void free_keys(pkgstore_trust_key **keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        pkgstore_trust_key_free(keys[i]);
}

/* ------------------------------------------------------------ revocations */

static int revoke(const args *a)
{
    pkgstore_trust_key *keys[MAX_KEYS] = {NULL};
    pkgstore_trust_revocation *rev = NULL;
    char *text = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    struct stat st;
    int status = CLI_EXIT_ERROR, error, existing = 0;

    if (load_keys(keys, a) < 0)
        goto done;
    if (stat(a->output, &st) == 0) {
        /* co-signing: add to the statement already there */
        existing = 1;
        if (cli_read_file(&text, &len, a->output, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0)
            goto done;
        if ((error = pkgstore_trust_revocation_parse(&rev, text, len)) < 0) {
            cli_lib_error(a->output, error);
            goto done;
        }
        pkgstore_semver wanted;
        char normalized[PKGSTORE_SEMVER_STR_SIZE];
        pkgstore_version_parse(&wanted, a->version);
        pkgstore_version_format(normalized, &wanted);
        if (strcmp(pkgstore_trust_revocation_name(rev), a->name) != 0 ||
            strcmp(pkgstore_trust_revocation_version(rev), normalized) != 0) {
            cli_error(a->output, "revokes %s %s, not %s %s", pkgstore_trust_revocation_name(rev),
                      pkgstore_trust_revocation_version(rev), a->name, a->version);
            status = CLI_EXIT_USAGE;
            goto done;
        }
        if (a->reason && strcmp(a->reason, pkgstore_trust_revocation_reason(rev)) != 0) {
            cli_error(a->output, "has another reason; --reason cannot change a signed statement");
            status = CLI_EXIT_USAGE;
            goto done;
        }
    } else if (errno != ENOENT) {
        cli_error(a->output, "%s", strerror(errno));
        goto done;
    } else if ((error = pkgstore_trust_revocation_new(&rev, a->name, a->version, a->reason)) < 0) {
        cli_lib_error("revoke", error);
        status = CLI_EXIT_USAGE;
        goto done;
    }
    for (size_t i = 0; i < a->key_count; i++)
        if ((error = pkgstore_trust_revocation_sign(rev, keys[i])) < 0) {
            cli_lib_error(a->keys[i], error);
            goto done;
        }
    if ((error = pkgstore_trust_revocation_serialize(&out, &out_len, rev)) < 0) {
        cli_lib_error(a->output, error);
        goto done;
    }
    if (cli_write_file(a->output, out, out_len, 0644, existing) < 0)
        goto done;
    if (a->json) {
        printf("{\"revocation\": ");
        cli_json_string(stdout, a->output);
        printf(", \"name\": ");
        cli_json_string(stdout, pkgstore_trust_revocation_name(rev));
        printf(", \"version\": ");
        cli_json_string(stdout, pkgstore_trust_revocation_version(rev));
        printf(", \"signatures\": %zu}\n", pkgstore_trust_revocation_signature_count(rev));
    }
    status = CLI_EXIT_OK;
done:
    free_keys(keys, a->key_count);
    pkgstore_trust_revocation_free(rev);
    free(text);
    pkgstore_free(out);
    return status;
}

/* ------------------------------------------------------------ manifests */

static int check_root(pkgstore_store *store, const pkgstore_digest *manifest_digest,
                      const args *a, size_t *valid_out, unsigned *threshold_out)
{
    pkgstore_trust_root *root = NULL;
    pkgstore_trust_stored_signature *list = NULL;
    pkgstore_trust_envelope **envs = NULL;
    void *manifest = NULL;
    char *text = NULL;
    size_t len = 0, count = 0, manifest_len = 0, parsed = 0;
    int status = CLI_EXIT_ERROR, error;

    *valid_out = 0;
    *threshold_out = 0;
    if (cli_read_file(&text, &len, a->root, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0)
        goto done;
    if ((error = pkgstore_trust_root_parse(&root, text, len)) < 0 ||
        (error = pkgstore_trust_root_verify(root, NULL)) < 0) {
        cli_lib_error(a->root, error);
        goto done;
    }
    *threshold_out = pkgstore_trust_root_threshold(root);
    if ((error = pkgstore_trust_signatures_list(&list, &count, store, manifest_digest)) < 0 ||
        (error = pkgstore_store_blob_read(&manifest, &manifest_len, store, manifest_digest,
                                          PKGSTORE_MANIFEST_SIZE_MAX)) < 0) {
        cli_lib_error(a->name, error);
        goto done;
    }
    if (count && !(envs = calloc(count, sizeof(*envs)))) {
        cli_error(NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        char shown[PKGSTORE_DIGEST_STR_SIZE];
        if ((error = pkgstore_trust_envelope_parse(&envs[parsed], list[i].data, list[i].len)) < 0) {
            pkgstore_digest_format(shown, &list[i].digest);
            cli_lib_error(shown, error); /* reported, not counted */
            continue;
        }
        parsed++;
    }
    error = pkgstore_trust_manifest_verify(NULL, valid_out, root, manifest, manifest_len,
                                           envs, parsed);
    if (error == 0)
        status = CLI_EXIT_OK;
    else if (error == PKGSTORE_EDENIED)
        status = CLI_EXIT_FAIL;
    if (error < 0)
        cli_lib_error(a->name, error);
done:
    for (size_t i = 0; i < parsed; i++)
        pkgstore_trust_envelope_free(envs[i]);
    free(envs);
    pkgstore_trust_signatures_free(list, count);
    pkgstore_trust_root_free(root);
    pkgstore_free(manifest);
    free(text);
    return status;
}

static int sign(const args *a)
{
    pkgstore_trust_key *keys[MAX_KEYS] = {NULL};
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_manifest *m = NULL;
    pkgstore_digest manifest_digest;
    char shown[PKGSTORE_DIGEST_STR_SIZE], object[300];
    const char *store_dir;
    int status = CLI_EXIT_ERROR, error;

    snprintf(object, sizeof(object), "%s %s", a->name, a->version);
    if (load_keys(keys, a) < 0)
        goto done;
    if (a->manifest) {
        /* offline: the manifest's bytes, checked to be the version named */
        char *text = NULL;
        size_t len = 0;
        if (cli_read_file(&text, &len, a->manifest, PKGSTORE_MANIFEST_SIZE_MAX) < 0)
            goto done;
        error = pkgstore_manifest_parse(&m, text, len);
        free(text);
        if (error < 0) {
            cli_lib_error(a->manifest, error);
            goto done;
        }
        if (pkgstore_trust_manifest_match(m, a->name, a->version, pkgstore_manifest_type(m),
                                          NULL) < 0) {
            cli_error(a->manifest, "is the manifest of %s %s, not of %s %s",
                      pkgstore_manifest_name(m), pkgstore_manifest_version(m), a->name,
                      a->version);
            status = CLI_EXIT_FAIL;
            goto done;
        }
        if ((error = pkgstore_manifest_digest(&manifest_digest, m)) < 0) {
            cli_lib_error(a->manifest, error);
            goto done;
        }
        goto signing;
    }
    if (!(store_dir = cli_store_dir(a->store))) {
        status = CLI_EXIT_USAGE;
        goto done;
    }
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        goto done;
    if ((error = pkgstore_registry_open(&reg, store)) < 0 ||
        (error = pkgstore_registry_get(&m, &manifest_digest, reg, a->name, a->version)) < 0) {
        cli_lib_error(object, error);
        status = error == PKGSTORE_ENOTFOUND  ? CLI_EXIT_FAIL
                 : error == PKGSTORE_EINVALID ? CLI_EXIT_USAGE
                                              : CLI_EXIT_ERROR;
        goto done;
    }
signing:
    pkgstore_digest_format(shown, &manifest_digest);
    if (a->json)
        printf("{\"name\": \"%s\", \"version\": \"%s\", \"manifest_digest\": \"%s\", "
               "\"signatures\": [",
               pkgstore_manifest_name(m), pkgstore_manifest_version(m), shown);
    for (size_t i = 0; i < a->key_count; i++) {
        char *env = NULL;
        size_t env_len = 0;
        pkgstore_digest env_digest;
        char env_shown[PKGSTORE_DIGEST_STR_SIZE] = "", path[4096];
        const char *keyid = pkgstore_trust_key_id(keys[i]);
        if ((error = pkgstore_trust_manifest_sign(&env, &env_len, keys[i], m)) < 0) {
            cli_lib_error(a->keys[i], error);
            goto done;
        }
        if (store && !a->no_store) {
            error = pkgstore_trust_signature_add(&env_digest, store, pkgstore_manifest_name(m),
                                                 pkgstore_manifest_version(m), env, env_len);
            if (error < 0) {
                cli_lib_error(object, error);
                pkgstore_free(env);
                goto done;
            }
            pkgstore_digest_format(env_shown, &env_digest);
        }
        if (a->output_dir) {
            snprintf(path, sizeof(path), "%s/%s_%s_%.16s.sig", a->output_dir,
                     pkgstore_manifest_name(m), pkgstore_manifest_version(m), keyid);
            if (cli_write_file(path, env, env_len, 0644, 1) < 0) {
                pkgstore_free(env);
                goto done;
            }
        }
        pkgstore_free(env);
        if (a->json) {
            printf("%s{\"keyid\": \"%s\", \"envelope_digest\": %s%s%s, \"file\": ", i ? ", " : "",
                   keyid, env_shown[0] ? "\"" : "", env_shown[0] ? env_shown : "null",
                   env_shown[0] ? "\"" : "");
            if (a->output_dir)
                cli_json_string(stdout, path);
            else
                fputs("null", stdout);
            putchar('}');
        } else {
            printf("%s %s signed by %s%s%s\n", pkgstore_manifest_name(m),
                   pkgstore_manifest_version(m), keyid, env_shown[0] ? ": " : "", env_shown);
        }
    }
    for (size_t i = 0; i < a->import_count; i++) {
        char *text = NULL, env_shown[PKGSTORE_DIGEST_STR_SIZE];
        size_t len = 0;
        pkgstore_digest env_digest;
        pkgstore_trust_envelope *env = NULL;
        if (cli_read_file(&text, &len, a->imports[i], PKGSTORE_TRUST_ENVELOPE_SIZE_MAX) < 0)
            goto done;
        if ((error = pkgstore_trust_envelope_parse(&env, text, len)) < 0 ||
            (error = pkgstore_trust_signature_add(&env_digest, store, pkgstore_manifest_name(m),
                                                  pkgstore_manifest_version(m), text, len)) < 0) {
            cli_lib_error(a->imports[i], error);
            status = error == PKGSTORE_ECONFLICT ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
            pkgstore_trust_envelope_free(env);
            free(text);
            goto done;
        }
        pkgstore_digest_format(env_shown, &env_digest);
        if (a->json) {
            printf("%s{\"keyid\": \"%s\", \"envelope_digest\": \"%s\", \"file\": ",
                   i + a->key_count ? ", " : "", pkgstore_trust_envelope_keyid(env), env_shown);
            cli_json_string(stdout, a->imports[i]);
            putchar('}');
        } else {
            printf("%s %s signed by %s: %s (imported)\n", pkgstore_manifest_name(m),
                   pkgstore_manifest_version(m), pkgstore_trust_envelope_keyid(env), env_shown);
        }
        pkgstore_trust_envelope_free(env);
        free(text);
    }
    status = CLI_EXIT_OK;
    if (a->root) {
        size_t valid = 0;
        unsigned threshold = 0;
        status = check_root(store, &manifest_digest, a, &valid, &threshold);
        if (a->json)
            printf("], \"trusted\": %s, \"valid_signatures\": %zu, \"threshold\": %u}\n",
                   status == CLI_EXIT_OK ? "true" : "false", valid, threshold);
        else if (status == CLI_EXIT_OK)
            printf("%s %s: %zu valid signature%s, %u required: trusted\n",
                   pkgstore_manifest_name(m), pkgstore_manifest_version(m), valid,
                   valid == 1 ? "" : "s", threshold);
    } else if (a->json) {
        printf("]}\n");
    }
done:
    free_keys(keys, a->key_count);
    pkgstore_manifest_free(m);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"key", required_argument, NULL, OPT_KEY},
                                            {"output-dir", required_argument, NULL, OPT_OUTPUT_DIR},
                                            {"no-store", no_argument, NULL, OPT_NO_STORE},
                                            {"root", required_argument, NULL, OPT_ROOT},
                                            {"manifest", required_argument, NULL, OPT_MANIFEST},
                                            {"import", required_argument, NULL, OPT_IMPORT},
                                            {"revoke", no_argument, NULL, OPT_REVOKE},
                                            {"reason", required_argument, NULL, OPT_REASON},
                                            {"output", required_argument, NULL, OPT_OUTPUT},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    args a;
    int opt, error;

    memset(&a, 0, sizeof(a));
    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: a.store = optarg; break;
        case OPT_KEY:
            if (a.key_count == MAX_KEYS)
                return cli_usage("more than %d --key options", MAX_KEYS);
            a.keys[a.key_count++] = optarg;
            break;
        case OPT_OUTPUT_DIR: a.output_dir = optarg; break;
        case OPT_NO_STORE: a.no_store = 1; break;
        case OPT_ROOT: a.root = optarg; break;
        case OPT_MANIFEST: a.manifest = optarg; break;
        case OPT_IMPORT:
            if (a.import_count == MAX_KEYS)
                return cli_usage("more than %d --import options", MAX_KEYS);
            a.imports[a.import_count++] = optarg;
            break;
        case OPT_REVOKE: a.revoke = 1; break;
        case OPT_REASON: a.reason = optarg; break;
        case 'o':
        case OPT_OUTPUT: a.output = optarg; break;
        case OPT_JSON: a.json = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (argc - optind < 2)
        return cli_usage("need NAME and VERSION");
    if (argc - optind > 2)
        return cli_usage("unexpected argument '%s'", argv[optind + 2]);
    a.name = argv[optind];
    a.version = argv[optind + 1];
    if ((error = pkgstore_manifest_name_validate(a.name)) < 0) {
        cli_lib_error(a.name, error);
        return CLI_EXIT_USAGE;
    }
    pkgstore_semver parsed;
    if (pkgstore_version_parse(&parsed, a.version) < 0) {
        cli_lib_error(a.version, PKGSTORE_EINVALID);
        return CLI_EXIT_USAGE;
    }
    if (a.revoke) {
        if (a.key_count == 0)
            return cli_usage("--revoke needs --key");
        if (!a.output)
            return cli_usage("--revoke needs --output FILE");
        if (a.output_dir || a.no_store || a.root || a.store)
            return cli_usage("--revoke takes only --key, --reason and --output");
        return revoke(&a);
    }
    if (a.reason || a.output)
        return cli_usage("--reason and --output go with --revoke");
    if (a.manifest) {
        if (a.key_count == 0 || !a.output_dir)
            return cli_usage("--manifest needs --key and --output-dir");
        if (a.store || a.root || a.import_count || a.no_store)
            return cli_usage("--manifest opens no store: no --store, --root, --import or "
                             "--no-store");
        return sign(&a);
    }
    if (a.key_count == 0 && !a.root && a.import_count == 0)
        return cli_usage("need --key (to sign), --import (to record) or --root (to check)");
    if (a.no_store && a.import_count)
        return cli_usage("--import records in the store; it cannot go with --no-store");
    if (a.no_store && !a.output_dir)
        return cli_usage("--no-store needs --output-dir, or the signatures go nowhere");
    if (a.no_store && a.root)
        return cli_usage("--root checks the stored signatures; it cannot go with --no-store");
    return sign(&a);
}
