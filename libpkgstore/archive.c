/*
 * archive: archive formats, format detection and listing over libarchive.
 *
 * Only libarchive's built-in gzip, zstd and xz filters and its tar and zip
 * readers are enabled, never an external program. libarchive reads fds
 * through pread() callbacks, so callers' file offsets never move and zip
 * can seek to its central directory. Validation and extraction are in
 * archive_extract.c, the path rules in archive_tree.c.
 */
#include "archive_private.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BLOCK (1u << 20) /* bytes per read callback, at most */

/* ------------------------------------------------------------ limits */

int ps_archive_limits_from(ps_archive_limits *out, const pkgstore_archive_options *opts)
{
    out->max_entries = PKGSTORE_ARCHIVE_DEFAULT_MAX_ENTRIES;
    out->max_total_size = PKGSTORE_ARCHIVE_DEFAULT_MAX_TOTAL_SIZE;
    out->max_ratio = PKGSTORE_ARCHIVE_DEFAULT_MAX_RATIO;
    out->ratio_min_size = PKGSTORE_ARCHIVE_DEFAULT_RATIO_MIN_SIZE;
    if (!opts)
        return 0;
    int error;
    if ((error = ps_options_version("archive", opts->version, PKGSTORE_ARCHIVE_OPTIONS_VERSION)) < 0)
        return error;
    if (opts->max_entries)
        out->max_entries = opts->max_entries;
    if (opts->max_total_size)
        out->max_total_size = opts->max_total_size;
    if (opts->max_ratio)
        out->max_ratio = opts->max_ratio;
    if (opts->ratio_min_size)
        out->ratio_min_size = opts->ratio_min_size;
    return 0;
}

PKGSTORE_API int pkgstore_archive_options_init(pkgstore_archive_options *opts,
                                               unsigned int version)
{
    int error = ps_options_init(opts, sizeof(*opts), "archive", version,
                                PKGSTORE_ARCHIVE_OPTIONS_VERSION);
    if (error < 0)
        return error;
    opts->max_entries = PKGSTORE_ARCHIVE_DEFAULT_MAX_ENTRIES;
    opts->max_total_size = PKGSTORE_ARCHIVE_DEFAULT_MAX_TOTAL_SIZE;
    opts->max_ratio = PKGSTORE_ARCHIVE_DEFAULT_MAX_RATIO;
    opts->ratio_min_size = PKGSTORE_ARCHIVE_DEFAULT_RATIO_MIN_SIZE;
    return 0;
}

/* ------------------------------------------------------------ fd source */


static la_ssize_t source_read(struct archive *a, void *data, const void **buf)
{
    ps_archive_source *src = data;
    (void)a;
    for (;;) {
        ssize_t n = pread(src->fd, src->buf, src->buf_size, src->offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            char text[256];
            src->read_errno = errno;
            archive_set_error(a, errno, "read: %s",
                              ps_error_errno_text(errno, text, sizeof(text)));
            return -1;
        }
        src->offset += n;
        *buf = src->buf;
        return n;
    }
}

static la_int64_t source_skip(struct archive *a, void *data, la_int64_t request)
{
    ps_archive_source *src = data;
    (void)a;
    int64_t left = src->size - src->offset;
    if (left < 0)
        left = 0;
    if (request > left)
        request = left;
    src->offset += request;
    return request;
}

static la_int64_t source_seek(struct archive *a, void *data, la_int64_t offset, int whence)
{
    ps_archive_source *src = data;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? src->offset : src->size;
    (void)a;
    if (base + offset < 0)
        return ARCHIVE_FATAL;
    src->offset = base + offset;
    return src->offset;
}

/* A reader with exactly our filters and formats. */
static int reader_new(struct archive **out)
{
    struct archive *a = archive_read_new();
    *out = NULL;
    if (!a)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    /* ARCHIVE_WARN means "through an external program": refuse that. */
    if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
        archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        archive_read_support_filter_xz(a) != ARCHIVE_OK ||
        archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_format_zip(a) != ARCHIVE_OK) {
        archive_read_free(a);
        return ps_error_set(PKGSTORE_EINTERNAL,
                            "libarchive lacks built-in gzip, zstd, xz, tar or zip support");
    }
    *out = a;
    return 0;
}

