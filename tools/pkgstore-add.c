/*
 * pkgstore-add: add files (or stdin) to the store as blobs, printing one
 * sha256:<hex> per input; with --name/--version also record a package.
 */
#include "cli.h"

#include <ctype.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: pkgstore-add [--store DIR] [--batch | --no-fsync] [--json]\n"
    "                    [--name N --version V [--type primary|addon]\n"
    "                     [--platform OS/ARCH[/VARIANT]] [--entrypoint PATH]]\n"
    "                    FILE... | -\n"
    "Add each FILE (or standard input for -) to the store and print its\n"
    "sha256:<hex> digest, one line per input.\n"
    "\n"
    "  --store DIR        the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --batch            sync once for all inputs instead of once per blob\n"
    "  --no-fsync         never sync (benchmarks and tests only)\n"
    "  --json             print a JSON document instead of lines\n"
    "  --name N           also record the input as package N (one input only)\n"
    "  --version V        the package version (with --name)\n"
    "  --type T           primary (default) or addon\n"
    "  --platform P       os/arch[/variant] (default: this machine's)\n"
    "  --entrypoint PATH  executable name or path inside an archive\n"
    "                     (default: the input's file name, or N)\n"
    "  --help             show this help\n"
    "  --version          (alone) show the program version\n"
    "\n"
    "Exit status: 0 all added, 1 an input could not be added, 2 usage error,\n"
    "3 the store could not be opened or the package not recorded.\n";

struct added {
    const char *input;
    int ok;
    pkgstore_digest digest;
    uint64_t size;
};

struct package_args {
    const char *name, *version, *type, *platform, *entrypoint;
};

/* This machine's platform, in the canonical os/arch[/variant] form. */
static void host_platform(char *buf, size_t size)
{
    struct utsname u;
    const char *arch;
    char os[64];
    size_t i;
    if (uname(&u) != 0) {
        snprintf(buf, size, "linux/amd64");
        return;
    }
    for (i = 0; u.sysname[i] && i + 1 < sizeof(os); i++)
        os[i] = (char)tolower((unsigned char)u.sysname[i]);
    os[i] = '\0';
    if (strcmp(u.machine, "x86_64") == 0)
        arch = "amd64";
    else if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
        arch = "arm64";
    else if (strncmp(u.machine, "armv7", 5) == 0)
        arch = "arm/v7";
    else if (strncmp(u.machine, "armv6", 5) == 0)
        arch = "arm/v6";
    else if (u.machine[0] == 'i' && strcmp(u.machine + 2, "86") == 0)
        arch = "386";
    else
        arch = u.machine;
    if ((size_t)snprintf(buf, size, "%.20s/%.40s", os, arch) >= size)
        buf[size - 1] = '\0';
}

static int platform_ok(const char *platform)
{
    int parts = 1, len = 0;
    for (const char *p = platform; *p; p++) {
        if (*p == '/') {
            if (len == 0)
                return 0;
            parts++;
            len = 0;
            continue;
        }
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return 0;
        len++;
    }
    return len > 0 && (parts == 2 || parts == 3);
}

/* [a-z0-9][a-z0-9._-]* as in pkgstore/index.h */
static int name_ok(const char *name)
{
    if (!(islower((unsigned char)name[0]) || isdigit((unsigned char)name[0])))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' || *p == '_' ||
              *p == '-'))
            return 0;
    return 1;
}

static const char *format_for(const char *path)
{
    static const struct {
        const char *suffix, *format;
    } table[] = {{".tar.gz", "tar+gzip"}, {".tgz", "tar+gzip"}, {".tar.zst", "tar+zstd"},
                 {".tar.xz", "tar+xz"},   {".tar", "tar"},      {".zip", "zip"}};
    size_t len = strlen(path);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        size_t n = strlen(table[i].suffix);
        if (len > n && strcmp(path + len - n, table[i].suffix) == 0)
            return table[i].format;
    }
    return "binary";
}

