/*
 * pkgstore-verify: re-hash blobs in the store, check any file against an
 * expected digest, or fsck the whole store (with optional repair).
 */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char usage_text[] =
    "Usage: pkgstore-verify [--store DIR] DIGEST...\n"
    "       pkgstore-verify --sha256 HEX FILE\n"
    "       pkgstore-verify [--store DIR] --all [--repair] [--json]\n"
    "Re-hash blobs of the store, check FILE against an expected SHA-256, or\n"
    "check the whole store (every blob, every index record, stray files,\n"
    "blobs without a record that a failed upload left).\n"
    "\n"
    "  --store DIR   the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --sha256 HEX  expected digest of FILE (64 hex, or sha256:<hex>)\n"
    "  --all         check the whole store (fsck)\n"
    "  --repair      with --all: quarantine corrupt blobs, strays and orphans\n"
    "                nothing refers to, record orphans something refers to,\n"
    "                drop index records that point at nothing\n"
    "  --json        print the result as JSON\n"
    "  --help        show this help\n"
    "  --version     show the program version\n"
    "\n"
    "Exit status: 0 all good, 1 a mismatch, a corrupt or missing blob (or any\n"
    "problem found by --all, even when repaired), 2 usage error, 3 any other error.\n";

static int json_out;

static const char *kind_name(pkgstore_fsck_kind kind)
{
    switch (kind) {
    case PKGSTORE_FSCK_MISSING: return "missing";
    case PKGSTORE_FSCK_CORRUPT: return "corrupt";
    case PKGSTORE_FSCK_STRAY: return "stray";
    case PKGSTORE_FSCK_ORPHAN: return "orphan";
    }
    return "unknown";
}

struct fsck_print {
    int count;
};

static int print_problem(const pkgstore_fsck_problem *problem, void *payload)
{
    struct fsck_print *state = payload;
    if (json_out) {
        printf("%s\n    {\"kind\": \"%s\", \"path\": ", state->count ? "," : "",
               kind_name(problem->kind));
        cli_json_string(stdout, problem->path);
        if (problem->has_digest) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(text, &problem->digest);
            printf(", \"digest\": \"%s\"", text);
        }
        printf(", \"detail\": ");
        cli_json_string(stdout, problem->detail ? problem->detail : "");
        printf(", \"repaired\": %s}", problem->repaired ? "true" : "false");
    } else {
        printf("%s %s: %s%s\n", kind_name(problem->kind), problem->path,
               problem->detail ? problem->detail : "", problem->repaired ? " (repaired)" : "");
    }
    state->count++;
    return 0;
}

static int run_fsck(pkgstore_store *store, int repair)
{
    struct fsck_print state = {0};
    pkgstore_fsck_report report;
    int error;

    if (json_out)
        printf("{\"problems\": [");
    error = pkgstore_store_fsck(&report, store, repair ? PKGSTORE_FSCK_REPAIR : 0, print_problem,
                                &state);
    if (json_out) {
        printf("%s], \"blobs_checked\": %llu, \"bytes_checked\": %llu, \"missing\": %llu, "
               "\"corrupt\": %llu, \"stray\": %llu, \"orphaned\": %llu, \"repaired\": %llu, "
               "\"ok\": %s}\n",
               state.count ? "\n  " : "", (unsigned long long)report.blobs_checked,
               (unsigned long long)report.bytes_checked, (unsigned long long)report.missing,
               (unsigned long long)report.corrupt, (unsigned long long)report.stray,
               (unsigned long long)report.orphaned, (unsigned long long)report.repaired,
               error == 0 && state.count == 0 ? "true" : "false");
    }
    if (error < 0) {
        cli_lib_error(NULL, error);
        return CLI_EXIT_ERROR;
    }
    if (!json_out)
        printf("checked %llu blobs (%llu bytes): %llu missing, %llu corrupt, %llu stray, "
               "%llu orphaned, %llu repaired\n",
               (unsigned long long)report.blobs_checked, (unsigned long long)report.bytes_checked,
               (unsigned long long)report.missing, (unsigned long long)report.corrupt,
               (unsigned long long)report.stray, (unsigned long long)report.orphaned,
               (unsigned long long)report.repaired);
    return report.missing || report.corrupt || report.stray || report.orphaned ? CLI_EXIT_FAIL
                                                                                : CLI_EXIT_OK;
}

