/*
 * pkgstore-cat: a blob's bytes to stdout.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: pkgstore-cat [--store DIR] DIGEST\n"
    "Write the bytes of the blob sha256:<64 hex> to standard output. Manifests\n"
    "are blobs too: pkgstore-show --digest NAME VERSION gives their digest.\n"
    "\n"
    "  --store DIR   the store (default: $COLLECTORCTRL_PACKAGES_DIR)\n"
    "  --help        show this help\n"
    "  --version     show the program version\n"
    "\n"
    "Exit status: 0 success, 1 no such blob, 2 usage error, 3 any other error.\n";

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_HELP, OPT_VERSION };
    static const struct option options[] = {{"store", required_argument, NULL, OPT_STORE},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {"version", no_argument, NULL, OPT_VERSION},
                                            {NULL, 0, NULL, 0}};
    const char *store_opt = NULL, *store_dir;
    pkgstore_store *store = NULL;
    pkgstore_digest digest;
    int opt, error, fd = -1, status = CLI_EXIT_OK;
    uint64_t size = 0, written = 0;

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
    if (argc == optind)
        return cli_usage("missing DIGEST");
    if (argc - optind > 1)
        return cli_usage("unexpected argument '%s'", argv[optind + 1]);
    if ((error = pkgstore_digest_parse(&digest, argv[optind])) < 0) {
        cli_lib_error(argv[optind], error);
        return CLI_EXIT_USAGE;
    }
    if ((store_dir = cli_store_dir(store_opt)) == NULL)
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, store_dir, PKGSTORE_DURABILITY_FSYNC, 0) < 0)
        return CLI_EXIT_ERROR;
    if ((error = pkgstore_store_blob_open(&fd, &size, store, &digest)) < 0) {
        cli_lib_error(argv[optind], error);
        status = error == PKGSTORE_ENOTFOUND ? CLI_EXIT_FAIL : CLI_EXIT_ERROR;
        goto out;
    }
    /* A reader that goes away (| head) is not an error worth a message. */
    signal(SIGPIPE, SIG_DFL);
    char buffer[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error(argv[optind], "read: %s", strerror(errno));
            status = CLI_EXIT_ERROR;
            break;
        }
        if (n == 0)
            break;
        if (write_all(STDOUT_FILENO, buffer, (size_t)n) < 0) {
            cli_error(NULL, "write to standard output: %s", strerror(errno));
            status = CLI_EXIT_ERROR;
            break;
        }
        written += (uint64_t)n;
    }
    if (status == CLI_EXIT_OK && written != size) {
        cli_error(argv[optind], "blob changed size while reading (%llu of %llu bytes)",
                  (unsigned long long)written, (unsigned long long)size);
        status = CLI_EXIT_ERROR;
    }
out:
    if (fd >= 0)
        close(fd);
    pkgstore_store_free(store);
    return status;
}
