/*
 * store: the store directory itself. Opening and creating it (format marker,
 * stale tmp/ cleanup, the index) and the read-side blob operations: path,
 * open, read, stat, exists, delete, verify and the walk over blobs/. The
 * lock lives in store_lock.c, batches in store_batch.c, writing in
 * store_writer.c and store_add.c, fsck in store_fsck.c and the zstd
 * transfer copies in store_zstd.c.
 */
#include "store_impl.h"
#include "error.h"
#include "gc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define FORMAT_FILE "pkgstore.json"

/* ------------------------------------------------------------------ paths */

int ps_store_blob_relpath(char *buf, size_t size, const pkgstore_digest *digest,
                          const char *suffix)
{
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1];
    int n;
    pkgstore_digest_format_hex(hex, digest);
    n = snprintf(buf, size, "blobs/sha256/%.2s/%s%s", hex, hex, suffix ? suffix : "");
    if (n < 0 || (size_t)n >= size)
        return ps_error_set(PKGSTORE_EINVALID, "blob path does not fit in %zu bytes", size);
    return 0;
}

int ps_store_blob_path(char *buf, size_t size, const pkgstore_store *store,
                       const pkgstore_digest *digest, const char *suffix)
{
    char rel[128];
    int n, error;
    if ((error = ps_store_blob_relpath(rel, sizeof(rel), digest, suffix)) < 0)
        return error;
    n = snprintf(buf, size, "%s/%s", store->path, rel);
    if (n < 0 || (size_t)n >= size)
        return ps_error_set(PKGSTORE_EINVALID, "blob path does not fit in %zu bytes", size);
    return 0;
}

PKGSTORE_API const char *pkgstore_store_path(const pkgstore_store *store)
{
    return store ? store->path : NULL;
}

ps_index *ps_store_index(pkgstore_store *store)
{
    return store->index;
}

int ps_store_fsync_dir(pkgstore_store *store, const char *relpath)
{
    int fd = openat(store->root_fd, relpath[0] ? relpath : ".",
                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s: open directory", relpath[0] ? relpath : store->path);
    if (fsync(fd) < 0) {
        int error = ps_error_errno(errno, "%s: fsync", relpath[0] ? relpath : store->path);
        close(fd);
        return error == PKGSTORE_ENOSPC ? error : PKGSTORE_EIO;
    }
    close(fd);
    return 0;
}

int ps_store_fanout_open(int *fd_out, int *created, pkgstore_store *store,
                         const pkgstore_digest *digest, int create)
{
    char rel[32];
    int fd;
    *fd_out = -1;
    if (created)
        *created = 0;
    snprintf(rel, sizeof(rel), "blobs/sha256/%02x", digest->bytes[0]);
    for (int attempt = 0; attempt < 2; attempt++) {
        fd = openat(store->root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            *fd_out = fd;
            return 0;
        }
        if (errno != ENOENT || !create)
            return ps_error_errno(errno, "%s: open directory", rel);
        if (mkdirat(store->root_fd, rel, 0755) < 0 && errno != EEXIST)
            return ps_error_errno(errno, "%s: mkdir", rel);
        if (created)
            *created = 1;
    }
    return ps_error_set(PKGSTORE_EIO, "%s: directory vanished while opening it", rel);
}

/* ------------------------------------------------------------------ hashing */

#define HASH_MAP_CHUNK ((size_t)64 << 20)

int ps_store_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd)
{
    pkgstore_digest_ctx *ctx = NULL;
    struct stat st;
    uint64_t offset = 0;
    int error;

    if (fstat(fd, &st) < 0)
        return ps_error_errno(errno, "fstat");
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        goto read_fallback;
    if ((error = pkgstore_digest_ctx_new(&ctx)) < 0)
        return error;
    while (offset < (uint64_t)st.st_size) {
        size_t len = (uint64_t)st.st_size - offset > HASH_MAP_CHUNK
                         ? HASH_MAP_CHUNK
                         : (size_t)((uint64_t)st.st_size - offset);
        void *map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)offset);
        if (map == MAP_FAILED) {
            pkgstore_digest_ctx_free(ctx);
            if (offset == 0)
                goto read_fallback;
            return ps_error_errno(errno, "mmap");
        }
        (void)madvise(map, len, MADV_SEQUENTIAL);
        error = pkgstore_digest_ctx_update(ctx, map, len);
        munmap(map, len);
        if (error < 0) {
            pkgstore_digest_ctx_free(ctx);
            return error;
        }
        offset += len;
    }
    error = pkgstore_digest_ctx_final(out, ctx);
    pkgstore_digest_ctx_free(ctx);
    if (error == 0 && size_out)
        *size_out = offset;
    return error;