int ps_archive_reader_open_fd(struct archive **out, ps_archive_source *src, int fd)
{
    struct stat st;
    struct archive *a = NULL;
    int error;

    *out = NULL;
    if (fstat(fd, &st) < 0)
        return ps_error_errno(errno, "fstat");
    if (!S_ISREG(st.st_mode))
        return ps_error_set(PKGSTORE_EINVALID, "archive: not a regular file");
    memset(src, 0, sizeof(*src));
    src->fd = fd;
    src->size = st.st_size;
    /* Small archives (most uploads of scripts, the fuzzer) get a small buffer. */
    src->buf_size = st.st_size < READ_BLOCK ? (size_t)st.st_size + 1 : READ_BLOCK;
    if (src->buf_size < 4096)
        src->buf_size = 4096;
    src->buf = malloc(src->buf_size);
    if (!src->buf)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    if ((error = reader_new(&a)) < 0) {
        free(src->buf);
        src->buf = NULL;
        return error;
    }
    archive_read_set_read_callback(a, source_read);
    archive_read_set_skip_callback(a, source_skip);
    archive_read_set_seek_callback(a, source_seek);
    archive_read_set_callback_data(a, src);
    if (archive_read_open1(a) != ARCHIVE_OK) {
        error = src->read_errno ? ps_error_errno(src->read_errno, "archive")
                                : ps_error_set(PKGSTORE_EFORMAT, "archive: %s",
                                               archive_error_string(a));
        archive_read_free(a);
        free(src->buf);
        src->buf = NULL;
        return error;
    }
    *out = a;
    return 0;
}

void ps_archive_reader_close(struct archive *a, ps_archive_source *src)
{
    if (a)
        archive_read_free(a);
    if (src) {
        free(src->buf);
        src->buf = NULL;
    }
}

int ps_archive_reader_error(struct archive *a, const ps_archive_source *src, const char *what)
{
    if (src && src->read_errno)
        return ps_error_errno(src->read_errno, "%s", what);
    const char *msg = archive_error_string(a);
    return ps_error_set(PKGSTORE_EFORMAT, "%s: %s", what, msg ? msg : "malformed archive");
}

/* ------------------------------------------------------------ detection */

static int has_magic(const unsigned char *p, size_t len, const char *magic, size_t mlen)
{
    return len >= mlen && memcmp(p, magic, mlen) == 0;
}

/* What the first bytes say: 1 = certainly an archive we read, 0 = maybe
 * (a magic-less tar), -1 = certainly a plain binary; an unsupported known
 * format sets *unsupported. */
static int sniff(const unsigned char *p, size_t len, const char **unsupported)
{
    *unsupported = NULL;
    if (has_magic(p, len, "\x7f" "ELF", 4) || has_magic(p, len, "#!", 2))
        return -1;
    if (has_magic(p, len, "\x1f\x8b", 2) || has_magic(p, len, "\x28\xb5\x2f\xfd", 4) ||
        has_magic(p, len, "\xfd" "7zXZ\0", 6) || has_magic(p, len, "PK\x03\x04", 4) ||
        has_magic(p, len, "PK\x05\x06", 4) || (len >= 262 && memcmp(p + 257, "ustar", 5) == 0))
        return 1;
    if (has_magic(p, len, "BZh", 3))
        *unsupported = "bzip2";
    else if (has_magic(p, len, "7z\xbc\xaf\x27\x1c", 6))
        *unsupported = "7z";
    else if (has_magic(p, len, "Rar!", 4))
        *unsupported = "rar";
    else if (has_magic(p, len, "\x04\x22\x4d\x18", 4))
        *unsupported = "lz4";
    else if (has_magic(p, len, "070707", 6) || has_magic(p, len, "070701", 6) ||
             has_magic(p, len, "070702", 6))
        *unsupported = "cpio";
    else if (has_magic(p, len, "\x5d\x00\x00", 3))
        *unsupported = "lzma";
    return 0;
}

/* The compression named by the first bytes, or NULL. */
static const char *compression_magic(const unsigned char *p, size_t len)
{
    if (has_magic(p, len, "\x1f\x8b", 2))
        return "gzip";
    if (has_magic(p, len, "\x28\xb5\x2f\xfd", 4))
        return "zstd";
    if (has_magic(p, len, "\xfd" "7zXZ\0", 6))
        return "xz";
    return NULL;
}

