/*
 * archive: format detection, listing, validation, safe extraction and
 * tar+zstd creation over libarchive.
 *
 * libarchive parses; this file decides what is safe and does every write
 * itself. Writes go through directory fds opened component by component
 * with O_NOFOLLOW, so no path is ever resolved through a symlink, whatever
 * the order of the entries. Every header is checked on the way (path,
 * type, link target, limits) and, once all headers are known, every
 * symlink is resolved through the archive's other symlinks to prove that
 * no chain leaves the directory. One pass over the data: extraction costs
 * one decompression, as `tar -x` does.
 *
 * Only the gzip, zstd and xz filters and the tar and zip formats are
 * enabled, and never through an external program.
 */
#include "pkgstore/archive.h"

#include "error.h"

#include <archive.h>
#include <archive_entry.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define READ_BLOCK (1u << 20) /* bytes per read callback */
#define MAX_PATH_LEN 4095
#define MAX_NAME_LEN 255
#define MAX_SYMLINK_HOPS 40
#define MAX_DEPTH 128                   /* components in an entry path */
#define MAX_RESOLVE_DEPTH (MAX_PATH_LEN / 2 + 2)
#define RESOLVE_BUDGET 2000000u         /* symlink resolution steps per archive */
#define MAX_FILTERS 1 /* one compression layer at most */

/* ------------------------------------------------------------ formats */

static const char *const format_names[] = {
    [PKGSTORE_ARCHIVE_UNKNOWN] = "unknown",   [PKGSTORE_ARCHIVE_BINARY] = "binary",
    [PKGSTORE_ARCHIVE_TAR] = "tar",           [PKGSTORE_ARCHIVE_TAR_GZIP] = "tar+gzip",
    [PKGSTORE_ARCHIVE_TAR_ZSTD] = "tar+zstd", [PKGSTORE_ARCHIVE_TAR_XZ] = "tar+xz",
    [PKGSTORE_ARCHIVE_ZIP] = "zip",
};

PKGSTORE_API const char *pkgstore_archive_format_name(pkgstore_archive_format format)
{
    if ((int)format < 0 || (size_t)format >= sizeof(format_names) / sizeof(format_names[0]))
        return "unknown";
    return format_names[format];
}

PKGSTORE_API int pkgstore_archive_format_parse(pkgstore_archive_format *out, const char *name)
{
    if (out)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    if (!out || !name)
        return ps_error_set(PKGSTORE_EINVALID, "format: NULL argument");
    for (int f = PKGSTORE_ARCHIVE_BINARY; f <= PKGSTORE_ARCHIVE_ZIP; f++) {
        if (strcmp(name, format_names[f]) == 0) {
            *out = (pkgstore_archive_format)f;
            return 0;
        }
    }
    return ps_error_set(PKGSTORE_EINVALID,
                        "format '%.64s': not one of binary, tar, tar+gzip, tar+zstd, tar+xz, zip",
                        name);
}

PKGSTORE_API int pkgstore_archive_format_is_archive(pkgstore_archive_format format)
{
    return format >= PKGSTORE_ARCHIVE_TAR && format <= PKGSTORE_ARCHIVE_ZIP;
}

/* ------------------------------------------------------------ limits */

typedef struct limits {
    uint64_t max_entries;
    uint64_t max_total_size;
    uint64_t max_ratio;
    uint64_t ratio_min_size;
} limits;

