/*
 * pkgstore-add: add files (or stdin) to the store as blobs, printing one
 * sha256:<hex> per input; with --name/--version also add it to that package
 * version through the registry (manifest regenerated, format detected,
 * archives checked, existing artifacts kept unless --replace).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: pkgstore-add [--store DIR] [--batch | --no-fsync] [--json] [--zstd]\n"
    "                    [--name N --version V [--type primary|addon]\n"
    "                     [--platform OS/ARCH[/VARIANT]] [--format F] [--entrypoint PATH]\n"
    "                     [--depends 'NAME CONSTRAINT']... [--annotation KEY=VALUE]...\n"
    "                     [--force] [--replace]]\n"
    "                    FILE... | -\n"
    "Add each FILE (or standard input for -) to the store and print its\n"
    "sha256:<hex> digest, one line per input. With --name and --version, also\n"
    "add it as the artifact of that package version for its platform: the\n"
    "version's manifest is created or updated and indexed. A version's\n"
    "artifacts are immutable: the same artifact again changes nothing, a\n"
    "different one for a platform the version has is refused without --replace.\n"
    "\n"
    "  --store DIR        the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --batch            sync once for all inputs instead of once per blob\n"
    "  --no-fsync         never sync (benchmarks and tests only)\n"
    "  --json             print a JSON document instead of lines\n"
    "  --zstd             also write the zstd transfer copy (<blob>.zst) that\n"
    "                     pkgstored serves with Content-Encoding: zstd\n"
    "  --name N           also add the input to package N (one input only)\n"
    "  --version V        the package version, SemVer (with --name)\n"
    "  --type T           primary (default) or addon\n"
    "  --platform P       os/arch[/variant] (default: this machine's)\n"
    "  --format F         binary, tar, tar+gzip, tar+zstd, tar+xz or zip; the\n"
    "                     content must be that (default: detected from it)\n"
    "  --entrypoint PATH  the executable inside an archive (default: its only\n"
    "                     executable file), or a binary's file name (default:\n"
    "                     the input's file name, or N for standard input)\n"
    "  --depends 'NAME CONSTRAINT'\n"
    "                     a primary package this one needs, e.g.\n"
    "                     'otelcol-contrib >=0.90.0 <1.0.0' (repeatable)\n"
    "  --annotation KEY=VALUE\n"
    "                     set a manifest annotation (repeatable), e.g. an addon's\n"
    "                     'io.pkgstore.addon.args=[\"--config\",\"{addon_dir}/c.yaml\"]'\n"
    "  --force            skip the dependency check\n"
    "  --replace          replace the artifact the version has for the platform\n"
    "                     (said on stderr; refused while a policy references\n"
    "                     the version)\n"
    "  --help             show this help\n"
    "  --version          (alone) show the program version\n"
    "\n"
    "An archive is checked before anything is recorded: every entry must be\n"
    "safe to extract and the entrypoint must be a regular file in it. A refused\n"
    "package leaves nothing in the store.\n"
    "\n"
    "Exit status: 0 all added, 1 an input could not be added, 2 usage error,\n"
    "3 the store could not be opened or the package not recorded (an unsafe\n"
    "archive, a format the content contradicts, an unmet dependency, a\n"
    "different artifact without --replace, ...), 4 every blob was added but a\n"
    "--zstd transfer copy could not be written (the blob is fine; pkgstored\n"
    "serves it uncompressed).\n";

#define EXIT_NO_ZSTD 4 /* blobs added, a transfer copy missing */

struct added {
    const char *input;
    int ok;
    pkgstore_digest digest;
    uint64_t size;
    int error;          /* when !ok: the library's code */
    char *message;      /* when !ok: its detail (freed by main) */
    int zstd_error;     /* --zstd: the copy's failure (the blob is added) */
    char *zstd_message; /* its detail (freed by main) */
};

/* a manifest holds no more */
#define MAX_DEPENDS PKGSTORE_MANIFEST_DEPENDENCIES_MAX

struct package_args {
    const char *name, *version, *type, *platform, *format, *entrypoint;
    const char *depends_text[MAX_DEPENDS];      /* as given */
    pkgstore_dependency depends[MAX_DEPENDS];   /* parsed by check_package_args() */
    size_t depends_count;
    const char *annotations[MAX_DEPENDS]; /* "KEY=VALUE" */
    size_t annotation_count;
    int force;
    int replace;
};

/* What was recorded, for the output. */
struct recorded {
    pkgstore_resolution what; /* name, version, type, manifest digest, artifact */
    int64_t created;
    int replaced;              /* --replace took effect: */
    pkgstore_artifact previous; /* the artifact it replaced */
};