/* Why libarchive could not open data whose first bytes are head. */
static int open_failure(int error, const unsigned char *head, size_t len)
{
    const char *compression = compression_magic(head, len);
    if (error == PKGSTORE_EFORMAT && compression)
        return ps_error_set(PKGSTORE_EFORMAT, "archive: %s data that is not a tar archive",
                            compression);
    return error;
}

/* The format of an opened reader whose first header was read. */
static int format_of(pkgstore_archive_format *out, struct archive *a)
{
    int nfilters = archive_filter_count(a);
    int compression = ARCHIVE_FILTER_NONE;
    for (int i = 0; i < nfilters; i++) {
        int code = archive_filter_code(a, i);
        if (code == ARCHIVE_FILTER_NONE)
            continue;
        if (compression != ARCHIVE_FILTER_NONE)
            return ps_error_set(PKGSTORE_EFORMAT, "archive: nested compression is not supported");
        compression = code;
    }
    int fmt = archive_format(a) & ARCHIVE_FORMAT_BASE_MASK;
    if (fmt == ARCHIVE_FORMAT_ZIP) {
        if (compression != ARCHIVE_FILTER_NONE)
            return ps_error_set(PKGSTORE_EFORMAT, "archive: compressed zip is not supported");
        *out = PKGSTORE_ARCHIVE_ZIP;
        return 0;
    }
    if (fmt != ARCHIVE_FORMAT_TAR)
        return ps_error_set(PKGSTORE_EFORMAT, "archive: unsupported format %s",
                            archive_format_name(a) ? archive_format_name(a) : "?");
    switch (compression) {
    case ARCHIVE_FILTER_NONE: *out = PKGSTORE_ARCHIVE_TAR; return 0;
    case ARCHIVE_FILTER_GZIP: *out = PKGSTORE_ARCHIVE_TAR_GZIP; return 0;
    case ARCHIVE_FILTER_ZSTD: *out = PKGSTORE_ARCHIVE_TAR_ZSTD; return 0;
    case ARCHIVE_FILTER_XZ: *out = PKGSTORE_ARCHIVE_TAR_XZ; return 0;
    default:
        return ps_error_set(PKGSTORE_EFORMAT, "archive: unsupported compression");
    }
}

/* Detection once the first bytes are known; a is an opened reader. */
static int detect_with_reader(pkgstore_archive_format *out, struct archive *a,
                              const ps_archive_source *src,
                              const unsigned char *head, size_t head_len)
{
    const char *unsupported;
    struct archive_entry *entry;
    int certainty = sniff(head, head_len, &unsupported);

    if (certainty < 0) {
        *out = PKGSTORE_ARCHIVE_BINARY;
        return 0;
    }
    if (unsupported)
        return ps_error_set(PKGSTORE_EFORMAT, "archive: %s is not a supported format", unsupported);
    int r = archive_read_next_header(a, &entry);
    if (r == ARCHIVE_OK || r == ARCHIVE_WARN || r == ARCHIVE_EOF) {
        /* EOF: a valid but empty archive (its format is known). */
        if (r == ARCHIVE_EOF && archive_format(a) == 0)
            goto not_archive;
        return format_of(out, a);
    }
not_archive:
    if (certainty > 0)
        return ps_archive_reader_error(a, src, "archive");
    if (src && src->read_errno)
        return ps_error_errno(src->read_errno, "read");
    /* A compression filter recognised the data, but it holds no tar. */
    for (int i = 0; i < archive_filter_count(a); i++)
        if (archive_filter_code(a, i) != ARCHIVE_FILTER_NONE)
            return ps_error_set(PKGSTORE_EFORMAT, "archive: %s data that is not a tar archive",
                                archive_filter_name(a, i));
    *out = PKGSTORE_ARCHIVE_BINARY;
    return 0;
}