static int limits_from(limits *out, const pkgstore_archive_options *opts)
{
    out->max_entries = PKGSTORE_ARCHIVE_DEFAULT_MAX_ENTRIES;
    out->max_total_size = PKGSTORE_ARCHIVE_DEFAULT_MAX_TOTAL_SIZE;
    out->max_ratio = PKGSTORE_ARCHIVE_DEFAULT_MAX_RATIO;
    out->ratio_min_size = PKGSTORE_ARCHIVE_DEFAULT_RATIO_MIN_SIZE;
    if (!opts)
        return 0;
    if (opts->version != PKGSTORE_ARCHIVE_OPTIONS_VERSION)
        return ps_error_set(PKGSTORE_EINVALID, "archive options: unsupported version %u",
                            opts->version);
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

/* ------------------------------------------------------------ fd source */

/* libarchive reads through these callbacks with pread(), so the caller's
 * file offset never moves and zip can seek to its central directory. */
typedef struct source {
    int fd;
    int64_t offset;
    int64_t size;
    unsigned char *buf;
    size_t buf_size;
    int read_errno;
} source;

static la_ssize_t source_read(struct archive *a, void *data, const void **buf)
{
    source *src = data;
    (void)a;
    for (;;) {
        ssize_t n = pread(src->fd, src->buf, src->buf_size, src->offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            src->read_errno = errno;
            archive_set_error(a, errno, "read: %s", strerror(errno));
            return -1;
        }
        src->offset += n;
        *buf = src->buf;
        return n;
    }
}

static la_int64_t source_skip(struct archive *a, void *data, la_int64_t request)
{
    source *src = data;
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
    source *src = data;
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

/* Open a reader over fd; src must outlive the reader. */
static int reader_open_fd(struct archive **out, source *src, int fd)
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

static void reader_close(struct archive *a, source *src)
{
    if (a)
        archive_read_free(a);
    if (src) {
        free(src->buf);
        src->buf = NULL;
    }
}

/* The error for a failed libarchive call: an I/O error of ours, or a
 * format error quoting libarchive. */
static int reader_error(struct archive *a, const source *src, const char *what)
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
static int detect_with_reader(pkgstore_archive_format *out, struct archive *a, const source *src,
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
        return reader_error(a, src, "archive");
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
    source src;
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
    if ((error = reader_open_fd(&a, &src, fd)) < 0) {
        /* libarchive refuses to open data it cannot bid on at all. */
        if (error == PKGSTORE_EFORMAT && sniff(head, (size_t)n, &unsupported) == 0 && !unsupported) {
            pkgstore_error_clear(); /* not an archive is an answer, not a failure */
            *out = PKGSTORE_ARCHIVE_BINARY;
            return 0;
        }
        return open_failure(error, head, (size_t)n);
    }
    error = detect_with_reader(out, a, &src, head, (size_t)n);
    reader_close(a, &src);
    if (error < 0)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    return error;
}

static int open_input(int *fd_out, const char *path)
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
    if ((error = open_input(&fd, path)) < 0)
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
            error = open_failure(reader_error(a, NULL, "archive"), data, len);
        }
    } else {
        error = detect_with_reader(out, a, NULL, data, len);
    }
    archive_read_free(a);
    if (error < 0)
        *out = PKGSTORE_ARCHIVE_UNKNOWN;
    return error;
}

/* ------------------------------------------------------------ paths */

/* Normalize an archive path into out: drop "." and empty components and a
 * trailing slash. Refuse absolute paths, ".." and over-long names. An empty
 * result means the extraction directory itself. */
static int normalize_path(char *out, size_t out_size, const char *in, const char *what)
{
    size_t n = 0, depth = 0;
    const char *p = in;

    if (!in || !*in)
        return ps_error_set(PKGSTORE_EUNSAFE, "%s: empty path", what);
    if (in[0] == '/')
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: absolute path", in);
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: '..' component leaves the extraction directory", in);
        if (len > MAX_NAME_LEN)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: file name too long", in);
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (++depth > MAX_DEPTH)
                return ps_error_set(PKGSTORE_ELIMIT, "%.512s: more than %d levels of directories",
                                    in, MAX_DEPTH);
            if (n + (n ? 1 : 0) + len >= out_size || n + len + 1 > MAX_PATH_LEN)
                return ps_error_set(PKGSTORE_EUNSAFE, "%.512s...: path too long", in);
            if (n)
                out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    out[n] = '\0';
    return 0;
}

/* ------------------------------------------------------------ entry map */

/* The final state of the tree, path -> type (and link target), as the
 * archive builds it entry by entry: later entries replace earlier ones. */
typedef struct node {
    char *path; /* normalized; owns the target too (path\0target\0) */
    const char *target;
    uint64_t hash; /* of path */
    pkgstore_archive_entry_type type;
} node;

typedef struct node_map {
    node *slots;
    size_t cap;   /* power of two */
    size_t count;
    size_t symlinks;
} node_map;

/* FNV-1a, extendable: the hash of "a/b" is hash_extend(hash("a"), "/b"),
 * so every prefix of a path is looked up in linear time overall. */
#define HASH_INIT 1469598103934665603ull