static int verify_file(const char *hex, const char *path)
{
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest expected, actual;
    uint64_t size = 0;
    int error;

    if (strncmp(hex, "sha256:", 7) == 0)
        error = pkgstore_digest_parse(&expected, hex);
    else
        error = pkgstore_digest_parse_hex(&expected, hex);
    if (error < 0)
        return cli_usage("--sha256: %s", pkgstore_error_detail());
    if ((error = pkgstore_digest_file(&actual, &size, path)) < 0) {
        cli_lib_error(NULL, error);
        return CLI_EXIT_ERROR;
    }
    pkgstore_digest_format(want, &expected);
    pkgstore_digest_format(got, &actual);
    if (json_out) {
        printf("{\"file\": ");
        cli_json_string(stdout, path);
        printf(", \"expected\": \"%s\", \"actual\": \"%s\", \"size\": %llu, \"ok\": %s}\n", want,
               got, (unsigned long long)size, pkgstore_digest_equal(&expected, &actual) ? "true"
                                                                                       : "false");
    }
    if (!pkgstore_digest_equal(&expected, &actual)) {
        cli_error(path, "digest mismatch: expected %s, got %s", want, got);
        return CLI_EXIT_FAIL;
    }
    if (!json_out)
        printf("%s: OK\n", path);
    return CLI_EXIT_OK;
}

static int verify_blobs(pkgstore_store *store, char **digests, int count)
{
    int status = CLI_EXIT_OK;
    if (json_out)
        printf("{\"blobs\": [");
    for (int i = 0; i < count; i++) {
        pkgstore_digest digest;
        const char *result = "ok";
        int error;
        pkgstore_digest_parse(&digest, digests[i]); /* validated by main */
        error = pkgstore_store_blob_verify(store, &digest);
        if (error == PKGSTORE_ECORRUPT || error == PKGSTORE_ENOTFOUND) {
            result = error == PKGSTORE_ECORRUPT ? "corrupt" : "missing";
            cli_lib_error(NULL, error); /* the detail names the blob */
            if (status == CLI_EXIT_OK)
                status = CLI_EXIT_FAIL;
        } else if (error < 0) {
            result = "error";
            cli_lib_error(NULL, error); /* the detail names the blob */
            status = CLI_EXIT_ERROR;
        } else if (!json_out) {
            printf("%s: OK\n", digests[i]);
        }
        if (json_out)
            printf("%s{\"digest\": \"%s\", \"result\": \"%s\"}", i ? ", " : "", digests[i],
                   result);
    }
    if (json_out)
        printf("]}\n");
    return status;
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_SHA256, OPT_ALL, OPT_REPAIR, OPT_JSON, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {
        {"store", required_argument, NULL, OPT_STORE},
        {"sha256", required_argument, NULL, OPT_SHA256},
        {"all", no_argument, NULL, OPT_ALL},
        {"repair", no_argument, NULL, OPT_REPAIR},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *sha256 = NULL, *store_dir;
    pkgstore_store *store = NULL;
    int all = 0, repair = 0, opt, nargs, status;

    cli_init(argv[0]);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STORE: store_opt = optarg; break;
        case OPT_SHA256: sha256 = optarg; break;
        case OPT_ALL: all = 1; break;
        case OPT_REPAIR: repair = 1; break;
        case OPT_JSON: json_out = 1; break;
        case OPT_HELP: fputs(usage_text, stdout); return CLI_EXIT_OK;
        case OPT_VERSION: return cli_version();
        case ':':
        default: return cli_option_error(opt, argv);
        }
    }
    nargs = argc - optind;
    if (repair && !all)
        return cli_usage("--repair goes with --all");
    if (sha256 != NULL) {
        if (all || store_opt)
            return cli_usage("--sha256 checks a file; it takes neither --all nor --store");
        if (nargs != 1)
            return cli_usage("--sha256 HEX takes exactly one FILE");
        return verify_file(sha256, argv[optind]);
    }
    if (all && nargs != 0)
        return cli_usage("--all takes no DIGEST arguments");
    if (!all && nargs == 0)
        return cli_usage("nothing to verify: give DIGEST..., --sha256 HEX FILE or --all");
    for (int i = optind; i < argc; i++)
        if (pkgstore_digest_validate(argv[i]) < 0)
            return cli_usage("%s: %s", argv[i], pkgstore_error_detail());
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    status = all ? run_fsck(store, repair) : verify_blobs(store, argv + optind, nargs);
    pkgstore_store_free(store);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return status;
}
