/*
 * pkgstore-pack: make a deterministic tar+zstd artifact from files.
 *
 *   pkgstore-pack -o OUT.tar.zst [-C DIR] [--level N] [--keep-metadata] [--json] FILE...
 *
 * A thin main over pkgstore_archive_create_tar_zstd(); see
 * docs/pkgstore-pack.1.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define PROG "pkgstore-pack"

/* The library's codes for an input the checks refuse (see REFUSED INPUTS in
 * docs/pkgstore-pack.1): exit 1. Anything else (writing the output, memory)
 * is exit 3. */
static int refused(int error)
{
    return error == PKGSTORE_EINVALID || error == PKGSTORE_ENOTFOUND ||
           error == PKGSTORE_EUNSAFE || error == PKGSTORE_ELIMIT;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " -o OUT.tar.zst [options] FILE...\n"
            "\n"
            "Pack files and directories into a deterministic tar+zstd archive\n"
            "(sorted entries, mtime 0, owner 0) that pkgstore extracts safely.\n"
            "Each FILE is stored under the relative path given.\n"
            "\n"
            "options:\n"
            "  -o, --output PATH     the archive to write (replaced atomically)\n"
            "  -C, --directory DIR   FILE paths are relative to DIR (default: .)\n"
            "  -l, --level N         zstd level 1..19 (default 9)\n"
            "      --keep-metadata   keep mtimes and owners (not deterministic)\n"
            "      --json            print the result as JSON\n"
            "  -h, --help            show this help\n"
            "  -V, --version         show the version\n"
            "\n"
            "exit status: 0 packed, 1 an input was refused or not found, 2 usage error,\n"
            "3 any other error (the output cannot be written, ...)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"directory", required_argument, NULL, 'C'},
        {"level", required_argument, NULL, 'l'},
        {"keep-metadata", no_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    pkgstore_archive_create_options opts = PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT;
    const char *output = NULL, *directory = NULL;
    int json = 0, c;

    cli_init(argv[0]);
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:C:l:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'C': directory = optarg; break;
        case 'l': {
            char *end;
            long level = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || level < 1 || level > 19)
                return cli_usage("--level: '%s' is not a number in 1..19", optarg);
            opts.zstd_level = (int)level;
            break;
        }
        case 'k': opts.keep_metadata = 1; break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': return cli_version();
        case ':':
        default: return cli_option_error(c, argv);
        }
    }
    if (!output)
        return cli_usage("missing -o OUT.tar.zst");
    if (optind >= argc)
        return cli_usage("no FILE to pack");

    size_t n = (size_t)(argc - optind);
    int error = pkgstore_archive_create_tar_zstd(output, directory, (const char *const *)&argv[optind],
                                                 n, &opts);
    if (error < 0) {
        /* The detail names the object (the input or the output). */
        cli_lib_error(NULL, error);
        return refused(error) ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
    }

    pkgstore_archive_info *info = NULL;
    pkgstore_digest digest;
    uint64_t size = 0;
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    if ((error = pkgstore_archive_validate_file(&info, output, NULL, NULL)) < 0 ||
        (error = pkgstore_digest_file(&digest, &size, output)) < 0) {
        cli_lib_error(output, error);
        pkgstore_archive_info_free(info);
        return CLI_EXIT_ERROR;
    }
    unsigned long long entries = pkgstore_archive_info_entries(info);
    unsigned long long expanded = pkgstore_archive_info_total_size(info);
    pkgstore_digest_format(digest_str, &digest);
    if (json) {
        printf("{\"path\":");
        cli_json_string(stdout, output);
        printf(",\"format\":\"tar+zstd\",\"digest\":\"%s\",\"size\":%llu,\"entries\":%llu,"
               "\"expanded_size\":%llu",
               digest_str, (unsigned long long)size, entries, expanded);
        if (pkgstore_archive_info_executables(info) == 1) {
            printf(",\"entrypoint\":");
            cli_json_string(stdout, pkgstore_archive_info_sole_executable(info));
        }
        printf("}\n");
    } else {
        printf("%s: tar+zstd, %llu entries, %llu bytes (%llu expanded), %s\n", output, entries,
               (unsigned long long)size, expanded, digest_str);
    }
    pkgstore_archive_info_free(info);
    if (fflush(stdout) != 0) {
        cli_error(NULL, "writing output failed");
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}