static uint64_t hash_extend(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static node *map_find_hashed(const node_map *map, const char *path, size_t len, uint64_t hash)
{
    if (!map->cap)
        return NULL;
    size_t i = (size_t)hash & (map->cap - 1);
    while (map->slots[i].path) {
        const node *n = &map->slots[i];
        if (n->hash == hash && strncmp(n->path, path, len) == 0 && n->path[len] == '\0')
            return &map->slots[i];
        i = (i + 1) & (map->cap - 1);
    }
    return NULL;
}

static node *map_find(const node_map *map, const char *path, size_t len)
{
    return map_find_hashed(map, path, len, hash_extend(HASH_INIT, path, len));
}

static int map_grow(node_map *map)
{
    size_t cap = map->cap ? map->cap * 2 : 64;
    node *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    for (size_t j = 0; j < map->cap; j++) {
        if (!map->slots[j].path)
            continue;
        size_t i = (size_t)map->slots[j].hash & (cap - 1);
        while (slots[i].path)
            i = (i + 1) & (cap - 1);
        slots[i] = map->slots[j];
    }
    free(map->slots);
    map->slots = slots;
    map->cap = cap;
    return 0;
}

static int map_put(node_map *map, const char *path, pkgstore_archive_entry_type type,
                   const char *target)
{
    size_t plen = strlen(path), tlen = target ? strlen(target) : 0;
    uint64_t hash = hash_extend(HASH_INIT, path, plen);
    node *slot = map_find_hashed(map, path, plen, hash);
    char *copy = malloc(plen + 1 + tlen + 1);
    int error;

    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    memcpy(copy, path, plen + 1);
    if (target)
        memcpy(copy + plen + 1, target, tlen + 1);
    if (slot) {
        if (slot->type == PKGSTORE_ENTRY_SYMLINK)
            map->symlinks--;
        free(slot->path);
    } else {
        if ((map->count + 1) * 4 > map->cap * 3 && (error = map_grow(map)) < 0) {
            free(copy);
            return error;
        }
        size_t i = (size_t)hash & (map->cap - 1);
        while (map->slots[i].path)
            i = (i + 1) & (map->cap - 1);
        slot = &map->slots[i];
        map->count++;
    }
    slot->path = copy;
    slot->hash = hash;
    slot->target = target ? copy + plen + 1 : NULL;
    slot->type = type;
    if (type == PKGSTORE_ENTRY_SYMLINK)
        map->symlinks++;
    return 0;
}

static void map_free(node_map *map)
{
    for (size_t i = 0; i < map->cap; i++)
        free(map->slots[i].path);
    free(map->slots);
    memset(map, 0, sizeof(*map));
}

/* Working memory of resolve_symlink(): the current directory as a string
 * with, per depth, its length and hash (push and pop in O(component)). */
typedef struct resolver {
    char cur[MAX_PATH_LEN + 1];
    size_t len[MAX_RESOLVE_DEPTH];
    uint64_t hash[MAX_RESOLVE_DEPTH];
    size_t depth;
    uint64_t budget; /* steps left for the whole archive */
} resolver;

static int resolver_push(resolver *r, const char *comp, size_t len)
{
    size_t cur_len = r->len[r->depth];
    size_t new_len = cur_len + (cur_len ? 1 : 0) + len;
    if (new_len > MAX_PATH_LEN || r->depth + 1 >= MAX_RESOLVE_DEPTH)
        return -1;
    uint64_t h = r->hash[r->depth];
    if (cur_len) {
        r->cur[cur_len++] = '/';
        h = hash_extend(h, "/", 1);
    }
    memcpy(r->cur + cur_len, comp, len);
    r->cur[new_len] = '\0';
    r->depth++;
    r->len[r->depth] = new_len;
    r->hash[r->depth] = hash_extend(h, comp, len);
    return 0;
}

static void resolver_pop(resolver *r)
{
    r->depth--;
    r->cur[r->len[r->depth]] = '\0';
}

/* Resolve a symlink's target from its directory through the archive's
 * other symlinks, as the kernel would once it is on disk; refuse when the
 * walk climbs above the root, reaches an absolute path or loops. */
static int resolve_symlink(resolver *r, const node_map *map, const char *link_path,
                           const char *target)
{
    char *queue = NULL;
    size_t hops = 0, pos = 0;
    int error = 0;

    if (target[0] == '/')
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink to absolute path %.512s",
                            link_path, target);
    /* Start in the link's directory. */
    r->depth = 0;
    r->len[0] = 0;
    r->hash[0] = HASH_INIT;
    r->cur[0] = '\0';
    const char *slash = strrchr(link_path, '/');
    for (const char *p = link_path; slash && p < slash;) {
        size_t len = strcspn(p, "/");
        if (resolver_push(r, p, len) < 0)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path too long", link_path);
        p += len + 1;
    }
    queue = strdup(target);
    if (!queue)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    while (queue[pos]) {
        char *comp = queue + pos;
        size_t len = strcspn(comp, "/");
        pos += len + (comp[len] == '/');
        if (r->budget == 0) {
            error = ps_error_set(PKGSTORE_ELIMIT,
                                 "%.512s: symlinks too many or too intricate to check",
                                 link_path);
            goto out;
        }
        r->budget--;
        if (len == 0 || (len == 1 && comp[0] == '.'))
            continue;
        if (len == 2 && comp[0] == '.' && comp[1] == '.') {
            if (r->depth == 0) {
                error = ps_error_set(PKGSTORE_EUNSAFE,
                                     "%.512s: symlink to %.512s leaves the extraction directory",
                                     link_path, target);
                goto out;
            }
            resolver_pop(r);
            continue;
        }
        if (resolver_push(r, comp, len) < 0) {
            error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink target path too long",
                                 link_path);
            goto out;
        }
        const node *hit = map_find_hashed(map, r->cur, r->len[r->depth], r->hash[r->depth]);
        if (hit && hit->type == PKGSTORE_ENTRY_SYMLINK) {
            if (++hops > MAX_SYMLINK_HOPS) {
                error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: too many levels of symlinks",
                                     link_path);
                goto out;
            }
            if (hit->target[0] == '/') {
                error = ps_error_set(PKGSTORE_EUNSAFE,
                                     "%.512s: symlink chain reaches absolute path %.512s",
                                     link_path, hit->target);
                goto out;
            }
            /* Continue with the link's target, then the rest of the queue. */
            resolver_pop(r);
            const char *rest = queue + pos;
            size_t tl = strlen(hit->target), rl = strlen(rest);
            char *next = malloc(tl + 1 + rl + 1);
            if (!next) {
                error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
                goto out;
            }
            memcpy(next, hit->target, tl);
            next[tl] = '/';
            memcpy(next + tl + 1, rest, rl + 1);
            free(queue);
            queue = next;
            pos = 0;
        }
    }
