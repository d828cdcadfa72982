/*
 * store_add: the one-pass adds (add_fd, add_file, add_buffer).
 *
 * Small inputs (a buffer, a regular file under 1 MiB) are hashed in memory
 * first: a blob that is there already then costs no temporary file at all,
 * and a new one is written once, into an unnamed file in its own fan-out
 * directory. On ext4 that spreads inode allocations over the block groups
 * (blobs/sha256 is marked as the top of a directory hierarchy), where one
 * tmp/ directory had every ingest scan the same group for a free inode.
 *
 * add_fd on a large regular file overlaps the two costs of an ingest: a
 * copier thread moves the bytes into the temporary file with
 * copy_file_range() (read/write where the kernel refuses, as across
 * filesystems) while this thread hashes what has landed there through
 * mmap(). Hashing the temporary file (not the input) means the digest is
 * always the digest of the bytes that get linked, even if the input
 * changes underneath.
 */
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int io_error(int err, const pkgstore_store_writer *writer, const char *op)
{
    int code = ps_error_errno(err, "%s: temporary file: %s", writer->store->path, op);
    return code == PKGSTORE_ENOSPC || code == PKGSTORE_ENOMEM ? code : PKGSTORE_EIO;
}

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
    unsigned char *map; /* the hasher's mapping of the destination (NULL: none) */
    size_t map_len;
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
        /* map what landed for the hasher: the threads share the page
         * tables, and this thread has time to spare (copying is faster
         * than hashing), so the hasher only hashes */
        if (job->map != NULL && done + got <= job->map_len) {
            uint64_t first = done - done % 4096;
            (void)madvise(job->map + first, (size_t)(done + got - first), MADV_POPULATE_READ);
        }
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
        job.map = map;
        job.map_len = map_len;
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
                /* the copier mapped the landed pages (best effort: older
                 * kernels say EINVAL, and then this faults them in) */
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

PKGSTORE_API int pkgstore_store_writer_read_fd(pkgstore_store_writer *writer, int fd)
{
    struct stat st;
    int error = 1;

    if (writer == NULL || fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "writer read: NULL writer or bad fd");
    if (writer->failed || writer->linked)
        return ps_error_set(PKGSTORE_EINVALID, "writer read: the writer %s; abort it",
                            writer->linked ? "is linked already" : "failed earlier");
    if (fstat(fd, &st) < 0)
        return ps_error_errno(errno, "writer read: fstat input");
    if (S_ISDIR(st.st_mode))
        return ps_error_set(PKGSTORE_EINVALID, "writer read: input is a directory");
    /* the copier writes from offset 0: only into a writer still empty */
    if (S_ISREG(st.st_mode) && writer->size == 0 && st.st_size >= (off_t)READ_CHUNK)
        error = add_regular(writer, fd, (uint64_t)st.st_size);
    if (error == 1)
        error = add_stream(writer, fd, READ_CHUNK);
    if (error < 0)
        writer->failed = 1;
    return error;
}

/* ------------------------------------------------------------------ in memory */

