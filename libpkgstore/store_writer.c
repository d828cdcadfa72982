/*
 * store_writer: getting bytes into the store. Temporary files, the
 * streaming writer and the steps that put a checked blob in place
 * (invariants 1 to 4 of docs/store-format.md): link, record, and the
 * withdraw that takes back a linked blob whose upload failed afterwards.
 * The one-pass adds (add_fd, add_file, add_buffer) are in store_add.c.
 *
 * A writer holds no lock while bytes arrive: its temporary file is
 * unnamed (or flock()ed in tmp/), so nothing can take it away. The store
 * lock is held shared only while the blob is linked and recorded, so that
 * gc sees either no trace of an ingest or all of it. Between
 * pkgstore_store_writer_link() and the commit or withdraw, the writer
 * keeps an flock on the blob itself: gc, repair and deletes leave it alone.
 */
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gc.h"

/* ------------------------------------------------------------------ tmp files */

int ps_store_fanout_make(pkgstore_store *store, unsigned int fanout)
{
    char rel[32];
    snprintf(rel, sizeof(rel), "blobs/sha256/%02x", fanout & 0xffu);
    if (mkdirat(store->root_fd, rel, 0755) < 0) {
        if (errno == EEXIST)
            return 0;
        return ps_error_errno(errno, "%s: mkdir", rel);
    }
    /* the new directory's entry must be durable before a blob in it is */
    if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC)
        return ps_store_fsync_dir(store, "blobs/sha256");
    if (store->opts.durability == PKGSTORE_DURABILITY_BATCH)
        ps_store_mark_dirty(store);
    return 0;
}

static int tmpfile_near(int *fd_out, pkgstore_store *store, const pkgstore_digest *near,
                        mode_t mode)
{
    char rel[32];
    int error;
    snprintf(rel, sizeof(rel), "blobs/sha256/%02x", near->bytes[0]);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(store->root_fd, rel, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
        if (fd >= 0) {
            *fd_out = fd;
            return 0;
        }
        if (errno != ENOENT || attempt > 0)
            return ps_error_errno(errno, "%s: open O_TMPFILE", rel);
        if ((error = ps_store_fanout_make(store, near->bytes[0])) < 0)
            return error;
    }
    return ps_error_set(PKGSTORE_EIO, "%s: directory vanished", rel);
}

