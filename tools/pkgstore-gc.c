/*
 * pkgstore-gc: delete the blobs no package, manifest or pin refers to, once
 * they are older than a grace period, with stale tmp/ files and orphaned
 * .zst copies. Also pins and unpins blobs (gc roots).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <pkgstore/gc.h>

static const char usage_text[] =
    "Usage: pkgstore-gc [--store DIR] [--dry-run] [--grace SECONDS] [--json] [--verbose]\n"
    "       pkgstore-gc [--store DIR] --pin DIGEST [--reason TEXT]\n"
    "       pkgstore-gc [--store DIR] --unpin DIGEST\n"
    "       pkgstore-gc [--store DIR] --pins [--json]\n"
    "Delete the blobs that no package record, manifest or pin refers to and\n"
    "that are older than the grace period, stale files in tmp/ and .zst copies\n"
    "whose blob is gone. Safe to run while other programs add to the store.\n"
    "\n"
    "  --store DIR       the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --dry-run         delete nothing; report what would be deleted\n"
    "  --grace SECONDS   keep what is younger (default 3600; 0 allowed;\n"
    "                    suffixes s, m, h and d are accepted: 30m, 2h, 7d)\n"
    "  --json            print one JSON document\n"
    "  -v, --verbose     list every item deleted\n"
    "  --pin DIGEST      keep this blob even when nothing refers to it\n"
    "  --reason TEXT     a note kept with the pin\n"
    "  --unpin DIGEST    remove a pin\n"
    "  --pins            list the pins\n"
    "  --help            show this help\n"
    "  --version         show the program version\n"
    "\n"
    "Exit status: 0 success, 1 --unpin of a blob that is not pinned or --pin of\n"
    "a blob not in the store, 2 usage error, 3 any other error.\n";

enum { OPT_STORE = 256, OPT_DRY_RUN, OPT_GRACE, OPT_JSON, OPT_PIN, OPT_REASON, OPT_UNPIN,
       OPT_PINS, OPT_HELP, OPT_VERSION };

static const struct option long_options[] = {
    {"store", required_argument, NULL, OPT_STORE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"json", no_argument, NULL, OPT_JSON},
    {"verbose", no_argument, NULL, 'v'},
    {"pin", required_argument, NULL, OPT_PIN},
    {"reason", required_argument, NULL, OPT_REASON},
    {"unpin", required_argument, NULL, OPT_UNPIN},
    {"pins", no_argument, NULL, OPT_PINS},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

struct output {
    int json;
    int verbose;
    int dry_run;
    unsigned long items;
};

/* "3600", "30m", "2h", "7d" into seconds; -1 if malformed. */
static int64_t parse_grace(const char *text)
{
    char *end;
    long long value, unit = 1;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0)
        return -1;
    if (*end != '\0') {
        switch (*end) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return -1;
        }
        if (end[1] != '\0')
            return -1;
    }
    if (value > INT64_MAX / unit)
        return -1;
    return (int64_t)(value * unit);
}

static const char *kind_name(pkgstore_gc_kind kind)
{
    switch (kind) {
    case PKGSTORE_GC_BLOB: return "blob";
    case PKGSTORE_GC_ZST: return "zst";
    case PKGSTORE_GC_TMP: return "tmp";
    }
    return "unknown";
}