/* Check the package options up front, so a bad one is a usage error and
 * nothing is added; parses the --depends texts into args->depends. */
static int check_package_args(struct package_args *args)
{
    pkgstore_package_type type;
    pkgstore_semver version;
    pkgstore_platform platform;
    int error;
    if (args->type && pkgstore_package_type_parse(&type, args->type) < 0)
        return cli_usage("--type: must be primary or addon, not '%s'", args->type);
    if ((error = pkgstore_manifest_name_validate(args->name)) < 0)
        return cli_usage("--name: %s", pkgstore_error_detail());
    if (args->platform && (error = pkgstore_platform_parse(&platform, args->platform)) < 0)
        return cli_usage("--platform: %s", pkgstore_error_detail());
    if (args->format && (error = pkgstore_manifest_format_validate(args->format)) < 0)
        return cli_usage("--format: '%s' is not one of binary, tar, tar+gzip, tar+zstd, "
                         "tar+xz, zip",
                         args->format);
    if (args->entrypoint &&
        (args->entrypoint[0] == '\0' || strlen(args->entrypoint) > PKGSTORE_ENTRYPOINT_MAX))
        return cli_usage("--entrypoint: must be 1 to %d characters", PKGSTORE_ENTRYPOINT_MAX);
    if ((error = pkgstore_version_parse(&version, args->version)) < 0)
        return cli_usage("--version: %s", pkgstore_error_detail());
    for (size_t i = 0; i < args->depends_count; i++) {
        if (pkgstore_dependency_parse(&args->depends[i], args->depends_text[i]) < 0)
            return cli_usage("--depends: '%s': %s", args->depends_text[i],
                             pkgstore_error_detail());
        /* the registry would keep only the last: say so instead */
        for (size_t j = 0; j < i; j++)
            if (strcmp(args->depends[j].name, args->depends[i].name) == 0)
                return cli_usage("--depends: '%s' is given twice", args->depends[i].name);
    }
    for (size_t i = 0; i < args->annotation_count; i++) {
        const char *eq = strchr(args->annotations[i], '=');
        if (!eq || eq == args->annotations[i])
            return cli_usage("--annotation: '%s' is not KEY=VALUE", args->annotations[i]);
    }
    return 0;
}

/* Record the linked input as the artifact of (name, version) through the
 * registry, which checks it and regenerates and indexes the manifest. */