PKGSTORE_API int pkgstore_archive_detect_fd(pkgstore_archive_format *out, int fd)
{
    unsigned char head[512];
    ssize_t n;
    ps_archive_source src;
    struct archive *a = NULL;
    int error;

    if (out)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    if (!out || fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "archive detect: bad argument");
    do
        n = pread(fd, head, sizeof(head), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return ps_error_errno(errno, "read");
    if (n == 0)
        return ps_error_set(PKGSTORE_EFORMAT, "empty file: neither a binary nor an archive");
    const char *unsupported;
    if (sniff(head, (size_t)n, &unsupported) < 0) {
        *out = PKGSTORE_ARCHIVE_BINARY;
        return 0;
    }
    if (unsupported)
        return ps_error_set(PKGSTORE_EFORMAT, "archive: %s is not a supported format", unsupported);
    if ((error = ps_archive_reader_open_fd(&a, &src, fd)) < 0) {
        /* libarchive refuses to open data it cannot bid on at all. */
        if (error == PKGSTORE_EFORMAT && sniff(head, (size_t)n, &unsupported) == 0 && !unsupported) {
            pkgstore_error_clear(); /* not an archive is an answer, not a failure */
            *out = PKGSTORE_ARCHIVE_BINARY;
            return 0;
        }
        return open_failure(error, head, (size_t)n);
    }
    error = detect_with_reader(out, a, &src, head, (size_t)n);
    ps_archive_reader_close(a, &src);
    if (error < 0)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    return error;
}

int ps_archive_open_input(int *fd_out, const char *path)
{
    *fd_out = -1;
    if (!path)
        return ps_error_set(PKGSTORE_EINVALID, "archive: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ps_error_errno(errno, "%s", path);
    *fd_out = fd;
    return 0;
}

PKGSTORE_API int pkgstore_archive_detect_file(pkgstore_archive_format *out, const char *path)
{
    int fd, error;
    if (out)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    if ((error = ps_archive_open_input(&fd, path)) < 0)
        return error;
    error = pkgstore_archive_detect_fd(out, fd);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", path);
    return error;
}

PKGSTORE_API int pkgstore_archive_detect_buffer(pkgstore_archive_format *out, const void *data,
                                                size_t len)
{
    struct archive *a = NULL;
    int error;

    if (out)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    if (!out || (!data && len))
        return ps_error_set(PKGSTORE_EINVALID, "archive detect: bad argument");
    if (len == 0)
        return ps_error_set(PKGSTORE_EFORMAT, "empty file: neither a binary nor an archive");
    const char *unsupported;
    if (sniff(data, len, &unsupported) < 0) {
        *out = PKGSTORE_ARCHIVE_BINARY;
        return 0;
    }
    if (unsupported)
        return ps_error_set(PKGSTORE_EFORMAT, "archive: %s is not a supported format", unsupported);
    if ((error = reader_new(&a)) < 0)
        return error;
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        if (sniff(data, len, &unsupported) == 0 && !unsupported) {
            pkgstore_error_clear();
            *out = PKGSTORE_ARCHIVE_BINARY;
            error = 0;
        } else {
            error = open_failure(ps_archive_reader_error(a, NULL, "archive"), data, len);
        }
    } else {
        error = detect_with_reader(out, a, NULL, data, len);
    }
    archive_read_free(a);
    if (error < 0)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    return error;
}

pkgstore_archive_entry_type ps_archive_entry_type(struct archive_entry *entry)
{
    if (archive_entry_hardlink(entry))
        return PKGSTORE_ENTRY_HARDLINK;
    switch (archive_entry_filetype(entry)) {
    case AE_IFREG: return PKGSTORE_ENTRY_FILE;
    case AE_IFDIR: return PKGSTORE_ENTRY_DIR;
    case AE_IFLNK: return PKGSTORE_ENTRY_SYMLINK;
    default: return PKGSTORE_ENTRY_OTHER;
    }
}

/* ------------------------------------------------------------ listing */

struct pkgstore_archive_list {
    pkgstore_archive_format format;
    pkgstore_archive_entry *entries;
    size_t count, cap;
};

static int list_add(pkgstore_archive_list *list, struct archive_entry *entry, const char *path)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        pkgstore_archive_entry *grown = realloc(list->entries, cap * sizeof(*grown));
        if (!grown)
            return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
        list->entries = grown;
        list->cap = cap;
    }
    pkgstore_archive_entry *e = &list->entries[list->count];
    memset(e, 0, sizeof(*e));
    e->type = ps_archive_entry_type(entry);
    e->size = e->type == PKGSTORE_ENTRY_FILE && archive_entry_size(entry) > 0
                  ? (uint64_t)archive_entry_size(entry) : 0;
    e->mode = (unsigned int)archive_entry_perm(entry) & 07777;
    const char *target = e->type == PKGSTORE_ENTRY_HARDLINK ? archive_entry_hardlink(entry)
                         : e->type == PKGSTORE_ENTRY_SYMLINK ? archive_entry_symlink(entry)
                                                             : NULL;
    char *p = strdup(path);
    char *t = target ? strdup(target) : NULL;
    if (!p || (target && !t)) {
        free(p);
        free(t);
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    }
    e->path = p;
    e->link_target = t;
    list->count++;
    return 0;
}

