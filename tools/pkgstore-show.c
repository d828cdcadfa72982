/*
 * pkgstore-show: packages, their versions, or one manifest.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: pkgstore-show [--store DIR] [--json] [NAME [VERSION]]\n"
    "Without NAME, list every package with its versions. With NAME, list its\n"
    "versions from lowest to highest precedence. With NAME VERSION, show that\n"
    "manifest: its digest, artifacts, dependencies, annotations and the key ids\n"
    "of the signatures kept with it (pkgstore-sign).\n"
    "\n"
    "  --store DIR    the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --json         print JSON (for a manifest: the manifest itself, indented)\n"
    "  --canonical    with NAME VERSION: print the canonical manifest bytes, the\n"
    "                 ones its digest covers\n"
    "  --digest       with NAME VERSION: print only the manifest digest\n"
    "  --help         show this help\n"
    "  --version      show the program version\n"
    "\n"
    "Exit status: 0 success, 1 no such package or version, 2 usage error,\n"
    "3 any other error.\n";

static int status_of(int error)
{
    return error == PKGSTORE_ENOTFOUND ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
}

static void json_string_array(char **items, size_t count)
{
    putchar('[');
    for (size_t i = 0; i < count; i++) {
        if (i)
            fputs(", ", stdout);
        cli_json_string(stdout, items[i]);
    }
    putchar(']');
}

static int show_names(pkgstore_registry *reg, int json)
{
    char **names = NULL;
    size_t count = 0;
    int error;
    if ((error = pkgstore_registry_names(&names, &count, reg)) < 0) {
        cli_lib_error(NULL, error);
        return CLI_EXIT_ERROR;
    }
    if (json)
        printf("{\"packages\": [");
    for (size_t i = 0; i < count; i++) {
        char **versions = NULL;
        size_t version_count = 0;
        if ((error = pkgstore_registry_versions(&versions, &version_count, reg, names[i])) < 0 &&
            error != PKGSTORE_ENOTFOUND) { /* removed meanwhile: skip it */
            cli_lib_error(names[i], error);
            pkgstore_registry_strings_free(names, count);
            return CLI_EXIT_ERROR;
        }
        if (json) {
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_string(stdout, names[i]);
            printf(", \"versions\": ");
            json_string_array(versions, version_count);
            putchar('}');
        } else {
            printf("%-32s", names[i]);
            for (size_t v = 0; v < version_count; v++)
                printf(" %s", versions[v]);
            putchar('\n');
        }
        pkgstore_registry_strings_free(versions, version_count);
    }
    if (json)
        printf("%s]}\n", count ? "\n" : "");
    pkgstore_registry_strings_free(names, count);
    return CLI_EXIT_OK;
}

static int show_versions(pkgstore_registry *reg, const char *name, int json)
{
    char **versions = NULL;
    size_t count = 0;
    int error, status = CLI_EXIT_OK;
    if ((error = pkgstore_registry_versions(&versions, &count, reg, name)) < 0) {
        cli_lib_error(name, error);
        return status_of(error);
    }
    if (json) {
        printf("{\"name\": ");
        cli_json_string(stdout, name);
        printf(", \"versions\": [");
    } else {
        printf("%-20s %-8s %-20s %-71s %s\n", "VERSION", "TYPE", "CREATED", "MANIFEST",
               "PLATFORMS");
    }
    for (size_t i = 0; i < count; i++) {
        pkgstore_manifest *m = NULL;
        pkgstore_digest digest;
        char shown[PKGSTORE_DIGEST_STR_SIZE], created[PKGSTORE_MANIFEST_TIME_SIZE];
        if ((error = pkgstore_registry_get(&m, &digest, reg, name, versions[i])) < 0) {
            if (error == PKGSTORE_ENOTFOUND)
                continue; /* removed meanwhile */
            cli_lib_error(name, error);
            status = CLI_EXIT_ERROR;
            break;
        }
        pkgstore_digest_format(shown, &digest);
        if (pkgstore_manifest_time_format(created, pkgstore_manifest_created(m)) < 0)
            strcpy(created, "-");
        const char *type = pkgstore_package_type_name(pkgstore_manifest_type(m));
        if (json) {
            printf("%s\n  {\"version\": ", i ? "," : "");
            cli_json_string(stdout, versions[i]);
            printf(", \"type\": \"%s\", \"created\": \"%s\", \"manifest_digest\": \"%s\", "
                   "\"platforms\": [",
                   type, created, shown);
            for (size_t a = 0; a < pkgstore_manifest_artifact_count(m); a++) {
                if (a)
                    fputs(", ", stdout);
                cli_json_string(stdout, pkgstore_manifest_artifact(m, a)->platform);
            }
            printf("]}");
        } else {
            printf("%-20s %-8s %-20s %-71s", versions[i], type, created, shown);
            for (size_t a = 0; a < pkgstore_manifest_artifact_count(m); a++)
                printf("%s%s", a ? "," : " ", pkgstore_manifest_artifact(m, a)->platform);
            putchar('\n');
        }
        pkgstore_manifest_free(m);
    }
    if (json)
        printf("%s]}\n", count ? "\n" : "");
    pkgstore_registry_strings_free(versions, count);
    return status;
}

/* The signature envelopes kept with the manifest (pkgstore-sign), one
 * line each; nothing when there are none. Their validity needs a root:
 * pkgstore-sign --root checks it. */
