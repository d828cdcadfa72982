/*
 * store_zstd: the optional transfer copies blobs/sha256/xx/<hex>.zst that the
 * server sends with Content-Encoding: zstd. A copy is written like a blob
 * (a temporary file beside it, durability mode, link without replacing) and
 * is only linked after it was checked to decompress to the blob's digest; a
 * new blob's copy is linked before the blob. libzstd streaming API.
 */
#include "file_io.h"
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#define ZSTD_DEFAULT_LEVEL 3

static int zstd_error(size_t rc, const char *what)
{
    return ps_error_set(PKGSTORE_EINTERNAL, "zstd: %s: %s", what, ZSTD_getErrorName(rc));
}

int ps_store_zstd_hash_fd(pkgstore_digest *out, uint64_t *size_out, int fd)
{
    ZSTD_DStream *stream = NULL;
    pkgstore_digest_ctx *ctx = NULL;
    size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
    unsigned char *in_buf = malloc(in_cap), *out_buf = malloc(out_cap);
    uint64_t total = 0;
    off_t offset = 0;
    size_t last_rc = 0;
    int error = 0, any_input = 0;

    if (in_buf == NULL || out_buf == NULL || (stream = ZSTD_createDStream()) == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "zstd: allocating a decompression stream");
        goto out;
    }
    if ((error = pkgstore_digest_ctx_new(&ctx)) < 0)
        goto out;
    ZSTD_initDStream(stream);
    for (;;) {
        ssize_t n = pread(fd, in_buf, in_cap, offset);
        ZSTD_inBuffer input;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = ps_error_errno(errno, "read");
            if (error != PKGSTORE_ENOMEM)
                error = PKGSTORE_EIO;
            goto out;
        }
        if (n == 0)
            break;
        any_input = 1;
        offset += n;
        input.src = in_buf;
        input.size = (size_t)n;
        input.pos = 0;
        while (input.pos < input.size) {
            ZSTD_outBuffer output = {out_buf, out_cap, 0};
            last_rc = ZSTD_decompressStream(stream, &output, &input);
            if (ZSTD_isError(last_rc)) {
                error = ps_error_set(PKGSTORE_ECORRUPT, "not a valid zstd stream: %s",
                                     ZSTD_getErrorName(last_rc));
                goto out;
            }
            if ((error = pkgstore_digest_ctx_update(ctx, out_buf, output.pos)) < 0)
                goto out;
            total += output.pos;
        }
    }
    /* flush whatever the decoder still holds */
    for (;;) {
        ZSTD_inBuffer input = {in_buf, 0, 0};
        ZSTD_outBuffer output = {out_buf, out_cap, 0};
        if (last_rc == 0)
            break;
        last_rc = ZSTD_decompressStream(stream, &output, &input);
        if (ZSTD_isError(last_rc)) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "not a valid zstd stream: %s",
                                 ZSTD_getErrorName(last_rc));
            goto out;
        }
        if ((error = pkgstore_digest_ctx_update(ctx, out_buf, output.pos)) < 0)
            goto out;
        total += output.pos;
        if (output.pos == 0) {
            error = ps_error_set(PKGSTORE_ECORRUPT, "truncated zstd stream");
            goto out;
        }
    }
    if (!any_input) {
        error = ps_error_set(PKGSTORE_ECORRUPT, "empty zstd file");
        goto out;
    }
    if ((error = pkgstore_digest_ctx_final(out, ctx)) < 0)
        goto out;
    if (size_out)
        *size_out = total;
out:
    ZSTD_freeDStream(stream);
    pkgstore_digest_ctx_free(ctx);
    free(in_buf);
    free(out_buf);
    return error;
}

/* Compress blob_fd into tmp_fd. The source is not hashed here: the caller
 * checks that the copy decompresses to the digest, which also catches a
 * source that does not hash to it, with one pass over the bytes less. */
static int compress_into(int tmp_fd, int blob_fd, int level)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t in_cap = ZSTD_CStreamInSize(), out_cap = ZSTD_CStreamOutSize();
    unsigned char *in_buf = malloc(in_cap), *out_buf = malloc(out_cap);
    off_t offset = 0;
    int error = 0;
    size_t rc;

    if (cctx == NULL || in_buf == NULL || out_buf == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "zstd: allocating a compression context");
        goto out;
    }
    if (ZSTD_isError(rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1))) {
        error = zstd_error(rc, "setting parameters");
        goto out;
    }
    for (;;) {
        ssize_t n = pread(blob_fd, in_buf, in_cap, offset);
        ZSTD_EndDirective mode;
        ZSTD_inBuffer input;
        int finished = 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = ps_error_errno(errno, "read blob");
            goto out;
        }
        offset += n;
        mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        input.src = in_buf;
        input.size = (size_t)n;
        input.pos = 0;
        do {
            ZSTD_outBuffer output = {out_buf, out_cap, 0};
            rc = ZSTD_compressStream2(cctx, &output, &input, mode);
            if (ZSTD_isError(rc)) {
                error = zstd_error(rc, "compress");
                goto out;
            }
            if (ps_write_all(tmp_fd, out_buf, output.pos) < 0) {
                error = ps_error_errno(errno, "write zstd copy");
                if (error != PKGSTORE_ENOSPC)
                    error = PKGSTORE_EIO;
                goto out;
            }
            finished = mode == ZSTD_e_end ? rc == 0 : input.pos == input.size;
        } while (!finished);
        if (n == 0)
            break;
    }
