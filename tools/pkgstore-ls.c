/*
 * pkgstore-ls: list the blobs of the store and its package records.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: pkgstore-ls [--store DIR] [--json]\n"
    "List the blobs in the store (digest, size, time added) and the package\n"
    "records (name, version, platform, type, digest, size, format, entrypoint).\n"
    "\n"
    "  --store DIR   the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --json        print one JSON document\n"
    "  --help        show this help\n"
    "  --version     show the program version\n"
    "\n"
    "Exit status: 0 success, 2 usage error, 3 any other error.\n";

struct blob_entry {
    pkgstore_digest digest;
    uint64_t size;
};

struct blob_list {
    struct blob_entry *items;
    size_t len, cap;
};

static int collect_blob(const pkgstore_digest *digest, uint64_t size, void *payload)
{
    struct blob_list *list = payload;
    if (list->len == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 256;
        struct blob_entry *grown = realloc(list->items, cap * sizeof(*grown));
        if (grown == NULL)
            return PKGSTORE_ENOMEM;
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->len].digest = *digest;
    list->items[list->len].size = size;
    list->len++;
    return 0;
}

static int by_digest(const void *a, const void *b)
{
    return memcmp(((const struct blob_entry *)a)->digest.bytes,
                  ((const struct blob_entry *)b)->digest.bytes, PKGSTORE_DIGEST_SIZE);
}

static int json_out;
static int package_count;

static int print_package(const pkgstore_package_record *record, void *payload)
{
    char digest[PKGSTORE_DIGEST_STR_SIZE], created[32];
    const char *name = pkgstore_package_record_name(record);
    const char *version = pkgstore_package_record_version(record);
    const char *platform = pkgstore_package_record_platform(record);
    const char *type = pkgstore_package_type_name(pkgstore_package_record_type(record));
    const char *format = pkgstore_package_record_format(record);
    const char *entrypoint = pkgstore_package_record_entrypoint(record);
    unsigned long long size = pkgstore_package_record_size(record);
    (void)payload;
    pkgstore_digest_format(digest, pkgstore_package_record_digest(record));
    cli_format_time(created, sizeof(created), pkgstore_package_record_created(record));
    if (json_out) {
        printf("%s\n    {\"name\": ", package_count ? "," : "");
        cli_json_string(stdout, name);
        printf(", \"version\": ");
        cli_json_string(stdout, version);
        printf(", \"platform\": ");
        cli_json_string(stdout, platform);
        printf(", \"type\": \"%s\", \"digest\": \"%s\", \"size\": %llu, \"format\": ", type,
               digest, size);
        cli_json_string(stdout, format);
        printf(", \"entrypoint\": ");
        cli_json_string(stdout, entrypoint);
        printf(", \"created\": \"%s\"}", created);
    } else {
        printf("%-24s %-12s %-14s %-7s %s %12llu %-8s %s\n", name, version, platform, type,
               digest, size, format, entrypoint);
    }
    package_count++;
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_JSON, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir;
    struct blob_list blobs = {NULL, 0, 0};
    pkgstore_store *store = NULL;
    int opt, error, status = CLI_EXIT_OK;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_JSON: json_out = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (optind != argc)
        return cli_usage("unexpected argument '%s'", argv[optind]);
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;

    if ((error = pkgstore_store_foreach(store, collect_blob, &blobs)) != 0) {
        cli_lib_error(NULL, error);
        status = CLI_EXIT_ERROR;
        goto out;
    }
    qsort(blobs.items, blobs.len, sizeof(*blobs.items), by_digest);
    if (json_out)
        printf("{\"blobs\": [");
    else
        printf("BLOBS (%zu)\n", blobs.len);
    for (size_t i = 0; i < blobs.len; i++) {
        char digest[PKGSTORE_DIGEST_STR_SIZE], added[32] = "-";
        pkgstore_blob_record record;
        int have = pkgstore_index_blob_get(&record, store, &blobs.items[i].digest) == 0;
        pkgstore_digest_format(digest, &blobs.items[i].digest);
        if (have)
            cli_format_time(added, sizeof(added), record.added);
        if (json_out) {
            printf("%s\n    {\"digest\": \"%s\", \"size\": %llu, \"added\": ", i ? "," : "",
                   digest, (unsigned long long)blobs.items[i].size);
            if (have)
                printf("\"%s\"}", added);
            else
                printf("null}");
        } else {
            printf("%s %12llu %s\n", digest, (unsigned long long)blobs.items[i].size, added);
        }
    }
    pkgstore_error_clear();
    if (json_out)
        printf("%s], \"packages\": [", blobs.len ? "\n  " : "");
    else
        printf("PACKAGES\n");
    error = pkgstore_index_package_foreach(store, NULL, print_package, NULL);
    if (json_out)
        printf("%s]}\n", package_count ? "\n  " : "");
    if (error != 0) {
        cli_lib_error(NULL, error);
        status = CLI_EXIT_ERROR;
    }
out:
    free(blobs.items);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