static int show_signatures(pkgstore_store *store, const pkgstore_digest *digest)
{
    pkgstore_trust_stored_signature *list = NULL;
    size_t count = 0;
    int error;
    if ((error = pkgstore_trust_signatures_list(&list, &count, store, digest)) < 0) {
        cli_lib_error("signatures", error);
        return CLI_EXIT_ERROR;
    }
    if (count)
        printf("\nSIGNATURES\n%-64s %s\n", "KEY ID", "ENVELOPE");
    for (size_t i = 0; i < count; i++) {
        pkgstore_trust_envelope *env = NULL;
        char shown[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(shown, &list[i].digest);
        if (pkgstore_trust_envelope_parse(&env, list[i].data, list[i].len) < 0)
            printf("%-64s %s (malformed: %s)\n", "-", shown, pkgstore_error_detail());
        else
            printf("%-64s %s\n", pkgstore_trust_envelope_keyid(env), shown);
        pkgstore_trust_envelope_free(env);
    }
    pkgstore_trust_signatures_free(list, count);
    return CLI_EXIT_OK;
}

static int show_manifest(pkgstore_store *store, pkgstore_registry *reg, const char *name,
                         const char *version, int json, int canonical, int digest_only)
{
    pkgstore_manifest *m = NULL;
    pkgstore_digest digest;
    char shown[PKGSTORE_DIGEST_STR_SIZE], created[PKGSTORE_MANIFEST_TIME_SIZE];
    char *text = NULL;
    size_t len = 0;
    int error;

    if ((error = pkgstore_registry_get(&m, &digest, reg, name, version)) < 0) {
        char object[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + 2];
        snprintf(object, sizeof(object), "%s %s", name, version);
        cli_lib_error(object, error);
        return status_of(error);
    }
    pkgstore_digest_format(shown, &digest);
    if (digest_only) {
        printf("%s\n", shown);
    } else if (json || canonical) {
        if ((error = pkgstore_manifest_serialize(&text, &len, m,
                                                 canonical ? 0 : PKGSTORE_MANIFEST_PRETTY)) < 0) {
            cli_lib_error(name, error);
            pkgstore_manifest_free(m);
            return CLI_EXIT_ERROR;
        }
        fwrite(text, 1, len, stdout);
        if (!canonical)
            putchar('\n');
        pkgstore_free(text);
    } else {
        if (pkgstore_manifest_time_format(created, pkgstore_manifest_created(m)) < 0)
            strcpy(created, "-");
        printf("name:      %s\nversion:   %s\ntype:      %s\ncreated:   %s\nmanifest:  %s\n",
               pkgstore_manifest_name(m), pkgstore_manifest_version(m),
               pkgstore_package_type_name(pkgstore_manifest_type(m)), created, shown);
        printf("\nARTIFACTS\n%-16s %-9s %12s %-71s %s\n", "PLATFORM", "FORMAT", "SIZE", "DIGEST",
               "ENTRYPOINT");
        for (size_t i = 0; i < pkgstore_manifest_artifact_count(m); i++) {
            const pkgstore_artifact *a = pkgstore_manifest_artifact(m, i);
            char artifact_digest[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(artifact_digest, &a->digest);
            printf("%-16s %-9s %12llu %-71s %s\n", a->platform, a->format,
                   (unsigned long long)a->size, artifact_digest, a->entrypoint);
        }
        if (pkgstore_manifest_dependency_count(m)) {
            printf("\nDEPENDENCIES\n");
            for (size_t i = 0; i < pkgstore_manifest_dependency_count(m); i++) {
                const pkgstore_dependency *d = pkgstore_manifest_dependency(m, i);
                printf("%-32s %s\n", d->name, d->constraint);
            }
        }
        if (pkgstore_manifest_annotation_count(m)) {
            printf("\nANNOTATIONS\n");
            for (size_t i = 0; i < pkgstore_manifest_annotation_count(m); i++) {
                const char *key, *value;
                if (pkgstore_manifest_annotation(&key, &value, m, i) == 0)
                    printf("%s=%s\n", key, value);
            }
        }
        if (show_signatures(store, &digest) != CLI_EXIT_OK) {
            pkgstore_manifest_free(m);
            return CLI_EXIT_ERROR;
        }
    }
    pkgstore_manifest_free(m);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_JSON, OPT_CANONICAL, OPT_DIGEST, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"canonical", no_argument, NULL, OPT_CANONICAL},
                                            {"digest", no_argument, NULL, OPT_DIGEST},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    int opt, error, json = 0, canonical = 0, digest_only = 0, status;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_CANONICAL: canonical = 1; break;
        case OPT_DIGEST: digest_only = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    int args = argc - optind;
    if (args > 2)
        return cli_usage("unexpected argument '%s'", argv[optind + 2]);
    if ((canonical || digest_only) && args != 2)
        return cli_usage("--canonical and --digest need NAME VERSION");
    if (canonical + digest_only + json > 1)
        return cli_usage("--json, --canonical and --digest exclude each other");
    if (args >= 1 && (error = pkgstore_manifest_name_validate(argv[optind])) < 0) {
        cli_lib_error(argv[optind], error);
        return CLI_EXIT_USAGE;
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    if ((error = pkgstore_registry_open(&reg, store)) < 0) {
        cli_lib_error(store_dir, error);
        pkgstore_store_free(store);
        return CLI_EXIT_ERROR;
    }

    if (args == 0)
        status = show_names(reg, json);
    else if (args == 1)
        status = show_versions(reg, argv[optind], json);
    else
        status = show_manifest(store, reg, argv[optind], argv[optind + 1], json, canonical, digest_only);

    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