out:
    free(queue);
    return error;
}

/* ------------------------------------------------------------ the scan */

typedef enum scan_mode {
    SCAN_LIST,     /* collect entries; only the entry cap applies */
    SCAN_VALIDATE, /* check everything, read all data */
    SCAN_EXTRACT   /* check everything, write (all or only the entrypoint) */
} scan_mode;

struct pkgstore_archive_list {
    pkgstore_archive_format format;
    pkgstore_archive_entry *entries;
    size_t count, cap;
};

typedef struct scan {
    scan_mode mode;
    limits lim;
    struct archive *a;
    source *src;
    uint64_t archive_size;
    uint64_t entries;
    uint64_t expanded;     /* bytes of file data, measured (or header sizes when skipped) */
    uint64_t executables;
    char sole_executable[MAX_PATH_LEN + 1];
    node_map map;
    resolver res;
    char path[MAX_PATH_LEN + 1];   /* normalized path of the current entry */
    char target[MAX_PATH_LEN + 1]; /* normalized hard link target */
    const char *entrypoint;        /* normalized, or NULL */
    int root_fd;                   /* extraction: the fresh directory */
    int entrypoint_written;
    pkgstore_archive_list *list;
    unsigned char *copy_buf;
} scan;

static int check_size(scan *s, const char *path, uint64_t add)
{
    if (add > s->lim.max_total_size || s->expanded > s->lim.max_total_size - add)
        return ps_error_set(PKGSTORE_ELIMIT,
                            "%.512s: total expanded size exceeds the limit of %llu bytes", path,
                            (unsigned long long)s->lim.max_total_size);
    uint64_t total = s->expanded + add;
    if (total > s->lim.ratio_min_size) {
        uint64_t base = s->archive_size ? s->archive_size : 1;
        if (total / base >= s->lim.max_ratio && total > base * s->lim.max_ratio)
            return ps_error_set(PKGSTORE_ELIMIT,
                                "%.512s: expansion ratio exceeds %llu (%llu bytes from a "
                                "%llu-byte archive): a decompression bomb?",
                                path, (unsigned long long)s->lim.max_ratio,
                                (unsigned long long)total, (unsigned long long)s->archive_size);
    }
    return 0;
}

static pkgstore_archive_entry_type entry_type(struct archive_entry *entry)
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

static const char *other_type_name(struct archive_entry *entry)
{
    switch (archive_entry_filetype(entry)) {
    case AE_IFCHR: return "character device";
    case AE_IFBLK: return "block device";
    case AE_IFIFO: return "FIFO";
    case AE_IFSOCK: return "socket";
    default: return "entry of unknown type";
    }
}

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
    e->type = entry_type(entry);
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

/* Check that no proper prefix of s->path is a symlink or a non-directory
 * in the tree built so far: extraction never walks through those. */
static int check_parents(scan *s)
{
    uint64_t hash = HASH_INIT;
    const char *done = s->path;
    for (char *slash = strchr(s->path, '/'); slash; slash = strchr(slash + 1, '/')) {
        hash = hash_extend(hash, done, (size_t)(slash - done));
        done = slash;
        const node *hit = map_find_hashed(&s->map, s->path, (size_t)(slash - s->path), hash);
        if (!hit || hit->type == PKGSTORE_ENTRY_DIR)
            continue;
        if (hit->type == PKGSTORE_ENTRY_SYMLINK)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path passes through symlink %.*s",
                                s->path, (int)(slash - s->path), s->path);
        return ps_error_set(PKGSTORE_EFORMAT, "%.512s: parent %.*s is not a directory",
                            s->path, (int)(slash - s->path), s->path);
    }
    return 0;
}

/* ---- writing below root_fd, never through a symlink ---- */

/* Open the directory holding rel (creating missing directories when
 * create); *base_out points at the last component inside rel. */
static int open_parent(int *fd_out, const char **base_out, int root_fd, const char *rel,
                       int create)
{
    char comp[MAX_NAME_LEN + 1];
    int fd = dup(root_fd);
    const char *p = rel;

    *fd_out = -1;
    if (fd < 0)
        return ps_error_errno(errno, "dup");
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            break;
        size_t len = (size_t)(slash - p);
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                int err = errno;
                close(fd);
                return ps_error_errno(err, "%.512s: mkdir %.*s", rel, (int)(slash - rel), rel);
            }
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int err = errno;
            close(fd);
            if (err == ELOOP || err == ENOTDIR)
                return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path passes through a non-directory %.*s",
                                    rel, (int)(slash - rel), rel);
            return ps_error_errno(err, "%.512s: open %.*s", rel, (int)(slash - rel), rel);
        }
        close(fd);
        fd = next;
        p = slash + 1;
    }
    *fd_out = fd;
    *base_out = p;
    return 0;
}

