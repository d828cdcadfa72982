/*
 * store_writer: getting bytes into the store. Temporary files in tmp/, the
 * streaming writer with its durable commit (invariants 1 to 4), and the
 * one-pass add_fd/add_file/add_buffer.
 *
 * add_fd on a regular file overlaps the two costs of an ingest: a copier
 * thread moves the bytes into the temporary file with copy_file_range()
 * while this thread hashes what has landed there through mmap(). Hashing
 * the temporary file (not the input) means the digest is always the digest
 * of the bytes that get linked, even if the input changes underneath.
 */
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct pkgstore_store_writer {
    pkgstore_store *store;
    int fd;
    char tmp_name[64];
    pkgstore_digest_ctx *ctx;
    int has_expected_digest;
    pkgstore_digest expected_digest;
    int64_t expected_size;
    uint64_t size;
    int failed;
    int locked;
    int unrecorded; /* the caller records the blob (ps_store_add_buffer_unrecorded) */
};

/* ------------------------------------------------------------------ tmp files */

int ps_store_tmp_create(int *fd_out, char *name_out, size_t name_size, pkgstore_store *store)
{
    *fd_out = -1;
    if (name_out && name_size)
        name_out[0] = '\0';
    if (store->opts.read_only || store->tmp_fd < 0)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if (store->tmp_mode == PS_TMP_TMPFILE) {
        int fd = openat(store->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            return ps_error_errno(errno, "%s/tmp: open O_TMPFILE", store->path);
        *fd_out = fd;
        return 0;
    }
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t nonce = 0;
        struct stat st;
        int fd;
        if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != (ssize_t)sizeof(nonce))
            nonce = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)attempt;
        snprintf(name_out, name_size, PS_STORE_TMP_PREFIX "%ld-%016llx", (long)getpid(),
                 (unsigned long long)nonce);
        fd = openat(store->tmp_fd, name_out, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            name_out[0] = '\0';
            return ps_error_errno(errno, "%s/tmp: create temporary file", store->path);
        }
        /* the lock tells clean_tmp() this file is alive; a cleaner that
         * got in first has unlinked it, which fstat shows */
        while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
            ;
        if (fstat(fd, &st) == 0 && st.st_nlink > 0) {
            *fd_out = fd;
            return 0;
        }
        close(fd);
    }
    name_out[0] = '\0';
    return ps_error_set(PKGSTORE_EIO, "%s/tmp: could not create a temporary file", store->path);
}

int ps_store_tmp_link(pkgstore_store *store, int tmp_fd, const char *tmp_name, int dir_fd,
                      const char *name, const char *what)
{
    int rc;
    if (tmp_name == NULL || tmp_name[0] == '\0') {
        char proc_path[64];
        snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", tmp_fd);
        rc = linkat(AT_FDCWD, proc_path, dir_fd, name, AT_SYMLINK_FOLLOW);
    } else {
        rc = linkat(store->tmp_fd, tmp_name, dir_fd, name, 0);
    }
    if (rc == 0)
        return 0;
    if (errno == EEXIST) {
        ps_error_set(PKGSTORE_EEXISTS, "%s: already exists", what);
        return PKGSTORE_EEXISTS;
    }
    rc = ps_error_errno(errno, "%s: link", what);
    return rc == PKGSTORE_ENOSPC || rc == PKGSTORE_EDENIED ? rc : PKGSTORE_EIO;
}

void ps_store_tmp_discard(pkgstore_store *store, int tmp_fd, const char *tmp_name)
{
    if (tmp_name != NULL && tmp_name[0] != '\0')
        (void)unlinkat(store->tmp_fd, tmp_name, 0);
    if (tmp_fd >= 0)
        close(tmp_fd);
}

/* ------------------------------------------------------------------ writer */

static int io_error(int err, const pkgstore_store_writer *writer, const char *op)
{
    int code = ps_error_errno(err, "%s/tmp: %s", writer->store->path, op);
    return code == PKGSTORE_ENOSPC || code == PKGSTORE_ENOMEM ? code : PKGSTORE_EIO;
}