static int record_package(struct recorded *out, pkgstore_store *store,
                          const struct package_args *args, struct added *blob)
{
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    pkgstore_registry *reg = NULL;
    pkgstore_manifest *manifest = NULL;
    pkgstore_artifact artifact;
    pkgstore_platform host;
    int error;

    memset(out, 0, sizeof(*out));
    memset(&artifact, 0, sizeof(artifact));
    artifact.digest = blob->digest;
    artifact.size = blob->size;
    if (args->platform) {
        snprintf(artifact.platform, sizeof(artifact.platform), "%s", args->platform);
    } else {
        char text[PKGSTORE_PLATFORM_STR_SIZE];
        if ((error = pkgstore_platform_host(&host)) < 0) {
            cli_lib_error("--platform", error);
            return CLI_EXIT_ERROR;
        }
        if (pkgstore_platform_format(text, &host) >= sizeof(artifact.platform)) {
            cli_error("--platform", "this machine's platform %s is too long", text);
            return CLI_EXIT_ERROR;
        }
        memcpy(artifact.platform, text, strlen(text) + 1);
    }
    if (args->format)
        snprintf(artifact.format, sizeof(artifact.format), "%s", args->format);
    if (args->entrypoint) {
        snprintf(artifact.entrypoint, sizeof(artifact.entrypoint), "%s", args->entrypoint);
    } else if (strcmp(blob->input, "-") != 0) {
        /* a binary installs under its file name; for an archive the library
         * takes its only executable, and standard input gets the package name */
        pkgstore_archive_format detected = PKGSTORE_ARCHIVE_UNKNOWN;
        if (args->format)
            pkgstore_archive_format_parse(&detected, args->format);
        else if (pkgstore_archive_detect_file(&detected, blob->input) < 0)
            detected = PKGSTORE_ARCHIVE_UNKNOWN; /* the library will say why */
        if (detected == PKGSTORE_ARCHIVE_BINARY) {
            const char *slash = strrchr(blob->input, '/');
            snprintf(artifact.entrypoint, sizeof(artifact.entrypoint), "%s",
                     slash ? slash + 1 : blob->input);
        }
    }
    if (args->type)
        pkgstore_package_type_parse(&opts.type, args->type);
    opts.dependencies = args->depends; /* parsed by check_package_args() */
    opts.dependency_count = args->depends_count;
    opts.force = args->force;
    opts.replace = args->replace;
    opts.replaced = &out->previous;

    if ((error = pkgstore_registry_open(&reg, store)) < 0) {
        cli_lib_error(NULL, error);
        return CLI_EXIT_ERROR;
    }
    error = pkgstore_registry_add(&manifest, &out->what.manifest_digest, reg, args->name,
                                  args->version, &artifact, &opts);
    if (error == 0 && args->annotation_count) {
        /* annotations belong to the version: set them on the manifest the
         * add produced and store it again */
        for (size_t i = 0; i < args->annotation_count && error == 0; i++) {
            const char *text = args->annotations[i], *eq = strchr(text, '=');
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - text), text);
            error = pkgstore_manifest_annotation_set(manifest, key, eq + 1);
        }
        if (error == 0)
            error = pkgstore_registry_put(&out->what.manifest_digest, reg, manifest, args->force);
        if (error < 0) {
            pkgstore_manifest_free(manifest);
            manifest = NULL;
        }
    }
    if (error < 0) {
        char object[PKGSTORE_NAME_MAX + PKGSTORE_VERSION_MAX + 2];
        snprintf(object, sizeof(object), "%s %s", args->name, args->version);
        blob->error = error;
        blob->message = strdup(pkgstore_error_detail());
        if (error == PKGSTORE_ECONFLICT && !args->replace &&
            strstr(pkgstore_error_detail(), "only with replace") != NULL)
            cli_error(NULL, "%s (--replace replaces it)", pkgstore_error_detail());
        else
            cli_lib_error(object, error);
        pkgstore_registry_free(reg);
        return CLI_EXIT_ERROR;
    }
    out->replaced = error == 1;
    /* the artifact as recorded: normalized platform, detected format, ... */
    const pkgstore_artifact *recorded = pkgstore_manifest_artifact_find(manifest, artifact.platform);
    if (recorded)
        out->what.artifact = *recorded;
    snprintf(out->what.name, sizeof(out->what.name), "%s", pkgstore_manifest_name(manifest));
    snprintf(out->what.version, sizeof(out->what.version), "%s",
             pkgstore_manifest_version(manifest));
    out->what.type = pkgstore_manifest_type(manifest);
    out->created = pkgstore_manifest_created(manifest);
    if (out->replaced) {
        /* a replaced artifact is always said, whatever the output format */
        char old[PKGSTORE_DIGEST_STR_SIZE], new_digest[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(old, &out->previous.digest);
        pkgstore_digest_format(new_digest, &out->what.artifact.digest);
        fprintf(stderr, "%s: %s %s %s: replaced %s with %s\n", cli_prog(), out->what.name,
                out->what.version, out->what.artifact.platform, old, new_digest);
    }
    pkgstore_manifest_free(manifest);
    pkgstore_registry_free(reg);
    return CLI_EXIT_OK;
}

/* --name: the input is linked (not recorded), checked and recorded by the
 * registry, then committed; a refused package is withdrawn and leaves
 * nothing. Returns CLI_EXIT_OK, CLI_EXIT_FAIL (the input could not be read
 * or stored: item->error) or CLI_EXIT_ERROR (refused, said so). */