/* Make room for a new non-directory at (dirfd, name): remove whatever
 * non-directory is there (a later tar entry replaces an earlier one). */
static int clear_slot(int dirfd, const char *name, const char *rel)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%.512s: stat", rel);
    if (S_ISDIR(st.st_mode))
        return ps_error_set(PKGSTORE_EFORMAT, "%.512s: replaces a directory", rel);
    if (unlinkat(dirfd, name, 0) < 0)
        return ps_error_errno(errno, "%.512s: unlink", rel);
    return 0;
}

static int write_all_at(int fd, const void *data, size_t len, int64_t offset, const char *rel)
{
    const char *p = data;
    while (len) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ps_error_errno(errno, "%.512s: write", rel);
        }
        p += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

/* Consume the current entry's data: write it to fd when fd >= 0, else just
 * count it. Sizes are measured against the limits as they grow. */
static int consume_data(scan *s, int fd, const char *rel)
{
    const void *buf;
    size_t len;
    la_int64_t offset;
    for (;;) {
        int r = archive_read_data_block(s->a, &buf, &len, &offset);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            int error = reader_error(s->a, s->src, rel);
            return error;
        }
        int error = check_size(s, rel, len);
        if (error < 0)
            return error;
        s->expanded += len;
        if (fd >= 0 && len && (error = write_all_at(fd, buf, len, offset, rel)) < 0)
            return error;
    }
    return 0;
}

static int extract_file(scan *s, struct archive_entry *entry)
{
    int dirfd = -1, fd = -1, error;
    const char *base;

    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    if ((error = clear_slot(dirfd, base, s->path)) < 0)
        goto out;
    fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = ps_error_errno(errno, "%.512s: create", s->path);
        goto out;
    }
    if ((error = consume_data(s, fd, s->path)) < 0)
        goto out;
    int64_t size = archive_entry_size(entry);
    struct stat st;
    if (size > 0 && fstat(fd, &st) == 0 && st.st_size < size && ftruncate(fd, size) < 0) {
        error = ps_error_errno(errno, "%.512s: truncate", s->path);
        goto out;
    }
    if (fchmod(fd, (mode_t)(archive_entry_perm(entry) & 0777)) < 0) {
        error = ps_error_errno(errno, "%.512s: chmod", s->path);
        goto out;
    }
out:
    if (fd >= 0 && close(fd) < 0 && error == 0)
        error = ps_error_errno(errno, "%.512s: close", s->path);
    close(dirfd);
    return error;
}

static int extract_dir(scan *s, struct archive_entry *entry)
{
    int dirfd = -1, error;
    const char *base;
    struct stat st;

    if (!s->path[0])
        return 0; /* "./": the root itself */
    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    mode_t mode = (mode_t)(archive_entry_perm(entry) & 0777) | 0700; /* we must be able to clean up */
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
        if ((error = clear_slot(dirfd, base, s->path)) < 0)
            goto out;
    }
    if (mkdirat(dirfd, base, 0700) < 0 && errno != EEXIST) {
        error = ps_error_errno(errno, "%.512s: mkdir", s->path);
        goto out;
    }
    /* chmod through an fd opened without following a symlink. */
    int fd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchmod(fd, mode) < 0)
        error = ps_error_errno(errno, "%.512s: chmod", s->path);
    if (fd >= 0)
        close(fd);
out:
    close(dirfd);
    return error;
}

static int extract_symlink(scan *s, const char *target)
{
    int dirfd = -1, error;
    const char *base;

    if ((error = open_parent(&dirfd, &base, s->root_fd, s->path, 1)) < 0)
        return error;
    if ((error = clear_slot(dirfd, base, s->path)) < 0)
        goto out;
    if (symlinkat(target, dirfd, base) < 0)
        error = ps_error_errno(errno, "%.512s: symlink", s->path);
out:
    close(dirfd);
    return error;
}

static int extract_hardlink(scan *s)
{
    int tdir = -1, ndir = -1, error;
    const char *tbase, *nbase;
    struct stat st;

    if ((error = open_parent(&tdir, &tbase, s->root_fd, s->target, 0)) < 0)
        return error;
    if (fstatat(tdir, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
        error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: hard link target %.512s is not a regular file",
                             s->path, s->target);
        goto out;
    }
    if ((error = open_parent(&ndir, &nbase, s->root_fd, s->path, 1)) < 0)
        goto out;
    if ((error = clear_slot(ndir, nbase, s->path)) < 0)
        goto out;
    if (linkat(tdir, tbase, ndir, nbase, 0) < 0)
        error = ps_error_errno(errno, "%.512s: link to %.512s", s->path, s->target);
out:
    if (ndir >= 0)
        close(ndir);
    close(tdir);
    return error;
}