read_fallback:
    if (lseek(fd, 0, SEEK_SET) < 0 && errno != ESPIPE)
        return ps_error_errno(errno, "lseek");
    return pkgstore_digest_fd(out, size_out, fd);
}

/* ------------------------------------------------------------------ open */

static int dir_is_empty(int dir_fd)
{
    int fd = dup(dir_fd);
    DIR *dir;
    struct dirent *entry;
    int empty = 1;
    if (fd < 0)
        return 0;
    dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return 0;
    }
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    }
    closedir(dir);
    return empty;
}

static int read_format(pkgstore_store *store)
{
    json_error_t jerr;
    json_t *root, *format;
    int fd, error = 0;
    FILE *file;

    fd = openat(store->root_fd, FORMAT_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s/%s: open", store->path, FORMAT_FILE);
    file = fdopen(fd, "r");
    if (file == NULL) {
        close(fd);
        return ps_error_errno(errno, "%s/%s: fdopen", store->path, FORMAT_FILE);
    }
    root = json_loadf(file, JSON_REJECT_DUPLICATES, &jerr);
    fclose(file);
    if (root == NULL)
        return ps_error_set(PKGSTORE_EFORMAT, "%s/%s: not valid JSON: %s (line %d)", store->path,
                            FORMAT_FILE, jerr.text, jerr.line);
    format = json_is_object(root) ? json_object_get(root, "format") : NULL;
    if (!json_is_integer(format))
        error = ps_error_set(PKGSTORE_EFORMAT, "%s/%s: no integer \"format\" field", store->path,
                             FORMAT_FILE);
    else if (json_integer_value(format) != PS_STORE_FORMAT)
        error = ps_error_set(PKGSTORE_EFORMAT,
                             "%s/%s: unknown store format %lld (this pkgstore reads format %d)",
                             store->path, FORMAT_FILE, (long long)json_integer_value(format),
                             PS_STORE_FORMAT);
    json_decref(root);
    return error;
}

/* Write pkgstore.json atomically; a concurrent creator may win the race. */
static int write_format(pkgstore_store *store)
{
    static const char text[] = "{\"format\": 1}\n";
    char tmp_name[64];
    int fd = -1, error;
    size_t done = 0;

    if ((error = ps_store_tmp_create(&fd, tmp_name, sizeof(tmp_name), store, NULL, 0600)) < 0)
        return error;
    while (done < sizeof(text) - 1) {
        ssize_t n = write(fd, text + done, sizeof(text) - 1 - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = ps_error_errno(errno, "%s/%s: write", store->path, FORMAT_FILE);
            goto out;
        }
        done += (size_t)n;
    }
    if (store->opts.durability != PKGSTORE_DURABILITY_NONE && fsync(fd) < 0) {
        error = ps_error_errno(errno, "%s/%s: fsync", store->path, FORMAT_FILE);
        goto out;
    }
    (void)fchmod(fd, 0444);
    error = ps_store_tmp_link(store, fd, tmp_name, store->root_fd, FORMAT_FILE, FORMAT_FILE);
    if (error == PKGSTORE_EEXISTS)
        error = 0; /* another process created the store at the same time */
out:
    ps_store_tmp_discard(store, fd, tmp_name);
    return error;
}

/* Remove temporary files of dead writers. A live writer holds an flock on its
 * named temporary file; O_TMPFILE files never outlive their process. */
static void clean_tmp(pkgstore_store *store)
{
    int fd = dup(store->tmp_fd);
    DIR *dir;
    struct dirent *entry;
    if (fd < 0)
        return;
    dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return;
    }
    while ((entry = readdir(dir)) != NULL) {
        struct stat st;
        int file_fd;
        if (strncmp(entry->d_name, PS_STORE_TMP_PREFIX, PS_STORE_TMP_PREFIX_LEN) != 0)
            continue; /* not ours: fsck reports it as stray */
        file_fd = openat(store->tmp_fd, entry->d_name,
                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (file_fd < 0)
            continue;
        if (fstat(file_fd, &st) == 0 && S_ISREG(st.st_mode) &&
            flock(file_fd, LOCK_EX | LOCK_NB) == 0)
            (void)unlinkat(store->tmp_fd, entry->d_name, 0);
        close(file_fd);
    }
    closedir(dir);
}

static enum ps_tmp_mode probe_tmp_mode(pkgstore_store *store)
{
    int fd;
    if (access("/proc/self/fd", X_OK) != 0)
        return PS_TMP_NAMED;
    fd = openat(store->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return PS_TMP_NAMED;
    close(fd);
    return PS_TMP_TMPFILE;
}

#ifdef PKGSTORE_TEST_HOOKS
void ps_store_set_tmp_mode(pkgstore_store *store, enum ps_tmp_mode mode)
{
    store->tmp_mode = mode == PS_TMP_AUTO ? probe_tmp_mode(store) : mode;
    /* a forced O_TMPFILE is linked through /proc/self/fd, the way every
     * process without CAP_DAC_READ_SEARCH links it on older kernels */
    store->link_empty_path = mode == PS_TMP_TMPFILE ? -1 : 0;
}

void ps_store_test_fail_sync(pkgstore_store *store, int code)
{
    pthread_mutex_lock(&store->batch_mutex);
    store->fail_sync = code;
    pthread_mutex_unlock(&store->batch_mutex);
}
#endif

/* Mark blobs/sha256 as the top of a directory hierarchy (chattr +T): ext4
 * then spreads the fan-out directories, and the inodes of the blobs in
 * them, over its block groups instead of packing them next to their
 * parent. Without it every ingest allocates in the same group, and on a
 * filesystem without a journal each allocation scans past the inodes of
 * recently deleted files (gc's, a removed store's) one by one. Best effort:
 * other filesystems have no such flag. */
static void spread_fanouts(pkgstore_store *store)
{
    int fd = openat(store->root_fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC), flags;
    if (fd < 0)
        return;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
        flags |= FS_TOPDIR_FL;
        (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
}

static int mkdir_at(int dir_fd, const char *name, const char *root)
{
    if (mkdirat(dir_fd, name, 0755) < 0 && errno != EEXIST)
        return ps_error_errno(errno, "%s/%s: mkdir", root, name);
    return 0;
}

static int open_dirs(pkgstore_store *store)
{
    int error;
    if (!store->opts.read_only) {
        /* blobs/ first: a concurrent creator that finds the directory
         * non-empty accepts it as a store being created when blobs/ is there */
        if ((error = mkdir_at(store->root_fd, "blobs", store->path)) < 0 ||
            (error = mkdir_at(store->root_fd, "blobs/sha256", store->path)) < 0 ||
            (error = mkdir_at(store->root_fd, "tmp", store->path)) < 0 ||
            (error = mkdir_at(store->root_fd, "index", store->path)) < 0)
            return error;
        spread_fanouts(store);
        store->tmp_fd = openat(store->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (store->tmp_fd < 0)
            return ps_error_errno(errno, "%s/tmp: open", store->path);
        store->tmp_mode = probe_tmp_mode(store);
    }
    return ps_store_lock_open(store);
}

PKGSTORE_API int pkgstore_store_open(pkgstore_store **out, const char *path,
                                     const pkgstore_store_options *opts)
{
    pkgstore_store_options defaults = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    char index_dir[PATH_MAX];
    int error = 0, have_format, creating = 0, create;

    if (out == NULL || path == NULL || path[0] == '\0')
        return ps_error_set(PKGSTORE_EINVALID, "store open: NULL output or empty path");
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if ((error = ps_options_version("store", opts->version, PKGSTORE_STORE_OPTIONS_VERSION)) < 0)
        return error;
    /* version 1 named the field `create`, with the opposite meaning */
    create = opts->version == 1 ? opts->no_create : !opts->no_create;
    if (opts->durability < PKGSTORE_DURABILITY_FSYNC || opts->durability > PKGSTORE_DURABILITY_NONE)
        return ps_error_set(PKGSTORE_EINVALID, "store open: unknown durability mode %d",
                            (int)opts->durability);
    if (strlen(path) > PATH_MAX - 200)
        return ps_error_set(PKGSTORE_EINVALID, "store open: path too long");

    store = calloc(1, sizeof(*store));
    if (store == NULL || (store->path = strdup(path)) == NULL) {
        free(store);
        return ps_error_set(PKGSTORE_ENOMEM, "store open: out of memory");
    }
    /* drop trailing slashes so that joined paths read well */
    for (size_t len = strlen(store->path); len > 1 && store->path[len - 1] == '/'; len--)
        store->path[len - 1] = '\0';
    store->opts = *opts;
    store->root_fd = store->tmp_fd = store->lock_fd = store->intent_fd = -1;
    pthread_mutex_init(&store->lock_mutex, NULL);
    pthread_cond_init(&store->lock_cond, NULL);
    pthread_mutex_init(&store->batch_mutex, NULL);

    store->root_fd = open(store->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store->root_fd < 0 && errno == ENOENT && create && !opts->read_only) {
        if (mkdir(store->path, 0755) < 0 && errno != EEXIST) {
            error = ps_error_errno(errno, "%s: mkdir", store->path);
            goto fail;
        }
        store->root_fd = open(store->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (store->root_fd < 0) {
        int open_errno = errno;
        error = ps_error_errno(open_errno, "%s: open store directory", store->path);
        if (open_errno == ENOENT) /* not for ENOTDIR: a file is in the way */
            ps_error_set(error, "%s: no store here", store->path);
        goto fail;
    }

    have_format = faccessat(store->root_fd, FORMAT_FILE, F_OK, 0) == 0;
    if (!have_format) {
        if (!create || opts->read_only) {
            error = ps_error_set(PKGSTORE_ENOTFOUND, "%s: not a pkgstore store (no %s)",
                                 store->path, FORMAT_FILE);
            goto fail;
        }
        if (!dir_is_empty(store->root_fd) &&
            faccessat(store->root_fd, "blobs", F_OK, 0) != 0) {
            error = ps_error_set(PKGSTORE_EFORMAT,
                                 "%s: directory is not empty and has no %s; refusing to make "
                                 "it a store",
                                 store->path, FORMAT_FILE);
            goto fail;
        }
        creating = 1;
    } else if ((error = read_format(store)) < 0) {
        goto fail;
    }

    if ((error = open_dirs(store)) < 0)
        goto fail;
    if (creating) {
        if ((error = write_format(store)) < 0)
            goto fail;
        if ((error = read_format(store)) < 0) /* a racing creator wrote another format */
            goto fail;
        if (opts->durability != PKGSTORE_DURABILITY_NONE &&
            (error = ps_store_fsync_dir(store, "")) < 0)
            goto fail;
    }
    if (!opts->read_only)
        clean_tmp(store);

    snprintf(index_dir, sizeof(index_dir), "%s/index", store->path);
    if ((error = ps_index_open(&store->index, index_dir, opts->read_only,
                               opts->durability != PKGSTORE_DURABILITY_FSYNC,
                               opts->index_map_size)) < 0) {
        ps_error_prefix("%s", store->path);
        goto fail;
    }
    *out = store;
    return 0;

fail:
    pkgstore_store_free(store);
    return error;
}

PKGSTORE_API int pkgstore_store_options_init(pkgstore_store_options *opts, unsigned int version)
{
    int error = ps_options_init(opts, sizeof(*opts), "store", version,
                                PKGSTORE_STORE_OPTIONS_VERSION);
    if (error == 0)
        opts->no_create = version == 1; /* version 1's `create`, default 1 */
    return error;
}

PKGSTORE_API void pkgstore_store_free(pkgstore_store *store)
{
    if (store == NULL)
        return;
    /* a batch still pending is synced; a failure leaves its blobs
     * unrecorded (fsck reports them as orphans) and its detail readable
     * with pkgstore_error_detail(): callers that must know sync first */
    if (store->index != NULL && !store->opts.read_only)
        (void)pkgstore_store_sync(store);
    ps_index_free(store->index);
    ps_store_lock_close(store);
    if (store->tmp_fd >= 0)
        close(store->tmp_fd);
    if (store->root_fd >= 0)
        close(store->root_fd);
    pthread_mutex_destroy(&store->lock_mutex);
    pthread_cond_destroy(&store->lock_cond);
    pthread_mutex_destroy(&store->batch_mutex);
    free(store->pending);
    free(store->path);
    free(store);
}

/* ------------------------------------------------------------------ read side */

static int check_args(pkgstore_store *store, const pkgstore_digest *digest, const char *what)
{
    if (store == NULL || digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "%s: NULL store or digest", what);
    return 0;
}

static int open_blob_file(int *fd_out, uint64_t *size_out, pkgstore_store *store,
                          const pkgstore_digest *digest, const char *suffix)
{
    char rel[128];
    struct stat st;
    int fd, error;

    *fd_out = -1;
    if ((error = ps_store_blob_relpath(rel, sizeof(rel), digest, suffix)) < 0)
        return error;
    fd = openat(store->root_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        error = ps_error_errno(errno, "%s: open", rel);
        if (error == PKGSTORE_ENOTFOUND) {
            char text[PKGSTORE_DIGEST_STR_SIZE];
            pkgstore_digest_format(text, digest);
            ps_error_set(error, "%s%s: no such blob in the store", text,
                         suffix && suffix[0] ? " (zstd copy)" : "");
        } else if (error != PKGSTORE_EDENIED && error != PKGSTORE_ENOMEM) {
            error = PKGSTORE_EIO;
        }
        return error;
    }
    if (fstat(fd, &st) < 0) {
        error = ps_error_errno(errno, "%s: fstat", rel);
        close(fd);
        return error == PKGSTORE_ENOMEM ? error : PKGSTORE_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        error = ps_error_set(PKGSTORE_EIO, "%s: not a regular file", rel);
        close(fd);
        return error < 0 && error != PKGSTORE_ENOMEM ? PKGSTORE_EIO : error;
    }
    if (size_out)
        *size_out = (uint64_t)st.st_size;
    *fd_out = fd;
    return 0;
}

PKGSTORE_API int pkgstore_store_blob_open(int *fd_out, uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest)
{
    int error;
    if (fd_out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "blob open: NULL output");
    *fd_out = -1;
    if (size_out)
        *size_out = 0;
    if ((error = check_args(store, digest, "blob open")) < 0)
        return error;
    return open_blob_file(fd_out, size_out, store, digest, "");
}

PKGSTORE_API int pkgstore_store_zstd_open(int *fd_out, uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest)
{
    char rel[128], text[PKGSTORE_DIGEST_STR_SIZE];
    int error;
    if (fd_out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "zstd open: NULL output");
    *fd_out = -1;
    if (size_out)
        *size_out = 0;
    if ((error = check_args(store, digest, "zstd open")) < 0)
        return error;
    if ((error = open_blob_file(fd_out, size_out, store, digest, ".zst")) < 0)
        return error;
    /* a copy whose blob is gone (a failed ingest, a crash) is not served */
    if ((error = ps_store_blob_relpath(rel, sizeof(rel), digest, "")) == 0 &&
        faccessat(store->root_fd, rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        pkgstore_digest_format(text, digest);
        error = ps_error_set(PKGSTORE_ENOTFOUND, "%s (zstd copy): its blob is not in the store",
                             text);
    }
    if (error < 0) {
        close(*fd_out);
        *fd_out = -1;
        if (size_out)
            *size_out = 0;
    }
    return error;
}

PKGSTORE_API int pkgstore_store_blob_read(void **data_out, size_t *len_out, pkgstore_store *store,
                                          const pkgstore_digest *digest, size_t max_len)
{
    uint64_t size = 0;
    unsigned char *data = NULL;
    size_t done = 0;
    int fd = -1, error;

    if (data_out == NULL || len_out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "blob read: NULL output");
    *data_out = NULL;
    *len_out = 0;
    if ((error = check_args(store, digest, "blob read")) < 0)
        return error;
    if ((error = open_blob_file(&fd, &size, store, digest, "")) < 0)
        return error;
    if (size > max_len || size >= SIZE_MAX) {
        char text[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(text, digest);
        error = ps_error_set(PKGSTORE_ELIMIT, "%s: %llu bytes, more than the limit of %zu",
                             text, (unsigned long long)size, max_len);
        goto out;
    }
    data = malloc((size_t)size + 1);
    if (data == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "blob read: %llu bytes", (unsigned long long)size);
        goto out;
    }
    while (done < size) {
        ssize_t n = pread(fd, data + done, (size_t)size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            error = n < 0 ? ps_error_errno(errno, "blob read")
                          : ps_error_set(PKGSTORE_EIO, "blob read: file shrank");
            if (error != PKGSTORE_ENOMEM)
                error = PKGSTORE_EIO;
            goto out;
        }
        done += (size_t)n;
    }
    data[size] = '\0';
    *data_out = data;
    *len_out = (size_t)size;
    data = NULL; /* now owned by the caller */
out:
    free(data);
    close(fd);
    return error;
}

PKGSTORE_API int pkgstore_store_blob_stat(uint64_t *size_out, pkgstore_store *store,
                                          const pkgstore_digest *digest)
{
    char rel[128];
    struct stat st;
    int error;
    if (size_out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "blob stat: NULL output");
    *size_out = 0;
    if ((error = check_args(store, digest, "blob stat")) < 0)
        return error;
    if ((error = ps_store_blob_relpath(rel, sizeof(rel), digest, "")) < 0)
        return error;
    if (fstatat(store->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        error = ps_error_errno(errno, "%s: stat", rel);
        return error == PKGSTORE_ENOTFOUND || error == PKGSTORE_ENOMEM ? error : PKGSTORE_EIO;
    }
    if (!S_ISREG(st.st_mode))
        return ps_error_set(PKGSTORE_EIO, "%s: not a regular file", rel);
    *size_out = (uint64_t)st.st_size;
    return 0;
}

PKGSTORE_API int pkgstore_store_blob_exists(pkgstore_store *store, const pkgstore_digest *digest)
{
    uint64_t size;
    int error = pkgstore_store_blob_stat(&size, store, digest);
    if (error == 0)
        return 1;
    if (error == PKGSTORE_ENOTFOUND) {
        pkgstore_error_clear();
        return 0;
    }
    return error;
}

PKGSTORE_API int pkgstore_store_blob_delete(pkgstore_store *store, const pkgstore_digest *digest)
{
    char rel[128], zst[128], text[PKGSTORE_DIGEST_STR_SIZE], why[512];
    int error, referenced;

    if ((error = check_args(store, digest, "blob delete")) < 0)
        return error;
    if (store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if ((error = ps_store_blob_relpath(rel, sizeof(rel), digest, "")) < 0 ||
        (error = ps_store_blob_relpath(zst, sizeof(zst), digest, ".zst")) < 0)
        return error;
    /* exclusive: no writer is between finding this blob present and
     * recording what refers to it (invariant 2 for everyone else) */
    if ((error = ps_store_lock(store, 1, 0)) < 0)
        return error;
    pkgstore_digest_format(text, digest);
    if (faccessat(store->root_fd, rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        error = ps_error_errno(errno, "%s: stat", rel);
        if (error == PKGSTORE_ENOTFOUND)
            ps_error_set(error, "%s: no such blob in the store", text);
        goto out;
    }
    if (ps_store_blob_in_flight(store->root_fd, rel)) {
        error = ps_error_set(PKGSTORE_ELOCKED, "%s: being added (a writer holds it)", text);
        goto out;
    }
    if ((referenced = ps_gc_blob_referenced(why, sizeof(why), store, digest)) != 0) {
        if (referenced > 0)
            error = ps_error_set(PKGSTORE_ECONFLICT, "%s: still referenced by %s; remove that "
                                 "first (gc deletes it once nothing refers to it)",
                                 text, why);
        else
            error = referenced;
        goto out;
    }
    /* the record goes first: an index record never points at nothing */
    error = ps_index_blob_del(store->index, digest);
    if (error == PKGSTORE_ENOTFOUND)
        error = 0;
    if (error < 0)
        goto out;
    error = ps_store_unlink_blob(store, digest);
out:
    ps_store_unlock(store);
    return error;
}

int ps_store_unlink_blob(pkgstore_store *store, const pkgstore_digest *digest)
{
    char rel[128], zst[128], fanout_rel[32];
    ps_store_blob_relpath(rel, sizeof(rel), digest, "");
    ps_store_blob_relpath(zst, sizeof(zst), digest, ".zst");
    /* the copy first: a copy never outlives its blob for long */
    if (unlinkat(store->root_fd, zst, 0) < 0 && errno != ENOENT)
        return ps_error_errno(errno, "%s: unlink", zst);
    if (unlinkat(store->root_fd, rel, 0) < 0 && errno != ENOENT)
        return ps_error_errno(errno, "%s: unlink", rel);
    if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC) {
        snprintf(fanout_rel, sizeof(fanout_rel), "blobs/sha256/%02x", digest->bytes[0]);
        return ps_store_fsync_dir(store, fanout_rel);
    }
    if (store->opts.durability == PKGSTORE_DURABILITY_BATCH)
        ps_store_mark_dirty(store);
    return 0;
}

PKGSTORE_API int pkgstore_store_blob_verify(pkgstore_store *store, const pkgstore_digest *digest)
{
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE], rel[128];
    pkgstore_digest actual;
    uint64_t size = 0;
    int fd = -1, error;

    if ((error = check_args(store, digest, "blob verify")) < 0)
        return error;
    if ((error = open_blob_file(&fd, NULL, store, digest, "")) < 0)
        return error;
    ps_store_blob_relpath(rel, sizeof(rel), digest, "");
    pkgstore_digest_format(want, digest);
    error = ps_store_hash_fd(&actual, &size, fd);
    close(fd);
    fd = -1;
    if (error < 0) {
        ps_error_prefix("%s", rel);
        return error == PKGSTORE_ENOMEM ? error : PKGSTORE_EIO;
    }
    if (!pkgstore_digest_equal(&actual, digest)) {
        pkgstore_digest_format(got, &actual);
        return ps_error_set(PKGSTORE_ECORRUPT, "%s: content hashes to %s, expected %s", rel, got,
                            want);
    }
    /* the transfer copy, when there is one, must decompress to the blob */
    error = open_blob_file(&fd, NULL, store, digest, ".zst");
    if (error == PKGSTORE_ENOTFOUND) {
        pkgstore_error_clear();
        return 0;
    }
    if (error < 0)
        return error;
    error = ps_store_zstd_hash_fd(&actual, &size, fd);
    close(fd);
    ps_store_blob_relpath(rel, sizeof(rel), digest, ".zst");
    if (error < 0) {
        ps_error_prefix("%s", rel);
        return error;
    }
    if (!pkgstore_digest_equal(&actual, digest)) {
        pkgstore_digest_format(got, &actual);
        return ps_error_set(PKGSTORE_ECORRUPT, "%s: decompresses to %s, expected %s", rel, got,
                            want);
    }
    return 0;
}

/* ------------------------------------------------------------------ walk */

static int is_hex_name(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return name[len] == '\0';
}

PKGSTORE_API int pkgstore_store_foreach(pkgstore_store *store, pkgstore_store_foreach_cb cb,
                                        void *payload)
{
    int sha_fd, error = 0;
    DIR *top;
    struct dirent *fan;

    if (store == NULL || cb == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "store foreach: NULL store or callback");
    sha_fd = openat(store->root_fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sha_fd < 0) {
        if (errno == ENOENT)
            return 0;
        return ps_error_errno(errno, "%s/blobs/sha256: open", store->path);
    }
    top = fdopendir(sha_fd);
    if (top == NULL) {
        error = ps_error_errno(errno, "%s/blobs/sha256: opendir", store->path);
        close(sha_fd);
        return error;
    }
    while (error == 0 && (fan = readdir(top)) != NULL) {
        int fan_fd;
        DIR *sub;
        struct dirent *entry;
        if (!is_hex_name(fan->d_name, 2))
            continue;
        fan_fd = openat(sha_fd, fan->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fan_fd < 0)
            continue;
        sub = fdopendir(fan_fd);
        if (sub == NULL) {
            close(fan_fd);
            continue;
        }
        while (error == 0 && (entry = readdir(sub)) != NULL) {
            pkgstore_digest digest;
            struct stat st;
            if (!is_hex_name(entry->d_name, PKGSTORE_DIGEST_HEX_LEN) ||
                strncmp(entry->d_name, fan->d_name, 2) != 0)
                continue;
            if (pkgstore_digest_parse_hex(&digest, entry->d_name) < 0)
                continue;
            if (fstatat(fan_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                !S_ISREG(st.st_mode))
                continue;
            error = cb(&digest, (uint64_t)st.st_size, payload);
        }
        closedir(sub);
    }
    closedir(top);
    return error;
}