static int add_package(struct added *item, struct recorded *record, pkgstore_store *store,
                       const struct package_args *args)
{
    pkgstore_store_writer *writer = NULL;
    int fd = 0, error, rc;

    if (strcmp(item->input, "-") != 0 && (fd = open(item->input, O_RDONLY | O_CLOEXEC)) < 0) {
        item->error = errno == ENOENT ? PKGSTORE_ENOTFOUND
                      : errno == EACCES ? PKGSTORE_EDENIED
                                        : PKGSTORE_EIO;
        item->message = strdup(strerror(errno));
        cli_error(item->input, "open: %s", item->message ? item->message : "failed");
        return CLI_EXIT_FAIL;
    }
    if ((error = pkgstore_store_writer_open(&writer, store, NULL, -1)) < 0 ||
        (error = pkgstore_store_writer_read_fd(writer, fd)) < 0 ||
        (error = pkgstore_store_writer_link(&item->digest, &item->size, writer)) < 0) {
        item->error = error;
        pkgstore_store_writer_abort(writer);
        if (fd > 0)
            close(fd);
        return CLI_EXIT_FAIL;
    }
    if (fd > 0)
        close(fd);
    /* batch mode: durable before the registry's records name it */
    if ((error = pkgstore_store_sync(store)) < 0) {
        item->error = error;
        pkgstore_store_writer_abort(writer);
        return CLI_EXIT_FAIL;
    }
    if ((rc = record_package(record, store, args, item)) != CLI_EXIT_OK) {
        if ((error = pkgstore_store_writer_withdraw(writer)) < 0)
            cli_lib_error(item->input, error); /* it stays as an orphan: fsck says so */
        return rc;
    }
    if ((error = pkgstore_store_writer_commit(&item->digest, &item->size, writer)) < 0) {
        item->error = error;
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static void print_package_json(const struct recorded *record)
{
    char digest[PKGSTORE_DIGEST_STR_SIZE], manifest[PKGSTORE_DIGEST_STR_SIZE], created[32];
    const pkgstore_artifact *a = &record->what.artifact;
    pkgstore_digest_format(digest, &a->digest);
    pkgstore_digest_format(manifest, &record->what.manifest_digest);
    cli_format_time(created, sizeof(created), record->created);
    printf("{\"name\": ");
    cli_json_string(stdout, record->what.name);
    printf(", \"version\": ");
    cli_json_string(stdout, record->what.version);
    printf(", \"platform\": ");
    cli_json_string(stdout, a->platform);
    printf(", \"type\": \"%s\", \"digest\": \"%s\", \"size\": %llu, \"format\": ",
           pkgstore_package_type_name(record->what.type), digest, (unsigned long long)a->size);
    cli_json_string(stdout, a->format);
    printf(", \"entrypoint\": ");
    cli_json_string(stdout, a->entrypoint);
    printf(", \"created\": \"%s\", \"manifest_digest\": \"%s\"", created, manifest);
    if (record->replaced) {
        char old[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(old, &record->previous.digest);
        printf(", \"replaced\": \"%s\"", old);
    }
    printf("}");
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_BATCH, OPT_NOFSYNC, OPT_JSON, OPT_NAME, OPT_VERSION, OPT_TYPE,
           OPT_PLATFORM, OPT_FORMAT, OPT_ENTRYPOINT, OPT_DEPENDS, OPT_FORCE, OPT_REPLACE, OPT_ZSTD,
           OPT_HELP, OPT_ANNOTATION };
    static const struct option options[] = {
        {"store", required_argument, NULL, OPT_STORE},
        {"batch", no_argument, NULL, OPT_BATCH},
        {"no-fsync", no_argument, NULL, OPT_NOFSYNC},
        {"json", no_argument, NULL, OPT_JSON},
        {"name", required_argument, NULL, OPT_NAME},
        {"version", required_argument, NULL, OPT_VERSION},
        {"type", required_argument, NULL, OPT_TYPE},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
        {"depends", required_argument, NULL, OPT_DEPENDS},
        {"annotation", required_argument, NULL, OPT_ANNOTATION},
        {"force", no_argument, NULL, OPT_FORCE},
        {"replace", no_argument, NULL, OPT_REPLACE},
        {"zstd", no_argument, NULL, OPT_ZSTD},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};
    pkgstore_durability durability = PKGSTORE_DURABILITY_FSYNC;
    struct package_args package;
    struct recorded record;
    const char *store_opt = NULL, *store_dir;
    pkgstore_store *store = NULL;
    struct added *added = NULL;
    int json = 0, zstd = 0, opt, ninputs, status = CLI_EXIT_OK, have_record = 0, stdin_used = 0, error;

    memset(&package, 0, sizeof(package));
    cli_init(argv[0]);
    /* --version alone is the program's version; with a value, the package's */
    if (argc == 2 && strcmp(argv[1], "--version") == 0)
        return cli_version();
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
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
        case OPT_ZSTD: zstd = 1; break;
        case OPT_NAME: package.name = optarg; break;
        case OPT_VERSION: package.version = optarg; break;
        case OPT_TYPE: package.type = optarg; break;
        case OPT_PLATFORM: package.platform = optarg; break;
        case OPT_FORMAT: package.format = optarg; break;
        case OPT_ENTRYPOINT: package.entrypoint = optarg; break;
        case OPT_DEPENDS:
            if (package.depends_count == MAX_DEPENDS)
                return cli_usage("--depends: at most %d", MAX_DEPENDS);
            package.depends_text[package.depends_count++] = optarg;
            break;
        case OPT_ANNOTATION:
            if (package.annotation_count == MAX_DEPENDS)
                return cli_usage("--annotation: at most %d", MAX_DEPENDS);
            package.annotations[package.annotation_count++] = optarg;
            break;
        case OPT_FORCE: package.force = 1; break;
        case OPT_REPLACE: package.replace = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    ninputs = argc - optind;
    if (ninputs == 0)
        return cli_usage("no input: give FILE... or - for standard input");
    if ((package.name == NULL) != (package.version == NULL))
        return cli_usage("--name and --version go together");
    if (package.name == NULL && (package.type || package.platform || package.format ||
                                 package.entrypoint || package.depends_count ||
                                 package.annotation_count || package.force || package.replace))
        return cli_usage("--type, --platform, --format, --entrypoint, --depends, --annotation, "
                         "--force and --replace need --name and --version");
    if (package.name != NULL && ninputs != 1)
        return cli_usage("--name records one package: give exactly one input");
    if (package.name != NULL && (error = check_package_args(&package)) != 0)
        return error;
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
        const char *shown;
        item->input = argv[optind + i];
        shown = strcmp(item->input, "-") == 0 ? "(stdin)" : item->input;
        if (package.name != NULL) {
            int rc = add_package(item, &record, store, &package);
            if (rc == CLI_EXIT_ERROR) { /* the package was refused: nothing was added */
                status = rc;
                continue;
            }
            have_record = rc == CLI_EXIT_OK;
            error = rc == CLI_EXIT_OK ? 0 : item->error;
        } else if (strcmp(item->input, "-") == 0) {
            error = pkgstore_store_add_fd(&item->digest, &item->size, store, 0, NULL, -1);
        } else {
            error = pkgstore_store_add_file(&item->digest, &item->size, store, item->input, NULL,
                                            -1);
        }
        if (error < 0) {
            item->error = error;
            if (item->message == NULL) { /* else said already */
                item->message = strdup(pkgstore_error_detail());
                cli_lib_error(strcmp(item->input, "-") == 0 ? "(stdin)" : NULL, error);
            }
            status = CLI_EXIT_FAIL;
            continue;
        }
        item->ok = 1;
        /* also for a blob that was already there: the copy may be missing.
         * The blob is added either way; only the copy is missing. */
        if (zstd && (error = pkgstore_store_zstd_write(store, &item->digest)) < 0) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(text, &item->digest);
            item->zstd_error = error;
            item->zstd_message = strdup(pkgstore_error_detail());
            cli_error(shown, "added as %s, but its zstd transfer copy was not written: %s", text,
                      pkgstore_error_detail());
        }
        if (!json) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(text, &item->digest);
            printf("%s\n", text);
        }
    }
    /* batch mode: the blobs become durable (and recorded) here */
    if ((error = pkgstore_store_sync(store)) < 0) {
        cli_lib_error(NULL, error);
        status = CLI_EXIT_FAIL;
    }
    for (int i = 0; i < ninputs && status == CLI_EXIT_OK; i++)
        if (added[i].zstd_error)
            status = EXIT_NO_ZSTD;
    if (json) {
        printf("{\"blobs\": [");
        for (int i = 0, first = 1; i < ninputs; i++) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            printf("%s{\"input\": ", first ? "" : ", ");
            first = 0;
            cli_json_string(stdout, added[i].input);
            if (!added[i].ok) {
                printf(", \"error\": \"%s\", \"message\": ", pkgstore_error_name(added[i].error));
                cli_json_string(stdout, added[i].message ? added[i].message : "");
                printf("}");
                continue;
            }
            pkgstore_digest_format(text, &added[i].digest);
            printf(", \"digest\": \"%s\", \"size\": %llu", text,
                   (unsigned long long)added[i].size);
            if (zstd) {
                printf(", \"zstd\": %s", added[i].zstd_error ? "false" : "true");
                if (added[i].zstd_error) {
                    printf(", \"zstd_error\": \"%s\", \"zstd_message\": ",
                           pkgstore_error_name(added[i].zstd_error));
                    cli_json_string(stdout, added[i].zstd_message ? added[i].zstd_message : "");
                }
            }
            printf("}");
        }
        printf("]");
        if (have_record) {
            printf(", \"package\": ");
            print_package_json(&record);
        }
        printf("}\n");
    } else if (have_record) {
        char text[PKGSTORE_DIGEST_STR_SIZE], manifest[PKGSTORE_DIGEST_STR_SIZE];
        const pkgstore_artifact *a = &record.what.artifact;
        pkgstore_digest_format(text, &a->digest);
        pkgstore_digest_format(manifest, &record.what.manifest_digest);
        printf("package %s %s %s %s %s %llu %s %s\n", record.what.name, record.what.version,
               a->platform, pkgstore_package_type_name(record.what.type), text,
               (unsigned long long)a->size, a->format, a->entrypoint);
        printf("manifest %s\n", manifest);
    }
    for (int i = 0; i < ninputs; i++) {
        free(added[i].message);
        free(added[i].zstd_message);
    }
    free(added);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