/* One header: check it, record it, and consume or write its data. */
static int scan_entry(scan *s, struct archive_entry *entry)
{
    const char *raw = archive_entry_pathname(entry);
    char what[64];
    int error;

    snprintf(what, sizeof(what), "entry #%llu", (unsigned long long)s->entries + 1);
    if (++s->entries > s->lim.max_entries)
        return ps_error_set(PKGSTORE_ELIMIT, "%.512s: more than %llu entries",
                            raw ? raw : what, (unsigned long long)s->lim.max_entries);
    if (!raw)
        return ps_error_set(PKGSTORE_EFORMAT, "%s: no path name (or not valid in this locale)",
                            what);
    if (s->mode == SCAN_LIST) {
        if ((error = list_add(s->list, entry, raw)) < 0)
            return error;
        archive_read_data_skip(s->a);
        return 0;
    }

    if ((error = normalize_path(s->path, sizeof(s->path), raw, what)) < 0)
        return error;
    pkgstore_archive_entry_type type = entry_type(entry);
    const char *link = NULL;

    if (type == PKGSTORE_ENTRY_OTHER)
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: %s refused", raw, other_type_name(entry));
    if (!s->path[0] && type != PKGSTORE_ENTRY_DIR)
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: names the extraction directory itself", raw);
    if ((error = check_parents(s)) < 0)
        return error;
    if (type == PKGSTORE_ENTRY_SYMLINK) {
        link = archive_entry_symlink(entry);
        if (!link || !*link)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink with an empty target", raw);
        if (strlen(link) > MAX_PATH_LEN)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink target too long", raw);
        /* Early, order-independent check; chains are checked at the end. */
        if ((error = resolve_symlink(&s->res, &(node_map){0}, s->path, link)) < 0)
            return error;
    } else if (type == PKGSTORE_ENTRY_HARDLINK) {
        const char *hl = archive_entry_hardlink(entry);
        if (normalize_path(s->target, sizeof(s->target), hl, raw) < 0 || !s->target[0])
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: hard link to %.512s leaves the extraction directory",
                                raw, hl);
        const node *t = map_find(&s->map, s->target, strlen(s->target));
        if (!t || t->type != PKGSTORE_ENTRY_FILE)
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: hard link to %.512s, which is not an earlier regular file",
                                raw, hl);
    }
    /* Refuse early what the header admits to; the data is measured too. */
    if (type == PKGSTORE_ENTRY_FILE && archive_entry_size(entry) > 0 &&
        (error = check_size(s, raw, (uint64_t)archive_entry_size(entry))) < 0)
        return error;
    if (type == PKGSTORE_ENTRY_FILE && (archive_entry_perm(entry) & 0111)) {
        if (++s->executables == 1)
            snprintf(s->sole_executable, sizeof(s->sole_executable), "%s", s->path);
    }

    if (s->path[0] && (error = map_put(&s->map, s->path,
                                       type == PKGSTORE_ENTRY_HARDLINK ? PKGSTORE_ENTRY_FILE : type,
                                       link)) < 0)
        return error;

    if (s->mode == SCAN_EXTRACT) {
        int want = !s->entrypoint || strcmp(s->entrypoint, s->path) == 0;
        if (s->entrypoint && want && type != PKGSTORE_ENTRY_FILE) {
            /* A later entry replaced the entrypoint with a non-file: the
             * final-state check below reports it. */
            want = 0;
        }
        if (want) {
            switch (type) {
            case PKGSTORE_ENTRY_FILE:
                error = extract_file(s, entry);
                if (error == 0 && s->entrypoint)
                    s->entrypoint_written = 1;
                return error;
            case PKGSTORE_ENTRY_DIR: error = extract_dir(s, entry); break;
            case PKGSTORE_ENTRY_SYMLINK: error = extract_symlink(s, link); break;
            case PKGSTORE_ENTRY_HARDLINK: error = extract_hardlink(s); break;
            default: break;
            }
            if (error < 0)
                return error;
        }
        if (type == PKGSTORE_ENTRY_FILE) {
            /* Not written: skip the data, but count what the header says. */
            int64_t size = archive_entry_size(entry);
            if (size > 0 && (error = check_size(s, s->path, (uint64_t)size)) < 0)
                return error;
            if (size > 0)
                s->expanded += (uint64_t)size;
            if (archive_read_data_skip(s->a) != ARCHIVE_OK)
                return reader_error(s->a, s->src, s->path);
        }
        return 0;
    }
    /* SCAN_VALIDATE: measure the data itself. */
    if (type == PKGSTORE_ENTRY_FILE)
        return consume_data(s, -1, s->path);
    return 0;
}

/* After all headers: the final tree's symlinks must all stay inside, and
 * the entrypoint must be a regular file. */
