/*
 * pkgstore-rm: remove a version of a package.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] =
    "Usage: pkgstore-rm [--store DIR] NAME VERSION\n"
    "Remove VERSION of package NAME: its manifest record and its package\n"
    "records. A version a policy references is not removed. The blobs stay\n"
    "until pkgstore-gc finds them unreferenced.\n"
    "\n"
    "  --store DIR   the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --help        show this help\n"
    "  --version     show the program version\n"
    "\n"
    "Exit status: 0 success, 1 no such version, or a policy references it,\n"
    "2 usage error, 3 any other error.\n";

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    int opt, error, status = CLI_EXIT_OK;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
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
    const char *name = argv[optind], *version = argv[optind + 1];
    char object[300];
    snprintf(object, sizeof(object), "%s %s", name, version);
    if ((error = pkgstore_manifest_name_validate(name)) < 0) {
        cli_lib_error(name, error);
        return CLI_EXIT_USAGE;
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    if ((error = pkgstore_registry_open(&reg, store)) < 0 ||
        (error = pkgstore_registry_remove(reg, name, version)) < 0) {
        cli_lib_error(object, error);
        status = error == PKGSTORE_ENOTFOUND || error == PKGSTORE_ECONFLICT ? CLI_EXIT_FAIL
                 : error == PKGSTORE_EINVALID ? CLI_EXIT_USAGE
                                              : CLI_EXIT_ERROR;
    }
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return status;
}