PKGSTORE_API int pkgstore_store_writer_open(pkgstore_store_writer **out, pkgstore_store *store,
                                            const pkgstore_digest *expected_digest,
                                            int64_t expected_size)
{
    pkgstore_store_writer *writer;
    int error;

    if (out == NULL || store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "writer open: NULL output or store");
    *out = NULL;
    if (store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    writer = calloc(1, sizeof(*writer));
    if (writer == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "writer open: out of memory");
    writer->store = store;
    writer->fd = -1;
    writer->expected_size = expected_size < 0 ? -1 : expected_size;
    if (expected_digest) {
        writer->has_expected_digest = 1;
        writer->expected_digest = *expected_digest;
    }
    if ((error = pkgstore_digest_ctx_new(&writer->ctx)) < 0)
        goto fail;
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        goto fail;
    writer->locked = 1;
    if ((error = ps_store_tmp_create(&writer->fd, writer->tmp_name, sizeof(writer->tmp_name),
                                     store)) < 0)
        goto fail;
    /* reserve the space now so a full disk fails before any copying */
    if (expected_size > 0 && fallocate(writer->fd, 0, 0, (off_t)expected_size) < 0 &&
        (errno == ENOSPC || errno == EDQUOT)) {
        error = io_error(errno, writer, "reserving space");
        goto fail;
    }
    *out = writer;
    return 0;
fail:
    pkgstore_store_writer_abort(writer);
    return error;
}

static int write_all(pkgstore_store_writer *writer, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(writer->fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return io_error(errno, writer, "write");
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

PKGSTORE_API int pkgstore_store_writer_write(pkgstore_store_writer *writer, const void *data,
                                             size_t len)
{
    int error;
    if (writer == NULL || (data == NULL && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "writer write: NULL writer or data");
    if (writer->failed)
        return ps_error_set(PKGSTORE_EINVALID, "writer write: the writer failed earlier; abort it");
    if (writer->expected_size >= 0 && writer->size + len > (uint64_t)writer->expected_size) {
        writer->failed = 1;
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH,
                            "size mismatch: expected %lld bytes, got at least %llu",
                            (long long)writer->expected_size,
                            (unsigned long long)(writer->size + len));
    }
    if ((error = pkgstore_digest_ctx_update(writer->ctx, data, len)) < 0 ||
        (error = write_all(writer, data, len)) < 0) {
        writer->failed = 1;
        return error;
    }
    writer->size += len;
    return 0;
}

PKGSTORE_API void pkgstore_store_writer_abort(pkgstore_store_writer *writer)
{
    if (writer == NULL)
        return;
    ps_store_tmp_discard(writer->store, writer->fd, writer->tmp_name);
    pkgstore_digest_ctx_free(writer->ctx);
    if (writer->locked)
        ps_store_unlock(writer->store);
    free(writer);
}

/* The blob already existed: make sure it is durable before the index refers
 * to it (another process may have linked it in batch or no-fsync mode). */
static int sync_existing(pkgstore_store *store, int fanout_fd, const char *hex, const char *rel)
{
    int fd = openat(fanout_fd, hex, O_RDONLY | O_CLOEXEC);
    int error = 0;
    if (fd < 0)
        return ps_error_errno(errno, "%s: open", rel);
    if (fdatasync(fd) < 0 || fsync(fanout_fd) < 0)
        error = ps_error_errno(errno, "%s: fsync", rel);
    close(fd);
    (void)store;
    return error;
}

PKGSTORE_API int pkgstore_store_writer_commit(pkgstore_digest *digest_out, uint64_t *size_out,
                                              pkgstore_store_writer *writer)
{
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], rel[128];
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_store *store;
    pkgstore_digest digest;
    int error, existed = 0, created_dir = 0, fanout_fd = -1;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (size_out)
        *size_out = 0;
    if (writer == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "writer commit: NULL writer");
    store = writer->store;
    if (writer->failed) {
        error = ps_error_set(PKGSTORE_EINVALID, "writer commit: the writer failed earlier");
        goto out;
    }
    if (writer->expected_size >= 0 && writer->size != (uint64_t)writer->expected_size) {
        error = ps_error_set(PKGSTORE_ESIZE_MISMATCH, "size mismatch: expected %lld bytes, got %llu",
                             (long long)writer->expected_size, (unsigned long long)writer->size);
        goto out;
    }
    if ((error = pkgstore_digest_ctx_final(&digest, writer->ctx)) < 0)
        goto out;
    if (writer->has_expected_digest && !pkgstore_digest_equal(&digest, &writer->expected_digest)) {
        pkgstore_digest_format(want, &writer->expected_digest);
        pkgstore_digest_format(got, &digest);
        error = ps_error_set(PKGSTORE_EDIGEST_MISMATCH, "digest mismatch: expected %s, got %s",
                             want, got);
        goto out;
    }
    pkgstore_digest_format_hex(hex, &digest);
    ps_store_blob_relpath(rel, sizeof(rel), &digest, "");

    if ((error = ps_store_fanout_open(&fanout_fd, &created_dir, store, &digest, 1)) < 0)
        goto out;
    /* a re-upload of a blob already there: the temporary file is dropped,
     * so syncing it (the whole upload) would be wasted; without syncs,
     * link()'s EEXIST finds out at no extra cost */
    existed = store->opts.durability == PKGSTORE_DURABILITY_FSYNC && !created_dir &&
              faccessat(fanout_fd, hex, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (!existed) {
        if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC && fdatasync(writer->fd) < 0) {
            error = ps_error_errno(errno, "%s: fsync", rel);
            if (error != PKGSTORE_ENOSPC)
                error = PKGSTORE_EIO;
            goto out;
        }
        if (fchmod(writer->fd, 0444) < 0) {
            error = ps_error_errno(errno, "%s: chmod", rel);
            goto out;
        }
        if (created_dir && store->opts.durability == PKGSTORE_DURABILITY_FSYNC &&
            (error = ps_store_fsync_dir(store, "blobs/sha256")) < 0)
            goto out;
        error = ps_store_tmp_link(store, writer->fd, writer->tmp_name, fanout_fd, hex, rel);
        if (error == PKGSTORE_EEXISTS) { /* another writer linked it meanwhile */
            pkgstore_error_clear();
            existed = 1;
            error = 0;
        }
        if (error < 0)
            goto out;
    }
    if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC) {
        if (existed)
            error = sync_existing(store, fanout_fd, hex, rel);
        else if (fsync(fanout_fd) < 0)
            error = ps_error_errno(errno, "%s: fsync directory", rel);
        if (error < 0) {
            if (error != PKGSTORE_ENOSPC)
                error = PKGSTORE_EIO;
            goto out;
        }
    }
    if (store->opts.zstd_copies) {
        error = ps_store_zstd_write_fd(store, &digest, writer->fd);
        if (error < 0)
            goto out;
    }
    if (writer->unrecorded)
        ps_store_mark_dirty(store); /* BATCH: the next sync must sync it */
    else if ((error = ps_store_record_blob(store, &digest, writer->size)) < 0)
        goto out;
    if (digest_out)
        *digest_out = digest;
    if (size_out)
        *size_out = writer->size;
out:
    if (fanout_fd >= 0)
        close(fanout_fd);
    pkgstore_store_writer_abort(writer); /* frees; the tmp name is gone either way */
    return error;
}

/* ------------------------------------------------------------------ add */

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define COPY_CHUNK ((size_t)8 << 20)
#define READ_CHUNK ((size_t)1 << 20)

struct copy_job {
    int src_fd, dst_fd;
    off_t src_off;
    uint64_t limit;  /* copy at most this many bytes */
    int writeback;   /* start writeback as chunks land (FSYNC mode) */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint64_t done;   /* bytes in the destination so far */
    int finished;
    int err;         /* errno of a failure, 0 if none */
    int stop;        /* the hasher gave up */
};

static int copy_chunk_rw(struct copy_job *job, unsigned char **buf, uint64_t done, uint64_t want,
                         size_t *got)
{
    ssize_t n;
    *got = 0;
    if (*buf == NULL && (*buf = malloc(READ_CHUNK)) == NULL)
        return ENOMEM;
    if (want > READ_CHUNK)
        want = READ_CHUNK;
    do
        n = pread(job->src_fd, *buf, (size_t)want, job->src_off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = pwrite(job->dst_fd, *buf + off, (size_t)(n - off), (off_t)(done + (uint64_t)off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        off += w;
    }
    job->src_off += n;
    *got = (size_t)n;
    return 0;
}

static void *copier_main(void *arg)
{
    struct copy_job *job = arg;
    unsigned char *buf = NULL;
    int use_rw = 0, err = 0;
    uint64_t done = 0, synced = 0;

    for (;;) {
        uint64_t want = job->limit - done;
        size_t got = 0;
        pthread_mutex_lock(&job->mutex);
        int stop = job->stop;
        pthread_mutex_unlock(&job->mutex);
        if (stop || want == 0)
            break;
        if (want > COPY_CHUNK)
            want = COPY_CHUNK;
        if (!use_rw) {
            loff_t in_off = job->src_off, out_off = (loff_t)done;
            ssize_t n = copy_file_range(job->src_fd, &in_off, job->dst_fd, &out_off, (size_t)want, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && done == 0 &&
                (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                 errno == EBADF)) {
                use_rw = 1;
                continue;
            }
            if (n < 0) {
                err = errno;
                break;
            }
            job->src_off = in_off;
            got = (size_t)n;
        } else if ((err = copy_chunk_rw(job, &buf, done, want, &got)) != 0) {
            break;
        }
        if (got == 0)
            break;
        done += got;
        if (job->writeback && done - synced >= COPY_CHUNK) {
            (void)sync_file_range(job->dst_fd, (off_t)synced, (off_t)(done - synced),
                                  SYNC_FILE_RANGE_WRITE);
            synced = done;
        }
        pthread_mutex_lock(&job->mutex);
        job->done = done;
        pthread_cond_signal(&job->cond);
        pthread_mutex_unlock(&job->mutex);
    }
    free(buf);
    pthread_mutex_lock(&job->mutex);
    job->done = done;
    job->err = err;
    job->finished = 1;
    pthread_cond_signal(&job->cond);
    pthread_mutex_unlock(&job->mutex);
    return NULL;
}

static int hash_range(pkgstore_store_writer *writer, uint64_t from, uint64_t to)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = from - from % (uint64_t)page;
    size_t len = (size_t)(to - start);
    unsigned char *map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, writer->fd,
                              (off_t)start);
    int error;
    if (map == MAP_FAILED)
        return io_error(errno, writer, "mmap");
    error = pkgstore_digest_ctx_update(writer->ctx, map + (from - start), (size_t)(to - from));
    munmap(map, len);
    return error;
}

/* Regular-file fast path: copier thread + hashing the copy. Returns 1 when
 * the caller should fall back to the plain loop (nothing written yet). */
static int add_regular(pkgstore_store_writer *writer, int fd, uint64_t file_size)
{
    struct copy_job job;
    pthread_t thread;
    uint64_t hashed = 0;
    unsigned char *map = NULL;
    size_t map_len = 0;
    int error = 0;
    off_t start = lseek(fd, 0, SEEK_CUR);

    if (start < 0)
        return 1;
    memset(&job, 0, sizeof(job));
    job.src_fd = fd;
    job.dst_fd = writer->fd;
    job.src_off = start;
    job.limit = writer->expected_size >= 0 ? (uint64_t)writer->expected_size + 1 : UINT64_MAX;
    job.writeback = writer->store->opts.durability == PKGSTORE_DURABILITY_FSYNC;
    pthread_mutex_init(&job.mutex, NULL);
    pthread_cond_init(&job.cond, NULL);
    if (file_size > (uint64_t)start && writer->expected_size < 0 &&
        fallocate(writer->fd, 0, 0, (off_t)(file_size - (uint64_t)start)) < 0 &&
        (errno == ENOSPC || errno == EDQUOT)) {
        error = io_error(errno, writer, "reserving space");
        goto out_nothread;
    }
    /* one mapping of the reserved length for the whole ingest: remapping
     * per chunk would cost a TLB shootdown against the copier each time */
    if (file_size > (uint64_t)start) {
        map_len = (size_t)(file_size - (uint64_t)start);
        if (writer->expected_size >= 0 && (uint64_t)writer->expected_size < map_len)
            map_len = (size_t)writer->expected_size;
        map = map_len ? mmap(NULL, map_len, PROT_READ, MAP_SHARED, writer->fd, 0) : MAP_FAILED;
        if (map == MAP_FAILED)
            map = NULL;
        else
            (void)madvise(map, map_len, MADV_SEQUENTIAL);
    }
    if (pthread_create(&thread, NULL, copier_main, &job) != 0) {
        /* the plain loop writes from offset 0: drop the reservation */
        error = ftruncate(writer->fd, 0) == 0 ? 1 : io_error(errno, writer, "truncate");
        goto out_nothread;
    }
    for (;;) {
        uint64_t available;
        int finished;
        pthread_mutex_lock(&job.mutex);
        while (job.done == hashed && !job.finished)
            pthread_cond_wait(&job.cond, &job.mutex);
        available = job.done;
        finished = job.finished;
        pthread_mutex_unlock(&job.mutex);
        while (hashed < available) {
            uint64_t to = available - hashed > ((uint64_t)64 << 20) ? hashed + ((uint64_t)64 << 20)
                                                                     : available;
            if (map != NULL && to <= map_len) {
                /* map the landed pages in one call instead of a fault per
                 * few pages (best effort: older kernels say EINVAL) */
                uint64_t first = hashed - hashed % 4096;
                (void)madvise(map + first, (size_t)(to - first), MADV_POPULATE_READ);
                error = pkgstore_digest_ctx_update(writer->ctx, map + hashed, (size_t)(to - hashed));
            }
            else
                error = hash_range(writer, hashed, to);
            if (error < 0)
                break;
            hashed = to;
        }
        if (error < 0 || (finished && hashed == available))
            break;
    }
    pthread_mutex_lock(&job.mutex);
    job.stop = 1;
    pthread_mutex_unlock(&job.mutex);
    pthread_join(thread, NULL);
    if (error == 0 && job.err != 0)
        error = io_error(job.err, writer, "copy");
    if (error == 0) {
        writer->size = hashed;
        /* leave the input where a read loop would have left it */
        (void)lseek(fd, job.src_off, SEEK_SET);
        /* drop any space reserved past the end */
        if (ftruncate(writer->fd, (off_t)hashed) < 0)
            error = io_error(errno, writer, "truncate");
    }
out_nothread:
    if (map != NULL)
        munmap(map, map_len);
    pthread_mutex_destroy(&job.mutex);
    pthread_cond_destroy(&job.cond);
    if (error < 0)
        writer->failed = 1;
    return error;
}

static int add_stream(pkgstore_store_writer *writer, int fd, size_t buf_size)
{
    unsigned char *buf = malloc(buf_size);
    int error = 0;
    if (buf == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "add: allocating a read buffer");
    for (;;) {
        ssize_t n = read(fd, buf, buf_size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = ps_error_errno(errno, "read input");
            if (error != PKGSTORE_ENOMEM)
                error = PKGSTORE_EIO;
            break;
        }
        if (n == 0)
            break;
        if ((error = pkgstore_store_writer_write(writer, buf, (size_t)n)) < 0)
            break;
    }
    free(buf);
    return error;
}

PKGSTORE_API int pkgstore_store_add_fd(pkgstore_digest *digest_out, uint64_t *size_out,
                                       pkgstore_store *store, int fd,
                                       const pkgstore_digest *expected_digest,
                                       int64_t expected_size)
{
    pkgstore_store_writer *writer = NULL;
    struct stat st;
    int error;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (size_out)
        *size_out = 0;
    if (store == NULL || fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "add: NULL store or bad fd");
    if (fstat(fd, &st) < 0)
        return ps_error_errno(errno, "add: fstat input");
    if (S_ISDIR(st.st_mode))
        return ps_error_set(PKGSTORE_EINVALID, "add: input is a directory");
    if ((error = pkgstore_store_writer_open(&writer, store, expected_digest, expected_size)) < 0)
        return error;
    error = 1;
    if (S_ISREG(st.st_mode) && st.st_size >= (off_t)READ_CHUNK)
        error = add_regular(writer, fd, (uint64_t)st.st_size);
    if (error == 1) {
        /* a small file is read in one go (plus the read that sees EOF) */
        size_t buf_size = READ_CHUNK;
        if (S_ISREG(st.st_mode) && st.st_size < (off_t)READ_CHUNK)
            buf_size = st.st_size < 4096 ? 4096 : (size_t)st.st_size + 1;
        error = add_stream(writer, fd, buf_size);
    }
    if (error < 0) {
        pkgstore_store_writer_abort(writer);
        return error;
    }
    return pkgstore_store_writer_commit(digest_out, size_out, writer);
}

PKGSTORE_API int pkgstore_store_add_file(pkgstore_digest *digest_out, uint64_t *size_out,
                                         pkgstore_store *store, const char *path,
                                         const pkgstore_digest *expected_digest,
                                         int64_t expected_size)
{
    int fd, error;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (size_out)
        *size_out = 0;
    if (store == NULL || path == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "add: NULL store or path");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s: open", path);
    error = pkgstore_store_add_fd(digest_out, size_out, store, fd, expected_digest, expected_size);
    if (error < 0)
        ps_error_prefix("%s", path);
    close(fd);
    return error;
}

static int add_buffer(pkgstore_digest *digest_out, pkgstore_store *store, const void *data,
                      size_t len, int unrecorded)
{
    pkgstore_store_writer *writer = NULL;
    int error;
    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (store == NULL || (data == NULL && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "add: NULL store or data");
    if ((error = pkgstore_store_writer_open(&writer, store, NULL, (int64_t)len)) < 0)
        return error;
    writer->unrecorded = unrecorded;
    if ((error = pkgstore_store_writer_write(writer, data, len)) < 0) {
        pkgstore_store_writer_abort(writer);
        return error;
    }
    return pkgstore_store_writer_commit(digest_out, NULL, writer);
}

PKGSTORE_API int pkgstore_store_add_buffer(pkgstore_digest *digest_out, pkgstore_store *store,
                                           const void *data, size_t len)
{
    return add_buffer(digest_out, store, data, len, 0);
}

int ps_store_add_buffer_unrecorded(pkgstore_digest *digest_out, pkgstore_store *store,
                                   const void *data, size_t len)
{
    return add_buffer(digest_out, store, data, len, 1);
}