static int scan_finish(scan *s)
{
    int error;
    if (s->mode == SCAN_LIST)
        return 0;
    if (s->map.symlinks) {
        for (size_t i = 0; i < s->map.cap; i++) {
            const node *n = &s->map.slots[i];
            if (n->path && n->type == PKGSTORE_ENTRY_SYMLINK &&
                (error = resolve_symlink(&s->res, &s->map, n->path, n->target)) < 0)
                return error;
        }
    }
    if (s->entrypoint) {
        const node *n = map_find(&s->map, s->entrypoint, strlen(s->entrypoint));
        if (!n)
            return ps_error_set(PKGSTORE_ENOTFOUND, "entrypoint %.512s: not in the archive",
                                s->entrypoint);
        if (n->type != PKGSTORE_ENTRY_FILE)
            return ps_error_set(PKGSTORE_EINVALID, "entrypoint %.512s: not a regular file",
                                s->entrypoint);
        if (s->mode == SCAN_EXTRACT && !s->entrypoint_written)
            return ps_error_set(PKGSTORE_EINVALID,
                                "entrypoint %.512s: a hard link, not a regular file",
                                s->entrypoint);
    }
    return 0;
}

static int scan_run(scan *s, int fd)
{
    source src;
    struct archive_entry *entry;
    pkgstore_archive_format format = PKGSTORE_ARCHIVE_UNKNOWN;
    int error;

    if ((error = pkgstore_archive_detect_fd(&format, fd)) < 0)
        return error;
    if (!pkgstore_archive_format_is_archive(format))
        return ps_error_set(PKGSTORE_EFORMAT, "not an archive (a plain binary)");
    if (s->list)
        s->list->format = format;
    if ((error = reader_open_fd(&s->a, &src, fd)) < 0)
        return error;
    s->src = &src;
    s->archive_size = (uint64_t)src.size;
    s->res.budget = RESOLVE_BUDGET;
    for (;;) {
        int r = archive_read_next_header(s->a, &entry);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64];
            snprintf(what, sizeof(what), "entry #%llu", (unsigned long long)s->entries + 1);
            error = reader_error(s->a, &src, what);
            goto out;
        }
        if ((error = scan_entry(s, entry)) < 0)
            goto out;
    }
    error = scan_finish(s);
out:
    reader_close(s->a, &src);
    s->a = NULL;
    s->src = NULL;
    return error;
}

static void scan_free(scan *s)
{
    map_free(&s->map);
}

/* ------------------------------------------------------------ listing */

PKGSTORE_API int pkgstore_archive_list_fd(pkgstore_archive_list **out, int fd,
                                          const pkgstore_archive_options *opts)
{
    scan s;
    int error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "archive list: NULL out");
    *out = NULL;
    memset(&s, 0, sizeof(s));
    s.mode = SCAN_LIST;
    s.root_fd = -1;
    if ((error = limits_from(&s.lim, opts)) < 0)
        return error;
    s.list = calloc(1, sizeof(*s.list));
    if (!s.list)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    error = scan_run(&s, fd);
    scan_free(&s);
    if (error < 0) {
        pkgstore_archive_list_free(s.list);
        return error;
    }
    *out = s.list; /* now owned by the caller */
    return 0;
}

PKGSTORE_API int pkgstore_archive_list_file(pkgstore_archive_list **out, const char *path,
                                            const pkgstore_archive_options *opts)
{
    int fd, error;
    if (out)
        *out = NULL;
    if ((error = open_input(&fd, path)) < 0)
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

/* ------------------------------------------------------------ validation */

static void fill_info(pkgstore_archive_info *info, const scan *s, pkgstore_archive_format format)
{
    if (!info)
        return;
    memset(info, 0, sizeof(*info));
    info->format = format;
    info->entries = s->entries;
    info->total_size = s->expanded;
    info->archive_size = s->archive_size;
    info->executables = s->executables;
    if (s->executables == 1)
        snprintf(info->sole_executable, sizeof(info->sole_executable), "%s", s->sole_executable);
}

static int prepare_entrypoint(char *out, size_t size, const char *entrypoint)
{
    int error = normalize_path(out, size, entrypoint, "entrypoint");
    if (error < 0) {
        ps_error_prefix("entrypoint");
        return PKGSTORE_EINVALID;
    }
    if (!out[0])
        return ps_error_set(PKGSTORE_EINVALID, "entrypoint '%.512s': names no file", entrypoint);
    return 0;
}

PKGSTORE_API int pkgstore_archive_validate_fd(pkgstore_archive_info *info_out, int fd,
                                              const char *entrypoint,
                                              const pkgstore_archive_options *opts)
{
    char ep[MAX_PATH_LEN + 1];
    pkgstore_archive_format format = PKGSTORE_ARCHIVE_UNKNOWN;
    scan *s;
    int error;

    if (info_out)
        memset(info_out, 0, sizeof(*info_out));
    if (fd < 0)
        return ps_error_set(PKGSTORE_EINVALID, "archive validate: bad fd");
    if (entrypoint && (error = prepare_entrypoint(ep, sizeof(ep), entrypoint)) < 0)
        return error;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    s->mode = SCAN_VALIDATE;
    s->root_fd = -1;
    s->entrypoint = entrypoint ? ep : NULL;
    if ((error = limits_from(&s->lim, opts)) == 0) {
        pkgstore_archive_detect_fd(&format, fd);
        error = scan_run(s, fd);
    }
    fill_info(info_out, s, format);
    scan_free(s);
    free(s);
    return error;
}

PKGSTORE_API int pkgstore_archive_validate_file(pkgstore_archive_info *info_out,
                                                const char *path, const char *entrypoint,
                                                const pkgstore_archive_options *opts)
{
    int fd, error;
    if (info_out)
        memset(info_out, 0, sizeof(*info_out));
    if ((error = open_input(&fd, path)) < 0)
        return error;
    error = pkgstore_archive_validate_fd(info_out, fd, entrypoint, opts);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", path);
    return error;
}

/* ------------------------------------------------------------ removal */

static int remove_at(int parent_fd, const char *name, int depth)
{
    struct stat st;
    if (depth > 256)
        return ps_error_set(PKGSTORE_EIO, "%s: directory tree too deep to remove", name);
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ps_error_errno(errno, "%s: stat", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT)
            return ps_error_errno(errno, "%s: unlink", name);
        return 0;
    }
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        /* A directory extracted without owner permission bits. */
        fchmodat(parent_fd, name, 0700, 0);
        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return ps_error_errno(errno, "%s: open", name);
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int err = errno;
        close(fd);
        return ps_error_errno(err, "%s: opendir", name);
    }
    int error = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int e = remove_at(dirfd(dir), de->d_name, depth + 1);
        if (e < 0 && error == 0)
            error = e;
    }
    closedir(dir);
    if (error == 0 && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        error = ps_error_errno(errno, "%s: rmdir", name);
    return error;
}