PKGSTORE_API int pkgstore_archive_list_fd(pkgstore_archive_list **out, int fd,
                                          const pkgstore_archive_options *opts)
{
    pkgstore_archive_format format = PKGSTORE_ARCHIVE_UNKNOWN;
    pkgstore_archive_list *list = NULL;
    ps_archive_limits lim;
    ps_archive_source src;
    struct archive *a = NULL;
    struct archive_entry *entry;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "archive list: NULL out");
    *out = NULL;
    if ((error = ps_archive_limits_from(&lim, opts)) < 0)
        return error;
    if ((error = pkgstore_archive_detect_fd(&format, fd)) < 0)
        return error;
    if (!pkgstore_archive_format_is_archive(format))
        return ps_error_set(PKGSTORE_EFORMAT, "not an archive (a plain binary)");
    if (!(list = calloc(1, sizeof(*list))))
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    list->format = format;
    if ((error = ps_archive_reader_open_fd(&a, &src, fd)) < 0)
        goto out;
    for (;;) {
        char what[64];
        int r = archive_read_next_header(a, &entry);
        if (r == ARCHIVE_EOF)
            break;
        snprintf(what, sizeof(what), "entry #%zu", list->count + 1);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            error = ps_archive_reader_error(a, &src, what);
            goto out;
        }
        const char *path = archive_entry_pathname(entry);
        if (list->count + 1 > lim.max_entries) {
            error = ps_error_set(PKGSTORE_ELIMIT, "%.512s: more than %llu entries",
                                 path ? path : what, (unsigned long long)lim.max_entries);
            goto out;
        }
        if (!path) {
            error = ps_error_set(PKGSTORE_EFORMAT, "%s: no path name", what);
            goto out;
        }
        if ((error = list_add(list, entry, path)) < 0)
            goto out;
        if (archive_read_data_skip(a) != ARCHIVE_OK) {
            error = ps_archive_reader_error(a, &src, path);
            goto out;
        }
    }
out:
    if (a)
        ps_archive_reader_close(a, &src);
    if (error < 0) {
        pkgstore_archive_list_free(list);
        return error;
    }
    *out = list; /* now owned by the caller */
    return 0;
}

PKGSTORE_API int pkgstore_archive_list_file(pkgstore_archive_list **out, const char *path,
                                            const pkgstore_archive_options *opts)
{
    int fd, error;
    if (out)
        *out = NULL;
    if ((error = ps_archive_open_input(&fd, path)) < 0)
        return error;
    error = pkgstore_archive_list_fd(out, fd, opts);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", path);
    return error;
}

PKGSTORE_API pkgstore_archive_format pkgstore_archive_list_format(const pkgstore_archive_list *list)
{
    return list ? list->format : PKGSTORE_ARCHIVE_UNKNOWN;
}

PKGSTORE_API size_t pkgstore_archive_list_count(const pkgstore_archive_list *list)
{
    return list ? list->count : 0;
}

PKGSTORE_API const pkgstore_archive_entry *
pkgstore_archive_list_get(const pkgstore_archive_list *list, size_t i)
{
    return list && i < list->count ? &list->entries[i] : NULL;
}

PKGSTORE_API void pkgstore_archive_list_free(pkgstore_archive_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++) {
        free((char *)list->entries[i].path);
        free((char *)list->entries[i].link_target);
    }
    free(list->entries);
    free(list);
}