static int copy_field(char *dst, size_t size, const char *value, const char *what)
{
    if (value == NULL || value[0] == '\0' || strlen(value) >= size)
        return cli_usage("%s: must be 1 to %zu characters", what, size - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

/* The package-record part, kept apart: it fills and stores the record for
 * the one added input. (Later this goes through the registry.) */
static int record_package(pkgstore_package_record *record, pkgstore_store *store,
                          const struct package_args *args, const struct added *blob)
{
    char platform[PKGSTORE_PLATFORM_MAX + 1];
    const char *entrypoint = args->entrypoint;
    int error;

    memset(record, 0, sizeof(*record));
    if (args->platform == NULL)
        host_platform(platform, sizeof(platform));
    if (entrypoint == NULL) {
        const char *slash = strrchr(blob->input, '/');
        entrypoint = strcmp(blob->input, "-") == 0 ||
                             strcmp(format_for(blob->input), "binary") != 0
                         ? args->name
                         : (slash ? slash + 1 : blob->input);
    }
    if (copy_field(record->name, sizeof(record->name), args->name, "--name") ||
        copy_field(record->version, sizeof(record->version), args->version, "--version") ||
        copy_field(record->platform, sizeof(record->platform),
                   args->platform ? args->platform : platform, "--platform") ||
        copy_field(record->entrypoint, sizeof(record->entrypoint), entrypoint, "--entrypoint"))
        return CLI_EXIT_USAGE;
    snprintf(record->format, sizeof(record->format), "%s", format_for(blob->input));
    if (pkgstore_package_type_parse(&record->type, args->type ? args->type : "primary") < 0)
        return cli_usage("--type: must be primary or addon, not '%s'", args->type);
    record->digest = blob->digest;
    record->size = blob->size;
    record->created = (int64_t)time(NULL);
    /* batch mode: the blob must be durable before a record names it */
    if ((error = pkgstore_store_sync(store)) < 0 ||
        (error = pkgstore_index_package_put(store, record)) < 0) {
        cli_lib_error(record->name, error);
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}

static void print_package_json(const pkgstore_package_record *record)
{
    char digest[PKGSTORE_DIGEST_STR_SIZE], created[32];
    pkgstore_digest_format(digest, &record->digest);
    cli_format_time(created, sizeof(created), record->created);
    printf("{\"name\": ");
    cli_json_string(stdout, record->name);
    printf(", \"version\": ");
    cli_json_string(stdout, record->version);
    printf(", \"platform\": ");
    cli_json_string(stdout, record->platform);
    printf(", \"type\": \"%s\", \"digest\": \"%s\", \"size\": %llu, \"format\": ",
           pkgstore_package_type_name(record->type), digest, (unsigned long long)record->size);
    cli_json_string(stdout, record->format);
    printf(", \"entrypoint\": ");
    cli_json_string(stdout, record->entrypoint);
    printf(", \"created\": \"%s\"}", created);
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_BATCH, OPT_NOFSYNC, OPT_JSON, OPT_NAME, OPT_VERSION, OPT_TYPE,
           OPT_PLATFORM, OPT_ENTRYPOINT, OPT_HELP };
    static const struct option options[] = {
        {"store", required_argument, NULL, OPT_STORE},
        {"batch", no_argument, NULL, OPT_BATCH},
        {"no-fsync", no_argument, NULL, OPT_NOFSYNC},
        {"json", no_argument, NULL, OPT_JSON},
        {"name", required_argument, NULL, OPT_NAME},
        {"version", required_argument, NULL, OPT_VERSION},
        {"type", required_argument, NULL, OPT_TYPE},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};
    pkgstore_durability durability = PKGSTORE_DURABILITY_FSYNC;
    struct package_args package = {NULL, NULL, NULL, NULL, NULL};
    pkgstore_package_record record;
    const char *store_opt = NULL, *store_dir;
    pkgstore_store *store = NULL;
    struct added *added = NULL;
    int json = 0, opt, ninputs, status = CLI_EXIT_OK, have_record = 0, stdin_used = 0, error;

    cli_init(argv[0]);
    /* --version alone is the program's version; with a value, the package's */
    if (argc == 2 && strcmp(argv[1], "--version") == 0)
        return cli_version();
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_BATCH:
            if (durability == PKGSTORE_DURABILITY_NONE)
                return cli_usage("--batch and --no-fsync exclude each other");
            durability = PKGSTORE_DURABILITY_BATCH;
            break;
        case OPT_NOFSYNC:
            if (durability == PKGSTORE_DURABILITY_BATCH)
                return cli_usage("--batch and --no-fsync exclude each other");
            durability = PKGSTORE_DURABILITY_NONE;
            break;
        case OPT_JSON: json = 1; break;
        case OPT_NAME: package.name = optarg; break;
        case OPT_VERSION: package.version = optarg; break;
        case OPT_TYPE: package.type = optarg; break;
        case OPT_PLATFORM: package.platform = optarg; break;
        case OPT_ENTRYPOINT: package.entrypoint = optarg; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        default:
            if (optopt != 0)
                return cli_usage("option '%s' needs a value", argv[optind - 1]);
            return cli_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    ninputs = argc - optind;
    if (ninputs == 0)
        return cli_usage("no input: give FILE... or - for standard input");
    if ((package.name == NULL) != (package.version == NULL))
        return cli_usage("--name and --version go together");
    if (package.name == NULL &&
        (package.type || package.platform || package.entrypoint))
        return cli_usage("--type, --platform and --entrypoint need --name and --version");
    if (package.name != NULL && ninputs != 1)
        return cli_usage("--name records one package: give exactly one input");
    if (package.type && strcmp(package.type, "primary") != 0 && strcmp(package.type, "addon") != 0)
        return cli_usage("--type: must be primary or addon, not '%s'", package.type);
    if (package.name && !name_ok(package.name))
        return cli_usage("--name: '%s' is not [a-z0-9][a-z0-9._-]*", package.name);
    if (package.version && (package.version[0] == '\0' || strchr(package.version, '/') ||
                            strchr(package.version, ' ')))
        return cli_usage("--version: '%s' is not a version", package.version);
    if (package.platform && !platform_ok(package.platform))
        return cli_usage("--platform: '%s' is not os/arch[/variant] in lower case",
                         package.platform);
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "-") == 0 && stdin_used++)
            return cli_usage("- (standard input) may be given only once");
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, durability, 1) < 0)
        return CLI_EXIT_ERROR;

    added = calloc((size_t)ninputs, sizeof(*added));
    if (added == NULL) {
        cli_error(NULL, "out of memory");
        pkgstore_store_free(store);
        return CLI_EXIT_ERROR;
    }
    for (int i = 0; i < ninputs; i++) {
        struct added *item = &added[i];
        item->input = argv[optind + i];
        if (strcmp(item->input, "-") == 0)
            error = pkgstore_store_add_fd(&item->digest, &item->size, store, 0, NULL, -1);
        else
            error = pkgstore_store_add_file(&item->digest, &item->size, store, item->input, NULL,
                                            -1);
        if (error < 0) {
            cli_lib_error(strcmp(item->input, "-") == 0 ? "(stdin)" : NULL, error);
            status = CLI_EXIT_FAIL;
            continue;
        }
        item->ok = 1;
        if (!json) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(text, &item->digest);
            printf("%s\n", text);
        }
    }
    if ((error = pkgstore_store_sync(store)) < 0) {
        cli_lib_error(NULL, error);
        status = CLI_EXIT_FAIL;
    }
    if (status == CLI_EXIT_OK && package.name != NULL) {
        int rc = record_package(&record, store, &package, &added[0]);
        if (rc != CLI_EXIT_OK)
            status = rc;
        else
            have_record = 1;
    }
    if (json) {
        printf("{\"blobs\": [");
        for (int i = 0, first = 1; i < ninputs; i++) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            if (!added[i].ok)
                continue;
            pkgstore_digest_format(text, &added[i].digest);
            printf("%s{\"input\": ", first ? "" : ", ");
            cli_json_string(stdout, added[i].input);
            printf(", \"digest\": \"%s\", \"size\": %llu}", text,
                   (unsigned long long)added[i].size);
            first = 0;
        }
        printf("]");
        if (have_record) {
            printf(", \"package\": ");
            print_package_json(&record);
        }
        printf("}\n");
    } else if (have_record) {
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, &record.digest);
        printf("package %s %s %s %s %s %llu %s %s\n", record.name, record.version,
               record.platform, pkgstore_package_type_name(record.type), text,
               (unsigned long long)record.size, record.format, record.entrypoint);
    }
    free(added);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