out:
    ZSTD_freeCCtx(cctx);
    free(in_buf);
    free(out_buf);
    return error;
}

int ps_store_zstd_write_fd(int *linked, pkgstore_store *store, const pkgstore_digest *digest,
                           int blob_fd)
{
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], name[PKGSTORE_DIGEST_HEX_LEN + 8], rel[128];
    char want[PKGSTORE_DIGEST_STR_SIZE], got[PKGSTORE_DIGEST_STR_SIZE];
    char tmp_name[64];
    pkgstore_digest actual;
    int tmp_fd = -1, fanout_fd = -1, error;
    int level = store->opts.zstd_level > 0 ? store->opts.zstd_level : ZSTD_DEFAULT_LEVEL;

    if (linked)
        *linked = 0;
    pkgstore_digest_format_hex(hex, digest);
    snprintf(name, sizeof(name), "%s.zst", hex);
    ps_store_blob_relpath(rel, sizeof(rel), digest, ".zst");
    pkgstore_digest_format(want, digest);
    if ((error = ps_store_fanout_make(store, digest->bytes[0])) < 0 ||
        (error = ps_store_fanout_open(&fanout_fd, NULL, store, digest, 0)) < 0)
        return error;
    if (faccessat(fanout_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        goto out; /* an existing copy is a success */
    if ((error = ps_store_tmp_create(&tmp_fd, tmp_name, sizeof(tmp_name), store, digest, 0444)) <
        0)
        goto out;
    if ((error = compress_into(tmp_fd, blob_fd, level)) < 0) {
        ps_error_prefix("%s", rel);
        goto out;
    }
    /* check the copy before anyone can be served it (a corrupt blob fails
     * here too: its copy decompresses to what the blob hashes to) */
    if ((error = ps_store_zstd_hash_fd(&actual, NULL, tmp_fd)) < 0) {
        ps_error_prefix("%s", rel);
        goto out;
    }
    if (!pkgstore_digest_equal(&actual, digest)) {
        pkgstore_digest_format(got, &actual);
        error = ps_error_set(PKGSTORE_ECORRUPT,
                             "%s: decompresses to %s, expected %s (the blob or the copy is "
                             "corrupt)",
                             rel, got, want);
        goto out;
    }
    if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC && fdatasync(tmp_fd) < 0) {
        error = ps_error_errno(errno, "%s: fsync", rel);
        goto out;
    }
    if (tmp_name[0] != '\0')
        (void)fchmod(tmp_fd, 0444);
    error = ps_store_tmp_link(store, tmp_fd, tmp_name, fanout_fd, name, rel);
    if (error == PKGSTORE_EEXISTS) {
        pkgstore_error_clear();
        error = 0;
        goto out;
    }
    if (error < 0)
        goto out;
    if (linked)
        *linked = 1;
    if (store->opts.durability == PKGSTORE_DURABILITY_FSYNC && fsync(fanout_fd) < 0)
        error = ps_error_errno(errno, "%s: fsync directory", rel);
    else if (store->opts.durability == PKGSTORE_DURABILITY_BATCH)
        ps_store_mark_dirty(store);
out:
    if (tmp_fd >= 0)
        ps_store_tmp_discard(store, tmp_fd, tmp_name);
    if (fanout_fd >= 0)
        close(fanout_fd);
    return error;
}

PKGSTORE_API int pkgstore_store_zstd_write(pkgstore_store *store, const pkgstore_digest *digest)
{
    int blob_fd = -1, error;
    if (store == NULL || digest == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "zstd write: NULL store or digest");
    if (store->opts.read_only)
        return ps_error_set(PKGSTORE_EDENIED, "%s: store opened read-only", store->path);
    if ((error = pkgstore_store_blob_open(&blob_fd, NULL, store, digest)) < 0)
        return error;
    if ((error = ps_store_lock(store, 0, 0)) == 0) {
        error = ps_store_zstd_write_fd(NULL, store, digest, blob_fd);
        ps_store_unlock(store);
    }
    close(blob_fd);
    return error;
}