int ps_store_tmp_create(int *fd_out, char *name_out, size_t name_size, pkgstore_store *store,
                        const pkgstore_digest *near, mode_t mode)
{
    *fd_out = -1;
    if (name_out && name_size)
        name_out[0] = '\0';
    if (store->opts.read_only || store->tmp_fd < 0)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if (store->tmp_mode == PS_TMP_TMPFILE) {
        int fd;
        if (near != NULL)
            return tmpfile_near(fd_out, store, near, mode);
        fd = openat(store->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
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
        /* straight from the fd where the kernel lets us (CAP_DAC_READ_SEARCH
         * or a kernel that allows it for our own O_TMPFILE), which spares a
         * walk through /proc; else through /proc/self/fd */
        int use_proc = 1;
        if (atomic_load(&store->link_empty_path) >= 0) {
            rc = linkat(tmp_fd, "", dir_fd, name, AT_EMPTY_PATH);
            use_proc = rc < 0 && (errno == ENOENT || errno == EPERM || errno == EINVAL ||
                                  errno == EACCES);
            /* ENOENT may also be a missing directory: /proc will say */
            atomic_store(&store->link_empty_path, !use_proc ? 1 : errno == ENOENT ? 0 : -1);
        }
        if (use_proc) {
            snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", tmp_fd);
            rc = linkat(AT_FDCWD, proc_path, dir_fd, name, AT_SYMLINK_FOLLOW);
        }
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
    return rc == PKGSTORE_ENOSPC || rc == PKGSTORE_EDENIED || rc == PKGSTORE_ENOTFOUND
               ? rc
               : PKGSTORE_EIO;
}

void ps_store_tmp_discard(pkgstore_store *store, int tmp_fd, const char *tmp_name)
{
    if (tmp_name != NULL && tmp_name[0] != '\0')
        (void)unlinkat(store->tmp_fd, tmp_name, 0);
    if (tmp_fd >= 0)
        close(tmp_fd);
}

/* ------------------------------------------------------------------ placing */

int ps_store_blob_in_flight(int dir_fd, const char *rel)
{
    int fd = openat(dir_fd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), busy;
    if (fd < 0)
        return 0;
    busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd); /* also drops the lock taken just now */
    return busy;
}

static int sync_error(int error)
{
    return error == PKGSTORE_ENOSPC || error == PKGSTORE_ENOMEM ? error : PKGSTORE_EIO;
}

/* The blob was there already: make sure it is durable before the index
 * refers to it (another process may have linked it in BATCH or NONE mode). */
static int sync_existing(pkgstore_store *store, const char *rel, const char *fanout_rel)
{
    int fd = openat(store->root_fd, rel, O_RDONLY | O_CLOEXEC), error = 0;
    if (fd < 0)
        return sync_error(ps_error_errno(errno, "%s: open", rel));
    if (fdatasync(fd) < 0)
        error = sync_error(ps_error_errno(errno, "%s: fsync", rel));
    close(fd);
    if (error == 0)
        error = ps_store_fsync_dir(store, fanout_rel);
    return error;
}

int ps_store_place(ps_store_placed *out, pkgstore_store *store, const pkgstore_digest *digest,
                   int *src_fd, char *src_name, size_t src_name_size, const void *data,
                   size_t len)
{
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], rel[128], fanout_rel[32], zst_rel[128];
    int fsync_mode = store->opts.durability == PKGSTORE_DURABILITY_FSYNC;
    int error = 0, zst_fd = -1;

    memset(out, 0, sizeof(*out));
    pkgstore_digest_format_hex(hex, digest);
    snprintf(fanout_rel, sizeof(fanout_rel), "blobs/sha256/%.2s", hex);
    snprintf(rel, sizeof(rel), "%s/%s", fanout_rel, hex);
    snprintf(zst_rel, sizeof(zst_rel), "%s/%s.zst", fanout_rel, hex);

    /* a re-add of a blob already there writes nothing (invariant 3). Where
     * nothing is synced, link()'s EEXIST says it at no extra cost; a look
     * first spares a sync (FSYNC) or a compression (zstd_copies) */
    if (fsync_mode || store->opts.zstd_copies)
        out->existed = faccessat(store->root_fd, rel, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (!out->existed && *src_fd < 0) {
        /* bytes in memory: into a temporary file beside their blob */
        if ((error = ps_store_tmp_create(src_fd, src_name, src_name_size, store, digest, 0444)) <
            0)
            goto out;
        for (size_t done = 0; done < len;) {
            ssize_t n = write(*src_fd, (const unsigned char *)data + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                error = sync_error(ps_error_errno(errno, "%s: write", rel));
                goto out;
            }
            done += (size_t)n;
        }
    }

    /* the transfer copy goes in first, so that a blob never lacks it (a
     * copy without its blob is served by nobody and gc takes it) */
    if (store->opts.zstd_copies) {
        int from = *src_fd;
        if (out->existed && (zst_fd = openat(store->root_fd, rel, O_RDONLY | O_CLOEXEC)) < 0) {
            error = ps_error_errno(errno, "%s: open", rel);
            goto out;
        }
        if (zst_fd >= 0)
            from = zst_fd;
        if ((error = ps_store_zstd_write_fd(&out->linked_zst, store, digest, from)) < 0)
            goto out;
    }

    if (!out->existed) {
        if (fsync_mode && fdatasync(*src_fd) < 0) {
            error = sync_error(ps_error_errno(errno, "%s: fsync", rel));
            goto out;
        }
        if (src_name[0] != '\0' && fchmod(*src_fd, 0444) < 0) {
            error = ps_error_errno(errno, "%s: chmod", rel);
            goto out;
        }
        error = ps_store_tmp_link(store, *src_fd, src_name, store->root_fd, rel, rel);
        if (error == PKGSTORE_ENOTFOUND) { /* its fan-out directory is not there yet */
            pkgstore_error_clear();
            if ((error = ps_store_fanout_make(store, digest->bytes[0])) == 0)
                error = ps_store_tmp_link(store, *src_fd, src_name, store->root_fd, rel, rel);
        }
        if (error == PKGSTORE_EEXISTS) { /* another writer linked it meanwhile */
            pkgstore_error_clear();
            out->existed = 1;
            error = 0;
        } else if (error == 0) {
            out->linked_blob = 1;
        } else {
            goto out;
        }
    }
    if (fsync_mode) {
        error = out->existed ? sync_existing(store, rel, fanout_rel)
                             : ps_store_fsync_dir(store, fanout_rel);
        if (error < 0)
            error = sync_error(error);
    } else if (store->opts.durability == PKGSTORE_DURABILITY_BATCH && out->linked_zst) {
        ps_store_mark_dirty(store);
    }
out:
    if (error < 0 && out->linked_zst && !out->linked_blob) {
        /* the blob did not make it: its copy must not stay alone */
        (void)unlinkat(store->root_fd, zst_rel, 0);
        out->linked_zst = 0;
    }
    if (zst_fd >= 0)
        close(zst_fd);
    return error;
}

int ps_store_unplace(pkgstore_store *store, const pkgstore_digest *digest,
                     const ps_store_placed *placed)
{
    char rel[128], why[512];
    int error = 0, referenced;

    if (!placed->linked_blob && !placed->existed)
        return 0;
    /* also a blob that was there (unrecorded: an earlier failed upload);
     * what is recorded, referenced or held stays, whoever linked it */
    ps_store_blob_relpath(rel, sizeof(rel), digest, "");
    if ((error = ps_store_lock(store, 1, 0)) < 0) {
        ps_error_prefix("%s: withdraw", rel);
        return error;
    }
    /* someone may rely on it since: a writer that found it (its record,
     * or its flock while it is between link and commit) or a reference */
    {
        pkgstore_blob_record record;
        error = ps_index_blob_get(&record, ps_store_index(store), digest);
    }
    if (error == 0)
        goto out; /* recorded by another writer: it stays */
    if (error != PKGSTORE_ENOTFOUND)
        goto out;
    pkgstore_error_clear();
    error = 0;
    if (ps_store_blob_in_flight(store->root_fd, rel))
        goto out;
    if ((referenced = ps_gc_blob_referenced(why, sizeof(why), store, digest)) != 0) {
        error = referenced < 0 ? referenced : 0;
        goto out;
    }
    error = ps_store_unlink_blob(store, digest);
out:
    ps_store_unlock(store);
    return error;
}

/* ------------------------------------------------------------------ writer */

static int io_error(int err, const pkgstore_store_writer *writer, const char *op)
{
    int code = ps_error_errno(err, "%s: temporary file: %s", writer->store->path, op);
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
    /* refuse now, not after the upload, while gc or repair has the store */
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        return error;
    ps_store_unlock(store);
    writer = calloc(1, sizeof(*writer));
    if (writer == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "writer open: out of memory");
    writer->store = store;
    writer->fd = writer->held_fd = -1;
    writer->expected_size = expected_size < 0 ? -1 : expected_size;
    if (expected_digest) {
        writer->has_expected_digest = 1;
        writer->expected_digest = *expected_digest;
    }
    if ((error = pkgstore_digest_ctx_new(&writer->ctx)) < 0)
        goto fail;
    /* beside its blob when the digest is known, else in tmp/ */
    if ((error = ps_store_tmp_create(&writer->fd, writer->tmp_name, sizeof(writer->tmp_name),
                                     store, expected_digest, 0444)) < 0)
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
    if (writer->failed || writer->linked)
        return ps_error_set(PKGSTORE_EINVALID, "writer write: the writer %s; abort it",
                            writer->linked ? "is linked already" : "failed earlier");
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

static void writer_free(pkgstore_store_writer *writer)
{
    ps_store_tmp_discard(writer->store, writer->fd, writer->tmp_name);
    if (writer->held_fd >= 0)
        close(writer->held_fd);
    pkgstore_digest_ctx_free(writer->ctx);
    free(writer);
}

/* Check size and digest: the bytes are what the caller said they are. */
static int writer_check(pkgstore_store_writer *writer)
{
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    int error;
    if (writer->failed)
        return ps_error_set(PKGSTORE_EINVALID, "writer: the writer failed earlier");
    if (writer->expected_size >= 0 && writer->size != (uint64_t)writer->expected_size)
        return ps_error_set(PKGSTORE_ESIZE_MISMATCH, "size mismatch: expected %lld bytes, got %llu",
                            (long long)writer->expected_size, (unsigned long long)writer->size);
    if ((error = pkgstore_digest_ctx_final(&writer->digest, writer->ctx)) < 0)
        return error;
    if (writer->has_expected_digest &&
        !pkgstore_digest_equal(&writer->digest, &writer->expected_digest)) {
        pkgstore_digest_format(want, &writer->expected_digest);
        pkgstore_digest_format(got, &writer->digest);
        return ps_error_set(PKGSTORE_EDIGEST_MISMATCH, "digest mismatch: expected %s, got %s",
                            want, got);
    }
    return 0;
}

/* Record the placed blob; the calling thread holds the lock shared.
 * *yield as ps_store_record_blob(). */
static int writer_record(pkgstore_store_writer *writer, int *yield)
{
    *yield = 0;
    if (writer->unrecorded) {
        ps_store_mark_dirty(writer->store); /* BATCH: the next sync must sync it */
        return 0;
    }
    return ps_store_record_blob(writer->store, &writer->digest, writer->size, yield);
}

PKGSTORE_API int pkgstore_store_writer_link(pkgstore_digest *digest_out, uint64_t *size_out,
                                            pkgstore_store_writer *writer)
{
    char rel[128];
    int error;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (size_out)
        *size_out = 0;
    if (writer == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "writer link: NULL writer");
    if (writer->linked)
        return ps_error_set(PKGSTORE_EINVALID, "writer link: linked already");
    if ((error = writer_check(writer)) < 0) {
        writer->failed = 1;
        return error;
    }
    if ((error = ps_store_lock(writer->store, 0, 0)) < 0)
        return error;
    error = ps_store_place(&writer->placed, writer->store, &writer->digest, &writer->fd,
                           writer->tmp_name, sizeof(writer->tmp_name), NULL, 0);
    if (error == 0) {
        /* hold the blob until commit or withdraw (our own file when we
         * linked it, else the one that was there); the temporary file is
         * done with, and a named one's flock would be in the way */
        ps_store_tmp_discard(writer->store, writer->fd, writer->tmp_name);
        writer->fd = -1;
        writer->tmp_name[0] = '\0';
        ps_store_blob_relpath(rel, sizeof(rel), &writer->digest, "");
        writer->held_fd = openat(writer->store->root_fd, rel, O_RDONLY | O_CLOEXEC);
        if (writer->held_fd < 0 || flock(writer->held_fd, LOCK_SH | LOCK_NB) < 0)
            error = ps_error_errno(errno, "%s: hold", rel);
    }
    ps_store_unlock(writer->store);
    if (error < 0) {
        if (writer->placed.linked_blob)
            (void)ps_store_unplace(writer->store, &writer->digest, &writer->placed);
        writer->failed = 1;
        return error;
    }
    writer->linked = 1;
    if (digest_out)
        *digest_out = writer->digest;
    if (size_out)
        *size_out = writer->size;
    return 0;
}

PKGSTORE_API int pkgstore_store_writer_commit(pkgstore_digest *digest_out, uint64_t *size_out,
                                              pkgstore_store_writer *writer)
{
    pkgstore_store *store;
    int error, yield = 0, placed_now = 0;

    if (digest_out)
        memset(digest_out, 0, sizeof(*digest_out));
    if (size_out)
        *size_out = 0;
    if (writer == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "writer commit: NULL writer");
    store = writer->store;
    if (!writer->linked && (error = writer_check(writer)) < 0)
        goto out;
    if ((error = ps_store_lock(store, 0, 0)) < 0)
        goto out;
    if (!writer->linked) {
        /* link and record under one hold of the lock */
        error = ps_store_place(&writer->placed, store, &writer->digest, &writer->fd,
                               writer->tmp_name, sizeof(writer->tmp_name), NULL, 0);
        placed_now = error == 0;
    }
    if (error == 0)
        error = writer_record(writer, &yield);
    ps_store_unlock(store);
    if (error < 0 && placed_now && writer->placed.linked_blob && !ps_store_lock_held(store)) {
        /* it must not stay, servable and unrecorded: take it back if
         * nobody relies on it (fsck reports it as an orphan if not) */
        int first = error;
        char detail[512];
        snprintf(detail, sizeof(detail), "%s", pkgstore_error_detail());
        (void)ps_store_unplace(store, &writer->digest, &writer->placed);
        ps_error_set(first, "%s", detail);
        error = first;
    }
    if (error == 0 && yield) {
        /* an exclusive locker waits for this batch: record it now */
        if (pkgstore_store_sync(store) < 0)
            pkgstore_error_clear(); /* it stays pending; the next sync says why */
    }
    if (error == 0) {
        if (digest_out)
            *digest_out = writer->digest;
        if (size_out)
            *size_out = writer->size;
    }
out:
    writer_free(writer);
    return error;
}

PKGSTORE_API int pkgstore_store_writer_withdraw(pkgstore_store_writer *writer)
{
    int error = 0;
    if (writer == NULL)
        return 0;
    if (writer->linked) {
        /* our own hold would look like another writer's */
        if (writer->held_fd >= 0) {
            close(writer->held_fd);
            writer->held_fd = -1;
        }
        error = ps_store_unplace(writer->store, &writer->digest, &writer->placed);
    }
    writer_free(writer);
    return error;
}

PKGSTORE_API void pkgstore_store_writer_abort(pkgstore_store_writer *writer)
{
    char saved[512];
    if (writer == NULL)
        return;
    if (!writer->linked) {
        writer_free(writer);
        return;
    }
    /* abort is what a failure path calls: keep the detail of that failure */
    snprintf(saved, sizeof(saved), "%s", pkgstore_error_detail());
    (void)pkgstore_store_writer_withdraw(writer);
    if (saved[0] != '\0')
        ps_error_set(PKGSTORE_EIO, "%s", saved); /* only the text is kept */
    else
        pkgstore_error_clear();
}
