/*
 * examples/embed_store.c - embedding libpkgstore: the blob store.
 *
 * Opens (or creates) a store, streams a file into it through the writer
 * (optionally checking the bytes against an expected digest), reads the
 * blob back through a file descriptor, re-hashes it and prints
 * "sha256:<hex> <size>".
 *
 *   example-embed_store [--expect sha256:HEX] STORE FILE    (FILE "-" is stdin)
 *
 * Only the public API is used: #include <pkgstore.h> and link -lpkgstore
 * (`pkg-config --cflags --libs pkgstore`). docs/embedding.md walks through it.
 *
 * Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* open, read, fstat, close */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pkgstore.h>

#define PROG "example-embed_store"

/*
 * Print "prog: object: reason" for a library failure. The reason is the
 * detail message, which names the cause ("digest mismatch: expected
 * sha256:..., got sha256:..."), or, when a failure left none, the code's
 * fixed message from pkgstore_strerror(). The detail is thread-local and
 * valid only until the next library call on this thread: read it first.
 */
static void lib_error(const char *object, int code)
{
    const char *detail = pkgstore_error_detail();
    fprintf(stderr, "%s: %s: %s\n", PROG, object,
            detail[0] != '\0' ? detail : pkgstore_strerror(code));
}

static int usage(FILE *out, int status)
{
    fprintf(out, "usage: %s [--expect sha256:HEX] STORE FILE\n"
                 "Stream FILE (\"-\" for stdin) into the store at STORE, read it back,\n"
                 "verify it and print its digest and size.\n", PROG);
    return status;
}

/*
 * Stream everything from fd into a new blob. The writer hashes while it
 * writes; commit checks the digest (and size, when known), links the blob
 * into place atomically and records it in the index.
 */
static int ingest(pkgstore_digest *digest_out, uint64_t *size_out, pkgstore_store *store,
                  int fd, const pkgstore_digest *expected_digest, const char *object)
{
    pkgstore_store_writer *writer = NULL;
    char buf[64 * 1024];
    struct stat st;
    int64_t expected_size = -1; /* unknown: a pipe */
    int error;

    /* For a regular file the size is known up front: the writer then
     * refuses extra bytes early and checks the total at commit. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        expected_size = (int64_t)st.st_size;

    if ((error = pkgstore_store_writer_open(&writer, store, expected_digest, expected_size)) < 0) {
        lib_error(object, error);
        return error;
    }

    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: %s: read: %s\n", PROG, object, strerror(errno));
            /* Nothing is left behind: abort removes the temporary file. */
            pkgstore_store_writer_abort(writer);
            return PKGSTORE_EIO;
        }
        if ((error = pkgstore_store_writer_write(writer, buf, (size_t)n)) < 0) {
            lib_error(object, error);
            pkgstore_store_writer_abort(writer);
            return error;
        }
    }

    /* Commit always frees the writer, on success and on failure alike. */
    error = pkgstore_store_writer_commit(digest_out, size_out, writer);
    writer = NULL; /* now owned (and freed) by commit */
    if (error < 0)
        lib_error(object, error);
    return error;
}

/*
 * Open the blob read-only by digest and hash what is really on disk. The
 * store guarantees a blob hashes to its name; an embedder serving bytes
 * (say, through sendfile) gets the same fd.
 */
static int read_back(pkgstore_store *store, const pkgstore_digest *digest, uint64_t size)
{
    pkgstore_digest actual;
    uint64_t blob_size = 0, hashed = 0;
    int fd = -1;
    int error;

    if ((error = pkgstore_store_blob_open(&fd, &blob_size, store, digest)) < 0) {
        lib_error("blob", error);
        return error;
    }
    error = pkgstore_digest_fd(&actual, &hashed, fd);
    close(fd); /* the caller owns the fd */
    if (error < 0) {
        lib_error("blob", error);
        return error;
    }
    if (!pkgstore_digest_equal(&actual, digest) || hashed != size || blob_size != size) {
        fprintf(stderr, "%s: blob: read back %" PRIu64 " bytes that do not match\n", PROG,
                hashed);
        return PKGSTORE_ECORRUPT;
    }

    /* The library can do the same check itself (and also checks a .zst
     * transfer copy when there is one). */
    if ((error = pkgstore_store_blob_verify(store, digest)) < 0) {
        lib_error("blob", error);
        return error;
    }
    return 0;
}

int main(int argc, char **argv)
{
    pkgstore_store *store = NULL;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_digest expected, digest;
    const pkgstore_digest *expected_ptr = NULL;
    char digest_str[PKGSTORE_DIGEST_STR_SIZE];
    const char *store_dir, *file;
    uint64_t size = 0;
    int fd = -1, argi = 1, error, status = 1;

    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return usage(stdout, 0);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s (pkgstore) %s\n", PROG, pkgstore_library_version());
        return 0;
    }
    if (argi + 1 < argc && strcmp(argv[argi], "--expect") == 0) {
        /* Parse and validate the digest before touching the store. */
        if ((error = pkgstore_digest_parse(&expected, argv[argi + 1])) < 0) {
            lib_error("--expect", error);
            return 2;
        }
        expected_ptr = &expected;
        argi += 2;
    }
    if (argc - argi != 2)
        return usage(stderr, 2);
    store_dir = argv[argi];
    file = argv[argi + 1];

    /* The defaults: create the store if missing, fsync every blob. */
    if ((error = pkgstore_store_open(&store, store_dir, &opts)) < 0) {
        lib_error("store", error);
        return 1;
    }

    if (strcmp(file, "-") == 0) {
        fd = STDIN_FILENO;
    } else if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: %s: %s\n", PROG, file, strerror(errno));
        goto out;
    }

    if (ingest(&digest, &size, store, fd, expected_ptr, file) < 0)
        goto out;
    if (read_back(store, &digest, size) < 0)
        goto out;

    pkgstore_digest_format(digest_str, &digest);
    printf("%s %" PRIu64 "\n", digest_str, size);
    status = 0;

out:
    if (fd > STDIN_FILENO)
        close(fd);
    pkgstore_store_free(store); /* accepts NULL */
    return status;
}
