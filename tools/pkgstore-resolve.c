/*
 * pkgstore-resolve: the artifact a node would get.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] =
    "Usage: pkgstore-resolve [--store DIR] [--platform P] [--json] NAME [CONSTRAINT]\n"
    "Print the artifact a node of platform P gets for package NAME: the best\n"
    "artifact (exact platform, then compatible fallbacks, then any) of the\n"
    "highest version that satisfies CONSTRAINT (e.g. \">=0.90.0 <1.0.0\", \"^0.98\",\n"
    "\"~1.2\", \"1.x || 2.x\"; default: any release) and has one.\n"
    "\n"
    "  --store DIR     the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --platform P    the node's os/arch[/variant] (default: this host's)\n"
    "  --json          print one JSON object (the fields of an offer)\n"
    "  --help          show this help\n"
    "  --version       show the program version\n"
    "\n"
    "Exit status: 0 resolved, 1 nothing matches, 2 usage error, 3 any other error.\n";

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_PLATFORM, OPT_JSON, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"platform", required_argument, NULL, OPT_PLATFORM},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir, *platform = NULL;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_resolution r;
    int opt, error, json = 0, status = CLI_EXIT_OK;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_PLATFORM: platform = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (argc - optind < 1)
        return cli_usage("missing NAME");
    if (argc - optind > 2)
        return cli_usage("unexpected argument '%s' (quote a constraint with spaces)",
                         argv[optind + 2]);
    const char *name = argv[optind];
    const char *constraint = argc - optind == 2 ? argv[optind + 1] : NULL;
    if ((error = pkgstore_manifest_name_validate(name)) < 0) {
        cli_lib_error(name, error);
        return CLI_EXIT_USAGE;
    }
    if (platform) {
        pkgstore_platform parsed;
        if ((error = pkgstore_platform_parse(&parsed, platform)) < 0) {
            cli_lib_error(platform, error);
            return CLI_EXIT_USAGE;
        }
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    if ((error = pkgstore_registry_open(&reg, store)) < 0 ||
        (error = pkgstore_registry_resolve(&r, reg, name, constraint, platform)) < 0) {
        cli_lib_error(name, error);
        status = error == PKGSTORE_ENOTFOUND  ? CLI_EXIT_FAIL
                 : error == PKGSTORE_EINVALID ? CLI_EXIT_USAGE
                                              : CLI_EXIT_ERROR;
        goto out;
    }

    char digest[PKGSTORE_DIGEST_STR_SIZE], manifest_digest[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest, &r.artifact.digest);
    pkgstore_digest_format(manifest_digest, &r.manifest_digest);
    const char *type = pkgstore_package_type_name(r.type);
    if (json) {
        printf("{\"name\": ");
        cli_json_string(stdout, r.name);
        printf(", \"type\": \"%s\", \"version\": ", type);
        cli_json_string(stdout, r.version);
        printf(", \"platform\": ");
        cli_json_string(stdout, r.artifact.platform);
        printf(", \"digest\": \"%s\", \"size\": %llu, \"format\": ", digest,
               (unsigned long long)r.artifact.size);
        cli_json_string(stdout, r.artifact.format);
        printf(", \"entrypoint\": ");
        cli_json_string(stdout, r.artifact.entrypoint);
        printf(", \"manifest_digest\": \"%s\"}\n", manifest_digest);
    } else {
        printf("name:       %s\ntype:       %s\nversion:    %s\nplatform:   %s\n"
               "digest:     %s\nsize:       %llu\nformat:     %s\nentrypoint: %s\n"
               "manifest:   %s\n",
               r.name, type, r.version, r.artifact.platform, digest,
               (unsigned long long)r.artifact.size, r.artifact.format, r.artifact.entrypoint,
               manifest_digest);
    }
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        status = CLI_EXIT_ERROR;
    }
out:
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}