static int print_item(const pkgstore_gc_item *item, void *payload)
{
    struct output *out = payload;
    char digest[PKGSTORE_DIGEST_STR_SIZE] = "";

    if (item->has_digest)
        pkgstore_digest_format(digest, &item->digest);
    if (out->json) {
        printf("%s\n    {\"kind\": \"%s\", \"path\": ", out->items ? "," : "", kind_name(item->kind));
        cli_json_string(stdout, item->path);
        if (item->has_digest)
            printf(", \"digest\": \"%s\"", digest);
        printf(", \"bytes\": %" PRIu64 "}", item->bytes);
    } else if (out->verbose) {
        printf("%s %s %s (%" PRIu64 " bytes)\n", out->dry_run ? "would delete" : "deleted",
               kind_name(item->kind), item->has_digest ? digest : item->path, item->bytes);
    }
    out->items++;
    return 0;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int run_gc(pkgstore_store *store, int64_t grace, struct output *out)
{
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    pkgstore_gc_report report;
    int error;

    opts.grace_seconds = grace;
    opts.dry_run = out->dry_run;
    opts.cb = print_item;
    opts.payload = out;
    if (out->json)
        printf("{\n  \"items\": [");
    error = pkgstore_gc_run(&report, store, &opts);
    if (out->json) {
        /* the document stays well-formed even when gc stopped early */
        printf("%s],\n  \"dry_run\": %s, \"grace_seconds\": %" PRId64 ",\n", out->items ? "\n  " : "",
               report.dry_run ? "true" : "false", grace);
        printf("  \"blobs_total\": %" PRIu64 ", \"blobs_referenced\": %" PRIu64
               ", \"blobs_young\": %" PRIu64 ",\n",
               report.blobs_total, report.blobs_referenced, report.blobs_young);
        printf("  \"blobs_deleted\": %" PRIu64 ", \"zst_deleted\": %" PRIu64
               ", \"tmp_deleted\": %" PRIu64 ", \"bytes_freed\": %" PRIu64 ",\n",
               report.blobs_deleted, report.zst_deleted, report.tmp_deleted, report.bytes_freed);
        printf("  \"ok\": %s\n}\n", error < 0 ? "false" : "true");
    }
    if (error < 0) {
        cli_lib_error(pkgstore_store_path(store), error);
        return CLI_EXIT_ERROR;
    }
    if (!out->json) {
        printf("%s %" PRIu64 " %s, %" PRIu64 " .zst %s, %" PRIu64 " tmp %s: %" PRIu64
               " bytes freed\n",
               out->dry_run ? "would delete" : "deleted", report.blobs_deleted,
               plural(report.blobs_deleted, "blob", "blobs"), report.zst_deleted,
               plural(report.zst_deleted, "copy", "copies"), report.tmp_deleted,
               plural(report.tmp_deleted, "file", "files"), report.bytes_freed);
        printf("kept %" PRIu64 " referenced and %" PRIu64 " younger than %" PRId64
               " s, of %" PRIu64 " blobs\n",
               report.blobs_referenced, report.blobs_young, grace, report.blobs_total);
    }
    return CLI_EXIT_OK;
}

static int print_pin(const pkgstore_digest *digest, const char *reason, void *payload)
{
    struct output *out = payload;
    char text[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(text, digest);
    if (out->json) {
        printf("%s\n  {\"digest\": \"%s\", \"reason\": ", out->items ? "," : "", text);
        cli_json_string(stdout, reason);
        printf("}");
    } else {
        printf("%s %s\n", text, reason);
    }
    out->items++;
    return 0;
}

int main(int argc, char **argv)
{
    const char *store_opt = NULL, *dir, *pin = NULL, *unpin = NULL, *reason = NULL;
    struct output out = {0, 0, 0, 0};
    int64_t grace = PKGSTORE_GC_GRACE_DEFAULT;
    int list_pins = 0, opt, status, error;
    pkgstore_store *store = NULL;
    pkgstore_digest digest;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":v", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_DRY_RUN: out.dry_run = 1; break;
        case OPT_GRACE:
            if ((grace = parse_grace(optarg)) < 0)
                return cli_usage("--grace: '%s' is not a number of seconds", optarg);
            break;
        case OPT_JSON: out.json = 1; break;
        case 'v': out.verbose = 1; break;
        case OPT_PIN: pin = optarg; break;
        case OPT_REASON: reason = optarg; break;
        case OPT_UNPIN: unpin = optarg; break;
        case OPT_PINS: list_pins = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    if (optind < argc)
        return cli_usage("unexpected argument '%s'", argv[optind]);
    if ((pin != NULL) + (unpin != NULL) + list_pins > 1)
        return cli_usage("--pin, --unpin and --pins exclude each other");
    if (reason != NULL && pin == NULL)
        return cli_usage("--reason goes with --pin");
    if ((pin != NULL || unpin != NULL || list_pins) && out.dry_run)
        return cli_usage("--dry-run goes with a gc run only");
    if ((pin != NULL || unpin != NULL) &&
        (error = pkgstore_digest_parse(&digest, pin != NULL ? pin : unpin)) < 0)
        return cli_usage("%s: %s", pin != NULL ? pin : unpin, pkgstore_error_detail());

    if ((dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;

    status = CLI_EXIT_OK;
    if (pin != NULL || unpin != NULL) {
        error = pin != NULL ? pkgstore_gc_pin(store, &digest, reason)
                            : pkgstore_gc_unpin(store, &digest);
        if (error < 0) {
            cli_lib_error(NULL, error);
            status = error == PKGSTORE_ENOTFOUND ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
        }
    } else if (list_pins) {
        if (out.json)
            printf("[");
        error = pkgstore_gc_pins_foreach(store, print_pin, &out);
        if (out.json)
            printf("%s]\n", out.items ? "\n" : "");
        if (error < 0) {
            cli_lib_error(dir, error);
            status = CLI_EXIT_ERROR;
        }
    } else {
        status = run_gc(store, grace, &out);
    }
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