/* Add len bytes already in memory, hashed here. */
static int add_memory(pkgstore_digest *digest_out, pkgstore_store *store, const void *data,
                      size_t len, const pkgstore_digest *expected_digest, int64_t expected_size,
                      int unrecorded)
{
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE], tmp_name[64] = "";
    pkgstore_digest digest;
    ps_store_placed placed;
    int error, tmp_fd = -1, yield = 0;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (store == NULL || (data == NULL && len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "add: NULL store or data");
    if (store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if (expected_size >= 0 && (uint64_t)expected_size != len)
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH, "size mismatch: expected %lld bytes, got %zu",
                            (long long)expected_size, len);
    if ((error = pkgstore_digest_buffer(&digest, data, len)) < 0)
        return error;
    if (expected_digest != NULL && !pkgstore_digest_equal(&digest, expected_digest)) {
        pkgstore_digest_format(want, expected_digest);
        pkgstore_digest_format(got, &digest);
        return ps_error_set(PKGSTORE_EDIGEST_MISMATCH, "digest mismatch: expected %s, got %s",
                            want, got);
    }
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        return error;
    error = ps_store_place(&placed, store, &digest, &tmp_fd, tmp_name, sizeof(tmp_name), data,
                           len);
    if (error == 0 && unrecorded)
        ps_store_mark_dirty(store); /* BATCH: the next sync must sync it */
    else if (error == 0)
        error = ps_store_record_blob(store, &digest, len, &yield);
    ps_store_unlock(store);
    if (error < 0 && placed.linked_blob && !ps_store_lock_held(store)) {
        char detail[512];
        snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
        (void)ps_store_unplace(store, &digest, &placed);
        ps_error_set(error, "%s", detail);
    }
    ps_store_tmp_discard(store, tmp_fd, tmp_name);
    if (error == 0 && yield && pkgstore_store_sync(store) < 0)
        pkgstore_error_clear(); /* it stays pending; the next sync says why */
    if (error == 0 && digest_out)
        *digest_out = digest;
    return error;
}

/* Read a small regular file whole: 1 when it grew past its size (the
 * caller streams it instead), 0 with *data_out and *len_out, or an error. */
static int read_small(unsigned char **data_out, size_t *len_out, int fd, size_t size)
{
    unsigned char *data = malloc(size + 1);
    size_t done = 0;
    *data_out = NULL;
    *len_out = 0;
    if (data == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "add: allocating %zu bytes", size + 1);
    /* one byte more than the size: a short read is the end of the file */
    while (done < size + 1) {
        ssize_t n = read(fd, data + done, size + 1 - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int error = ps_error_errno(errno, "read input");
            free(data);
            return error == PKGSTORE_ENOMEM ? error : PKGSTORE_EIO;
        }
        if (n == 0)
            break;
        done += (size_t)n;
        if (done < size + 1)
            break; /* a regular file reads short only at its end */
    }
    *data_out = data;
    *len_out = done;
    return done > size ? 1 : 0;
}

PKGSTORE_API int pkgstore_store_add_fd(pkgstore_digest *digest_out, uint64_t *size_out,
                                       pkgstore_store *store, int fd,
                                       const pkgstore_digest *expected_digest,
                                       int64_t expected_size)
{
    pkgstore_store_writer *writer = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
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
    if (store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if (S_ISREG(st.st_mode) && st.st_size < (off_t)READ_CHUNK) {
        if ((error = read_small(&data, &len, fd, (size_t)st.st_size)) < 0)
            return error;
        if (error == 0) {
            error = add_memory(digest_out, store, data, len, expected_digest, expected_size, 0);
            free(data);
            if (error == 0 && size_out)
                *size_out = len;
            return error;
        }
        /* it grew while we read: stream it, starting with what we have */
    }
    if ((error = pkgstore_store_writer_open(&writer, store, expected_digest, expected_size)) < 0)
        goto out;
    if (data == NULL || (error = pkgstore_store_writer_write(writer, data, len)) == 0)
        error = pkgstore_store_writer_read_fd(writer, fd);
    if (error < 0) {
        pkgstore_store_writer_abort(writer);
        goto out;
    }
    error = pkgstore_store_writer_commit(digest_out, size_out, writer);
out:
    free(data);
    return error;
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

PKGSTORE_API int pkgstore_store_add_buffer(pkgstore_digest *digest_out, pkgstore_store *store,
                                           const void *data, size_t len)
{
    return add_memory(digest_out, store, data, len, NULL, -1, 0);
}

int ps_store_add_buffer_unrecorded(pkgstore_digest *digest_out, pkgstore_store *store,
                                   const void *data, size_t len)
{
    return add_memory(digest_out, store, data, len, NULL, -1, 1);
}