PKGSTORE_API int pkgstore_archive_remove_tree(const char *dir)
{
    if (!dir || !*dir)
        return ps_error_set(PKGSTORE_EINVALID, "remove: empty path");
    int error = remove_at(AT_FDCWD, dir, 0);
    if (error < 0)
        ps_error_prefix("remove %s", dir);
    return error;
}

/* ------------------------------------------------------------ extraction */

static char *join_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + 1 + lb + 1);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

PKGSTORE_API int pkgstore_archive_extract_fd(char **dir_out, char **file_out, int fd,
                                             const char *parent_dir, const char *entrypoint,
                                             const pkgstore_archive_options *opts)
{
    char ep[MAX_PATH_LEN + 1];
    char *dir = NULL, *file = NULL;
    scan *s = NULL;
    int error;

    if (dir_out)
        *dir_out = NULL;
    if (file_out)
        *file_out = NULL;
    if (!dir_out || fd < 0 || !parent_dir || !*parent_dir)
        return ps_error_set(PKGSTORE_EINVALID, "archive extract: bad argument");
    if (entrypoint && (error = prepare_entrypoint(ep, sizeof(ep), entrypoint)) < 0)
        return error;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    s->mode = SCAN_EXTRACT;
    s->root_fd = -1;
    s->entrypoint = entrypoint ? ep : NULL;
    if ((error = limits_from(&s->lim, opts)) < 0)
        goto out;

    dir = join_path(parent_dir, "extract.XXXXXX");
    if (!dir) {
        error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
        goto out;
    }
    if (!mkdtemp(dir)) {
        error = ps_error_errno(errno, "%s: mkdtemp", parent_dir);
        free(dir);
        dir = NULL;
        goto out;
    }
    s->root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->root_fd < 0) {
        error = ps_error_errno(errno, "%s: open", dir);
        goto out;
    }
    if ((error = scan_run(s, fd)) < 0)
        goto out;
    if (entrypoint && file_out) {
        file = join_path(dir, ep);
        if (!file) {
            error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
            goto out;
        }
    }
out:
    if (s) {
        if (s->root_fd >= 0)
            close(s->root_fd);
        scan_free(s);
        free(s);
    }
    if (error < 0) {
        if (dir) {
            char saved[1024];
            snprintf(saved, sizeof(saved), "%s", pkgstore_error_detail());
            pkgstore_archive_remove_tree(dir);
            ps_error_set(error, "%s", saved);
        }
        free(dir);
        free(file);
        return error;
    }
    *dir_out = dir; /* now owned by the caller */
    if (file_out)
        *file_out = file;
    else
        free(file);
    return 0;
}

PKGSTORE_API int pkgstore_archive_extract_file(char **dir_out, char **file_out,
                                               const char *archive_path,
                                               const char *parent_dir, const char *entrypoint,
                                               const pkgstore_archive_options *opts)
{
    int fd, error;
    if (dir_out)
        *dir_out = NULL;
    if (file_out)
        *file_out = NULL;
    if ((error = open_input(&fd, archive_path)) < 0)
        return error;
    error = pkgstore_archive_extract_fd(dir_out, file_out, fd, parent_dir, entrypoint, opts);
    close(fd);
    if (error < 0)
        ps_error_prefix("%s", archive_path);
    return error;
}
