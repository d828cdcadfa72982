/*
 * Tests for the archive module. Every archive, the attacks included, is
 * built here at run time with libarchive's writer, and every extraction
 * goes into <tmp>/parent beside a <tmp>/victim directory: after each case
 * nothing may appear outside <tmp>/parent, and a refused extraction must
 * leave <tmp>/parent empty.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pkgstore.h"

typedef struct fixture {
    char root[256];
    char parent[300];
    char victim[300];
    char archive[300];
} fixture;

/* ------------------------------------------------------------ helpers */

enum { FMT_TAR, FMT_TGZ, FMT_TZST, FMT_TXZ, FMT_ZIP };

typedef struct spec {
    const char *path;
    char type;        /* f file, d dir, l symlink, h hardlink, c chr, b blk, p fifo */
    const char *data; /* file content, or link target */
    unsigned int mode;
    int64_t zeros;    /* file of this many zero bytes instead of data */
} spec;

static void make_archive(const char *out, int fmt, const spec *specs, size_t n)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    if (fmt == FMT_ZIP) {
        assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    } else {
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (fmt == FMT_TGZ)
            assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        if (fmt == FMT_TZST)
            assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        if (fmt == FMT_TXZ)
            assert_int_equal(archive_write_add_filter_xz(a), ARCHIVE_OK);
    }
    assert_int_equal(archive_write_open_filename(a, out), ARCHIVE_OK);
    static char zeros[65536];
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        const spec *s = &specs[i];
        archive_entry_set_pathname(e, s->path);
        archive_entry_set_perm(e, s->mode ? s->mode : 0644);
        archive_entry_set_mtime(e, 1000000, 0);
        switch (s->type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, s->zeros ? s->zeros : (int64_t)strlen(s->data ? s->data : ""));
            break;
        case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, s->data);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, s->data);
            archive_entry_set_size(e, 0);
            break;
        case 'c': archive_entry_set_filetype(e, AE_IFCHR); archive_entry_set_rdev(e, makedev(1, 3)); break;
        case 'b': archive_entry_set_filetype(e, AE_IFBLK); archive_entry_set_rdev(e, makedev(8, 0)); break;
        case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
        default: fail_msg("bad spec type %c", s->type);
        }
        int r = archive_write_header(a, e);
        assert_true(r == ARCHIVE_OK || r == ARCHIVE_WARN);
        if (s->type == 'f') {
            if (s->zeros) {
                for (int64_t left = s->zeros; left > 0;) {
                    size_t chunk = left > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)left;
                    assert_int_equal(archive_write_data(a, zeros, chunk), (la_ssize_t)chunk);
                    left -= (int64_t)chunk;
                }
            } else if (s->data && *s->data) {
                assert_int_equal(archive_write_data(a, s->data, strlen(s->data)),
                                 (la_ssize_t)strlen(s->data));
            }
        }
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* A ustar header block (libarchive's writer never writes a sparse map
 * that points past the file's size, so such an attack is written here). */
static void tar_header(FILE *f, const char *name, char type, size_t size, unsigned int mode)
{
    unsigned char h[512] = {0};
    unsigned int sum = 0;
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011zo", size);
    snprintf((char *)h + 136, 12, "%011o", 1000000);
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar\0" "00", 8);
    for (size_t i = 0; i < sizeof(h); i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    assert_int_equal(fwrite(h, 1, sizeof(h), f), sizeof(h));
}

/* Data padded to whole blocks. */
static void tar_data(FILE *f, const char *data, size_t len)
{
    static const char zeros[512];
    assert_int_equal(fwrite(data, 1, len, f), len);
    if (len % 512)
        assert_int_equal(fwrite(zeros, 1, 512 - len % 512, f), 512 - len % 512);
}

/* A PAX (GNU 0.1) sparse file: declared_size bytes with the 5 bytes
 * "hello" at offset data_offset. */
static void make_sparse_tar(const char *out, const char *name, const char *declared_size,
                            const char *data_offset)
{
    char pax[512], rec[128];
    const char *keys[][2] = {{"GNU.sparse.major", "0"},    {"GNU.sparse.minor", "1"},
                             {"GNU.sparse.size", declared_size}, {"GNU.sparse.map", NULL},
                             {"GNU.sparse.numblocks", "1"}};
    char map[64];
    size_t len = 0;
    snprintf(map, sizeof(map), "%s,5", data_offset);
    keys[3][1] = map;
    for (size_t i = 0; i < 5; i++) {
        /* "<n> key=value\n", n counting its own digits. */
        size_t body = strlen(keys[i][0]) + strlen(keys[i][1]) + 3, n = body + 1;
        while (snprintf(rec, sizeof(rec), "%zu", n) + body != n)
            n++;
        len += (size_t)snprintf(pax + len, sizeof(pax) - len, "%zu %s=%s\n", n, keys[i][0], keys[i][1]);
    }
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    tar_header(f, "PaxHeader", 'x', len, 0644);
    tar_data(f, pax, len);
    tar_header(f, name, '0', 5, 0755);
    tar_data(f, "hello", 5);
    static const char end[1024];
    assert_int_equal(fwrite(end, 1, sizeof(end), f), sizeof(end));
    fclose(f);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (len_out)
        *len_out = n;
    return buf;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Nothing outside parent: root holds parent, victim and the archive only,
 * victim holds only its canary. */
static void assert_nothing_outside(const fixture *fx)
{
    assert_int_equal(count_entries(fx->root), 3);
    assert_int_equal(count_entries(fx->victim), 1);
    char canary[400];
    snprintf(canary, sizeof(canary), "%s/canary", fx->victim);
    char *content = read_file(canary, NULL);
    assert_non_null(content);
    assert_string_equal(content, "untouched");
    free(content);
}

static void rm_rf(const char *path)
{
    pkgstore_archive_remove_tree(path);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fx->root, sizeof(fx->root), "%s/test_archive.XXXXXX", tmp);
    if (!mkdtemp(fx->root))
        return -1;
    snprintf(fx->parent, sizeof(fx->parent), "%s/parent", fx->root);
    snprintf(fx->victim, sizeof(fx->victim), "%s/victim", fx->root);
    snprintf(fx->archive, sizeof(fx->archive), "%s/a.archive", fx->root);
    mkdir(fx->parent, 0755);
    mkdir(fx->victim, 0755);
    char canary[400];
    snprintf(canary, sizeof(canary), "%s/canary", fx->victim);
    write_file(canary, "untouched", 9, 0644);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rm_rf(fx->root);
    free(fx);
    return 0;
}

/* Extraction of an attack must fail with code and leave nothing behind. */
static void expect_refused(fixture *fx, const char *entrypoint, int code, const char *detail_part)
{
    char *dir = (char *)0x1, *file = (char *)0x1;
    int r = pkgstore_archive_extract_file(&dir, &file, fx->archive, fx->parent, entrypoint, NULL);
    if (r != code)
        fail_msg("extract: expected %d, got %d (%s)", code, r, pkgstore_error_detail());
    assert_null(dir);
    assert_null(file);
    if (detail_part && !strstr(pkgstore_error_detail(), detail_part))
        fail_msg("detail '%s' lacks '%s'", pkgstore_error_detail(), detail_part);
    assert_int_equal(count_entries(fx->parent), 0);
    assert_nothing_outside(fx);
    /* Upload-time validation refuses it too. */
    assert_int_equal(pkgstore_archive_validate_file(NULL, fx->archive, entrypoint, NULL), code);
}

static const spec good_specs[] = {
    {"otelcol", 'f', "#!/bin/sh\necho otelcol\n", 0755, 0},
    {"README.md", 'f', "read me\n", 0644, 0},
    {"conf", 'd', NULL, 0755, 0},
    {"conf/config.yaml", 'f', "receivers: {}\n", 0600, 0},
    {"conf/link", 'l', "config.yaml", 0777, 0},
};
#define NGOOD (sizeof(good_specs) / sizeof(good_specs[0]))

/* ------------------------------------------------------------ detection */

static void test_archive__format_names(void **state)
{
    (void)state;
    static const char *names[] = {"binary", "tar", "tar+gzip", "tar+zstd", "tar+xz", "zip"};
    for (size_t i = 0; i < 6; i++) {
        pkgstore_archive_format f;
        assert_int_equal(pkgstore_archive_format_parse(&f, names[i]), 0);
        assert_string_equal(pkgstore_archive_format_name(f), names[i]);
        assert_int_equal(pkgstore_archive_format_is_archive(f), i > 0);
    }
    pkgstore_archive_format f = PKGSTORE_ARCHIVE_TAR;
    assert_int_equal(pkgstore_archive_format_parse(&f, "tar.gz"), PKGSTORE_EINVALID);
    assert_int_equal(f, PKGSTORE_ARCHIVE_UNKNOWN);
    assert_non_null(strstr(pkgstore_error_detail(), "tar.gz"));
    assert_string_equal(pkgstore_archive_format_name((pkgstore_archive_format)42), "unknown");
}

static void test_archive__detect_each_format(void **state)
{
    fixture *fx = *state;
    static const struct { int fmt; pkgstore_archive_format want; } cases[] = {
        {FMT_TAR, PKGSTORE_ARCHIVE_TAR},       {FMT_TGZ, PKGSTORE_ARCHIVE_TAR_GZIP},
        {FMT_TZST, PKGSTORE_ARCHIVE_TAR_ZSTD}, {FMT_TXZ, PKGSTORE_ARCHIVE_TAR_XZ},
        {FMT_ZIP, PKGSTORE_ARCHIVE_ZIP},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pkgstore_archive_format f = PKGSTORE_ARCHIVE_UNKNOWN;
        make_archive(fx->archive, cases[i].fmt, good_specs, NGOOD);
        assert_int_equal(pkgstore_archive_detect_file(&f, fx->archive), 0);
        assert_int_equal(f, cases[i].want);
        size_t len;
        char *data = read_file(fx->archive, &len);
        f = PKGSTORE_ARCHIVE_UNKNOWN;
        assert_int_equal(pkgstore_archive_detect_buffer(&f, data, len), 0);
        assert_int_equal(f, cases[i].want);
        /* The fd variant leaves the file offset alone. */
        int fd = open(fx->archive, O_RDONLY);
        assert_int_equal(lseek(fd, 7, SEEK_SET), 7);
        assert_int_equal(pkgstore_archive_detect_fd(&f, fd), 0);
        assert_int_equal(f, cases[i].want);
        assert_int_equal(lseek(fd, 0, SEEK_CUR), 7);
        close(fd);
        free(data);
    }
}

static void test_archive__detect_binary(void **state)
{
    fixture *fx = *state;
    pkgstore_archive_format f;
    unsigned char elf[4096] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    write_file(fx->archive, elf, sizeof(elf), 0755);
    assert_int_equal(pkgstore_archive_detect_file(&f, fx->archive), 0);
    assert_int_equal(f, PKGSTORE_ARCHIVE_BINARY);
    assert_int_equal(pkgstore_archive_detect_buffer(&f, "#!/bin/sh\nexit 0\n", 17), 0);
    assert_int_equal(f, PKGSTORE_ARCHIVE_BINARY);
    /* Pseudo-random bytes without any magic are a binary too. */
    unsigned char noise[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x = x * 1103515245u + 12345u;
        noise[i] = (unsigned char)(x >> 16);
    }
    noise[0] = 'Q';
    assert_int_equal(pkgstore_archive_detect_buffer(&f, noise, sizeof(noise)), 0);
    assert_int_equal(f, PKGSTORE_ARCHIVE_BINARY);
    /* Listing or extracting a binary is a format error. */
    pkgstore_archive_list *list = (pkgstore_archive_list *)0x1;
    assert_int_equal(pkgstore_archive_list_file(&list, fx->archive, NULL), PKGSTORE_EFORMAT);
    assert_null(list);
}

static void test_archive__detect_refuses_odd_content(void **state)
{
    fixture *fx = *state;
    pkgstore_archive_format f = PKGSTORE_ARCHIVE_TAR;
    write_file(fx->archive, "", 0, 0644);
    assert_int_equal(pkgstore_archive_detect_file(&f, fx->archive), PKGSTORE_EFORMAT);
    assert_int_equal(f, PKGSTORE_ARCHIVE_UNKNOWN);
    assert_int_equal(pkgstore_archive_detect_buffer(&f, "BZh91AY&SY", 10), PKGSTORE_EFORMAT);
    assert_non_null(strstr(pkgstore_error_detail(), "bzip2"));

    /* gzip of something that is not a tar. */
    struct archive *a = archive_write_new();
    archive_write_set_format_raw(a);
    archive_write_add_filter_gzip(a);
    assert_int_equal(archive_write_open_filename(a, fx->archive), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_pathname(e, "x");
    archive_entry_set_size(e, 2000);
    archive_write_header(a, e);
    char junk[2000];
    memset(junk, 'j', sizeof(junk));
    archive_write_data(a, junk, sizeof(junk));
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    assert_int_equal(pkgstore_archive_detect_file(&f, fx->archive), PKGSTORE_EFORMAT);
    assert_non_null(strstr(pkgstore_error_detail(), "not a tar"));

    /* A truncated tar.gz. */
    make_archive(fx->archive, FMT_TGZ, good_specs, NGOOD);
    assert_int_equal(truncate(fx->archive, 12), 0);
    assert_int_equal(pkgstore_archive_detect_file(&f, fx->archive), PKGSTORE_EFORMAT);

    assert_int_equal(pkgstore_archive_detect_file(&f, "/nonexistent/x"), PKGSTORE_ENOTFOUND);
}

static void test_archive__fd_variants_keep_offset(void **state)
{
    fixture *fx = *state;
    make_archive(fx->archive, FMT_ZIP, good_specs, NGOOD);
    int fd = open(fx->archive, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 13, SEEK_SET), 13);
    pkgstore_archive_list *list = NULL;
    assert_int_equal(pkgstore_archive_list_fd(&list, fd, NULL), 0);
    assert_int_equal(pkgstore_archive_list_count(list), NGOOD);
    pkgstore_archive_list_free(list);
    pkgstore_archive_info *info = NULL;
    assert_int_equal(pkgstore_archive_validate_fd(&info, fd, "otelcol", NULL), 0);
    assert_int_equal(pkgstore_archive_info_format(info), PKGSTORE_ARCHIVE_ZIP);
    pkgstore_archive_info_free(info);
    char *dir = NULL, *file = NULL;
    assert_int_equal(pkgstore_archive_extract_fd(&dir, &file, fd, fx->parent, "otelcol", NULL), 0);
    assert_int_equal(access(file, X_OK), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 13);
    close(fd);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
    pkgstore_free(file);
    /* Bad arguments. */
    assert_int_equal(pkgstore_archive_extract_fd(&dir, NULL, -1, fx->parent, NULL, NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_archive_validate_fd(NULL, -1, NULL, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, "/nonexistent/dir",
                                                   NULL, NULL), PKGSTORE_ENOTFOUND);
}

/* ------------------------------------------------------------ listing */

static void test_archive__list_entries(void **state)
{
    fixture *fx = *state;
    static const int fmts[] = {FMT_TAR, FMT_TZST, FMT_ZIP};
    for (size_t k = 0; k < 3; k++) {
        pkgstore_archive_list *list = NULL;
        make_archive(fx->archive, fmts[k], good_specs, NGOOD);
        assert_int_equal(pkgstore_archive_list_file(&list, fx->archive, NULL), 0);
        assert_int_equal(pkgstore_archive_list_count(list), NGOOD);
        const pkgstore_archive_entry *e = pkgstore_archive_list_get(list, 0);
        assert_string_equal(e->path, "otelcol");
        assert_int_equal(e->type, PKGSTORE_ENTRY_FILE);
        assert_int_equal(e->size, strlen(good_specs[0].data));
        assert_int_equal(e->mode, 0755);
        assert_null(e->link_target);
        e = pkgstore_archive_list_get(list, 2);
        assert_int_equal(e->type, PKGSTORE_ENTRY_DIR);
        assert_string_equal(e->path, "conf/");
        e = pkgstore_archive_list_get(list, 3);
        assert_int_equal(e->mode, 0600);
        e = pkgstore_archive_list_get(list, 4);
        assert_int_equal(e->type, PKGSTORE_ENTRY_SYMLINK);
        assert_string_equal(e->link_target, "config.yaml");
        assert_null(pkgstore_archive_list_get(list, NGOOD));
        pkgstore_archive_list_free(list);
    }
    pkgstore_archive_list_free(NULL);
}

static void test_archive__list_shows_unsafe_entries(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"../evil", 'f', "x", 0644, 0},
        {"dev", 'c', NULL, 0600, 0},
        {"h", 'h', "../evil", 0644, 0},
    };
    pkgstore_archive_list *list = NULL;
    make_archive(fx->archive, FMT_TAR, specs, 3);
    assert_int_equal(pkgstore_archive_list_file(&list, fx->archive, NULL), 0);
    assert_int_equal(pkgstore_archive_list_count(list), 3);
    assert_int_equal(pkgstore_archive_list_format(list), PKGSTORE_ARCHIVE_TAR);
    assert_string_equal(pkgstore_archive_list_get(list, 0)->path, "../evil");
    assert_int_equal(pkgstore_archive_list_get(list, 1)->type, PKGSTORE_ENTRY_OTHER);
    assert_int_equal(pkgstore_archive_list_get(list, 2)->type, PKGSTORE_ENTRY_HARDLINK);
    assert_string_equal(pkgstore_archive_list_get(list, 2)->link_target, "../evil");
    pkgstore_archive_list_free(list);
}

/* ------------------------------------------------------------ extraction */

static void test_archive__extract_all_keeps_exec_bit(void **state)
{
    fixture *fx = *state;
    static const int fmts[] = {FMT_TAR, FMT_TGZ, FMT_TZST, FMT_TXZ, FMT_ZIP};
    for (size_t k = 0; k < 5; k++) {
        char *dir = NULL, *file = NULL, path[600];
        struct stat st;
        make_archive(fx->archive, fmts[k], good_specs, NGOOD);
        assert_int_equal(pkgstore_archive_extract_file(&dir, &file, fx->archive, fx->parent, NULL,
                                                       NULL), 0);
        assert_non_null(dir);
        assert_null(file);
        assert_ptr_equal(strstr(dir, fx->parent), dir);
        snprintf(path, sizeof(path), "%s/otelcol", dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0755);
        char *content = read_file(path, NULL);
        assert_string_equal(content, good_specs[0].data);
        free(content);
        snprintf(path, sizeof(path), "%s/conf/config.yaml", dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        snprintf(path, sizeof(path), "%s/conf/link", dir);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        content = read_file(path, NULL); /* through the link */
        assert_string_equal(content, "receivers: {}\n");
        free(content);
        assert_int_equal(pkgstore_archive_remove_tree(dir), 0);
        pkgstore_free(dir);
        assert_int_equal(count_entries(fx->parent), 0);
        assert_nothing_outside(fx);
    }
}

static void test_archive__extract_entrypoint_only(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"README", 'f', "r", 0644, 0},
        {"./bin//otelcol-contrib", 'f', "#!/bin/sh\n", 0755, 0},
        {"lib/x.so", 'f', "so", 0644, 0},
    };
    char *dir = NULL, *file = NULL, path[600];
    struct stat st;
    make_archive(fx->archive, FMT_TZST, specs, 3);
    assert_int_equal(pkgstore_archive_extract_file(&dir, &file, fx->archive, fx->parent,
                                                   "bin/otelcol-contrib", NULL), 0);
    snprintf(path, sizeof(path), "%s/bin/otelcol-contrib", dir);
    assert_string_equal(file, path);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    assert_int_equal(count_entries(dir), 1);
    snprintf(path, sizeof(path), "%s/bin", dir);
    assert_int_equal(count_entries(path), 1);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
    pkgstore_free(file);

    /* Missing entrypoint, entrypoint that is a directory, odd names. */
    expect_refused(fx, "bin/otelcol", PKGSTORE_ENOTFOUND, "not in the archive");
    expect_refused(fx, "lib", PKGSTORE_ENOTFOUND, "not in the archive"); /* implicit dir */
    char *d2 = NULL;
    assert_int_equal(pkgstore_archive_extract_file(&d2, NULL, fx->archive, fx->parent, "../x", NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_archive_extract_file(&d2, NULL, fx->archive, fx->parent, "/bin/sh", NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(count_entries(fx->parent), 0);
}

static void test_archive__entrypoint_symlink_refused(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"real", 'f', "#!/bin/sh\n", 0755, 0},
        {"otelcol", 'l', "real", 0777, 0},
    };
    make_archive(fx->archive, FMT_TAR, specs, 2);
    expect_refused(fx, "otelcol", PKGSTORE_EINVALID, "not a regular file");
    /* A hard link as the entrypoint, in validation as in extraction. */
    static const spec hard[] = {
        {"real", 'f', "#!/bin/sh\n", 0755, 0},
        {"otelcol", 'h', "real", 0755, 0},
    };
    make_archive(fx->archive, FMT_TAR, hard, 2);
    expect_refused(fx, "otelcol", PKGSTORE_EINVALID, "a hard link");
}

static void test_archive__later_entry_replaces_earlier(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"otelcol", 'f', "old", 0644, 0},
        {"otelcol", 'f', "new", 0755, 0},
    };
    char *dir = NULL, *file = NULL;
    make_archive(fx->archive, FMT_TAR, specs, 2);
    assert_int_equal(pkgstore_archive_extract_file(&dir, &file, fx->archive, fx->parent, "otelcol",
                                                   NULL), 0);
    char *content = read_file(file, NULL);
    assert_string_equal(content, "new");
    free(content);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
    pkgstore_free(file);

    /* A directory is never replaced by a file: validation and both
     * extraction modes agree. */
    static const spec over_dir[] = {
        {"otelcol", 'f', "x", 0755, 0},
        {"conf", 'd', NULL, 0755, 0},
        {"conf", 'f', "y", 0644, 0},
    };
    make_archive(fx->archive, FMT_TAR, over_dir, 3);
    expect_refused(fx, NULL, PKGSTORE_EFORMAT, "conf: replaces a directory");
    expect_refused(fx, "otelcol", PKGSTORE_EFORMAT, "conf: replaces a directory");

    /* Nor a directory that an earlier path only implied: validation and
     * entrypoint-only extraction must not hand out bin/otelcol when the
     * archive finally makes bin a symlink (or a file). */
    static const spec over_implied[] = {
        {"bin/otelcol", 'f', "x", 0755, 0},
        {"sbin/otelcol", 'f', "y", 0755, 0},
        {"bin", 'l', "sbin", 0777, 0},
    };
    make_archive(fx->archive, FMT_TAR, over_implied, 3);
    expect_refused(fx, NULL, PKGSTORE_EFORMAT, "bin: replaces a directory");
    expect_refused(fx, "bin/otelcol", PKGSTORE_EFORMAT, "bin: replaces a directory");
    static const spec file_over_implied[] = {
        {"bin/otelcol", 'f', "x", 0755, 0},
        {"bin", 'f', "y", 0755, 0},
    };
    make_archive(fx->archive, FMT_ZIP, file_over_implied, 2);
    expect_refused(fx, NULL, PKGSTORE_EFORMAT, "bin: replaces a directory");
    expect_refused(fx, "bin/otelcol", PKGSTORE_EFORMAT, "bin: replaces a directory");
    /* ... even when a still later entry makes it a directory again, so
     * that the final state looks sound: extraction met the symlink while
     * bin was a directory on disk (found by fuzz_archive). */
    static const spec implied_then_dir[] = {
        {"bin/otelcol", 'f', "x", 0755, 0},
        {"bin", 'l', "sbin", 0777, 0},
        {"bin", 'd', NULL, 0755, 0},
    };
    make_archive(fx->archive, FMT_TAR, implied_then_dir, 3);
    expect_refused(fx, NULL, PKGSTORE_EFORMAT, "bin: replaces a directory");
    expect_refused(fx, "bin/otelcol", PKGSTORE_EFORMAT, "bin: replaces a directory");
}

/* ------------------------------------------------------------ attacks */

static void test_archive__refuses_absolute_path(void **state)
{
    fixture *fx = *state;
    char evil[400];
    snprintf(evil, sizeof(evil), "%s/pwned", fx->victim);
    spec specs[] = {{"ok", 'f', "fine", 0644, 0}, {evil, 'f', "pwned", 0644, 0}};
    make_archive(fx->archive, FMT_TAR, specs, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "absolute path");
    make_archive(fx->archive, FMT_ZIP, specs, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "absolute path");
}

static void test_archive__refuses_dotdot(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"ok", 'f', "fine", 0644, 0},
        {"sub/../../victim/pwned", 'f', "pwned", 0644, 0},
    };
    make_archive(fx->archive, FMT_TGZ, specs, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "sub/../../victim/pwned");
    /* Refused even when only the entrypoint is wanted. */
    expect_refused(fx, "ok", PKGSTORE_EUNSAFE, "'..'");
}

static void test_archive__refuses_symlink_escape_then_write(void **state)
{
    fixture *fx = *state;
    /* The classic: a symlink to the outside, then a file through it. */
    static const spec specs[] = {
        {"l", 'l', "../../victim", 0777, 0},
        {"l/pwned", 'f', "pwned", 0644, 0},
    };
    make_archive(fx->archive, FMT_TAR, specs, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "leaves the extraction directory");

    char abs_target[400];
    snprintf(abs_target, sizeof(abs_target), "%s", fx->victim);
    spec abs_specs[] = {{"l", 'l', abs_target, 0777, 0}, {"l/pwned", 'f', "pwned", 0644, 0}};
    make_archive(fx->archive, FMT_TAR, abs_specs, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "absolute path");

    /* An inside symlink is still never written through. */
    static const spec through[] = {
        {"d", 'd', NULL, 0755, 0},
        {"l", 'l', "d", 0777, 0},
        {"l/x", 'f', "x", 0644, 0},
    };
    make_archive(fx->archive, FMT_TAR, through, 3);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "passes through symlink");
}

static void test_archive__refuses_symlink_chain(void **state)
{
    fixture *fx = *state;
    /* Each link looks inside on its own; together they climb out:
     * d/l -> .. is the root, e -> d/l/.. is the root's parent. */
    static const spec specs[] = {
        {"d", 'd', NULL, 0755, 0},
        {"d/l", 'l', "..", 0777, 0},
        {"e", 'l', "d/l/..", 0777, 0},
    };
    make_archive(fx->archive, FMT_TAR, specs, 3);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "e: symlink to d/l/..");
    /* A loop is refused too. */
    static const spec loop[] = {{"a", 'l', "b", 0777, 0}, {"b", 'l', "a", 0777, 0}};
    make_archive(fx->archive, FMT_TAR, loop, 2);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "too many levels");
    /* Going up and down inside is fine. */
    static const spec fine[] = {
        {"a/b/f", 'f', "x", 0644, 0},
        {"a/b/l", 'l', "../../a/b/f", 0777, 0},
    };
    char *dir = NULL;
    make_archive(fx->archive, FMT_TAR, fine, 2);
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, NULL, NULL), 0);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
}

static void test_archive__refuses_hardlink_escape(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {{"h", 'h', "../victim/canary", 0644, 0}};
    make_archive(fx->archive, FMT_TAR, specs, 1);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "hard link");

    char abs_target[400];
    snprintf(abs_target, sizeof(abs_target), "%s/canary", fx->victim);
    spec abs_specs[] = {{"h", 'h', abs_target, 0644, 0}};
    make_archive(fx->archive, FMT_TAR, abs_specs, 1);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "hard link");

    /* A hard link to a symlink would move the symlink somewhere else. */
    static const spec via_symlink[] = {
        {"a/b", 'd', NULL, 0755, 0},
        {"a/b/l", 'l', "../..", 0777, 0},
        {"x", 'h', "a/b/l", 0644, 0},
    };
    make_archive(fx->archive, FMT_TAR, via_symlink, 3);
    expect_refused(fx, NULL, PKGSTORE_EUNSAFE, "not an earlier regular file");

    /* A hard link to itself would remove its own target: refused by
     * validation as by extraction. */
    static const spec self[] = {{"f", 'f', "data", 0755, 0}, {"./f", 'h', "f", 0755, 0}};
    make_archive(fx->archive, FMT_TAR, self, 2);
    expect_refused(fx, NULL, PKGSTORE_EFORMAT, "hard link to itself");

    /* A hard link inside is extracted as a link. */
    static const spec fine[] = {{"f", 'f', "data", 0755, 0}, {"g", 'h', "f", 0755, 0}};
    char *dir = NULL, path[600];
    struct stat st;
    make_archive(fx->archive, FMT_TAR, fine, 2);
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, NULL, NULL), 0);
    snprintf(path, sizeof(path), "%s/g", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_nlink, 2);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
}

static void test_archive__refuses_devices_and_fifos(void **state)
{
    fixture *fx = *state;
    static const struct { char type; const char *word; } kinds[] = {
        {'c', "character device"}, {'b', "block device"}, {'p', "FIFO"}};
    for (size_t i = 0; i < 3; i++) {
        spec specs[] = {{"ok", 'f', "x", 0644, 0}, {"node", kinds[i].type, NULL, 0600, 0}};
        make_archive(fx->archive, FMT_TAR, specs, 2);
        expect_refused(fx, NULL, PKGSTORE_EUNSAFE, kinds[i].word);
        expect_refused(fx, "ok", PKGSTORE_EUNSAFE, "node");
    }
}

static void test_archive__refuses_too_many_entries(void **state)
{
    fixture *fx = *state;
    spec specs[20];
    char names[20][16];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof(names[i]), "f%02d", i);
        specs[i] = (spec){names[i], 'f', "x", 0644, 0};
    }
    make_archive(fx->archive, FMT_TAR, specs, 20);
    pkgstore_archive_options opts = PKGSTORE_ARCHIVE_OPTIONS_INIT;
    opts.max_entries = 10;
    char *dir = NULL;
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, NULL, &opts),
                     PKGSTORE_ELIMIT);
    assert_non_null(strstr(pkgstore_error_detail(), "f10: more than 10 entries"));
    assert_int_equal(count_entries(fx->parent), 0);
    assert_int_equal(pkgstore_archive_validate_file(NULL, fx->archive, NULL, &opts), PKGSTORE_ELIMIT);
    pkgstore_archive_list *list = NULL;
    assert_int_equal(pkgstore_archive_list_file(&list, fx->archive, &opts), PKGSTORE_ELIMIT);
    opts.max_entries = 20;
    assert_int_equal(pkgstore_archive_validate_file(NULL, fx->archive, NULL, &opts), 0);
    opts.version = 99;
    assert_int_equal(pkgstore_archive_validate_file(NULL, fx->archive, NULL, &opts), PKGSTORE_EINVALID);
}

static void test_archive__refuses_too_large(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {{"a", 'f', NULL, 0644, 3000}, {"b", 'f', NULL, 0644, 3000}};
    make_archive(fx->archive, FMT_TAR, specs, 2);
    pkgstore_archive_options opts = PKGSTORE_ARCHIVE_OPTIONS_INIT;
    opts.max_total_size = 5000;
    char *dir = NULL;
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, NULL, &opts),
                     PKGSTORE_ELIMIT);
    assert_non_null(strstr(pkgstore_error_detail(), "b: total expanded size"));
    assert_int_equal(count_entries(fx->parent), 0);
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, "a", &opts),
                     PKGSTORE_ELIMIT);
    assert_int_equal(pkgstore_archive_validate_file(NULL, fx->archive, "a", &opts), PKGSTORE_ELIMIT);
    assert_int_equal(count_entries(fx->parent), 0);
    assert_nothing_outside(fx);
}

static void test_archive__refuses_zip_bomb_ratio(void **state)
{
    fixture *fx = *state;
    /* 32 MiB of zeros compress about a thousandfold. */
    static const spec specs[] = {{"otelcol", 'f', "#!/bin/sh\n", 0755, 0},
                                 {"bomb", 'f', NULL, 0644, 32 << 20}};
    static const int fmts[] = {FMT_ZIP, FMT_TGZ, FMT_TZST};
    for (size_t k = 0; k < 3; k++) {
        make_archive(fx->archive, fmts[k], specs, 2);
        struct stat st;
        assert_int_equal(stat(fx->archive, &st), 0);
        assert_true(st.st_size < (1 << 20));
        expect_refused(fx, NULL, PKGSTORE_ELIMIT, "expansion ratio");
        expect_refused(fx, "otelcol", PKGSTORE_ELIMIT, "bomb: expansion ratio");
        /* A generous ratio lets it through. */
        pkgstore_archive_options opts = PKGSTORE_ARCHIVE_OPTIONS_INIT;
        opts.max_ratio = 1000000;
        pkgstore_archive_info *info = NULL;
        assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "otelcol", &opts), 0);
        assert_int_equal(pkgstore_archive_info_total_size(info), (32 << 20) + 10);
        pkgstore_archive_info_free(info);
    }
}

static void test_archive__sparse_holes_count_as_expanded(void **state)
{
    fixture *fx = *state;
    /* A 3 KiB archive whose sparse map puts 5 bytes at 1 TiB: the file
     * extraction would make is a terabyte, whatever the header claims. */
    make_sparse_tar(fx->archive, "otelcol", "100", "1099511627776");
    expect_refused(fx, NULL, PKGSTORE_ELIMIT, "otelcol: total expanded size");
    expect_refused(fx, "otelcol", PKGSTORE_ELIMIT, "otelcol: total expanded size");

    /* Holes inside the declared size are fine, and counted. */
    char *dir = NULL, *file = NULL;
    struct stat st;
    pkgstore_archive_info *info = NULL;
    make_sparse_tar(fx->archive, "otelcol", "100", "10");
    assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "otelcol", NULL), 0);
    assert_int_equal(pkgstore_archive_info_total_size(info), 100);
    pkgstore_archive_info_free(info);
    assert_int_equal(pkgstore_archive_extract_file(&dir, &file, fx->archive, fx->parent, "otelcol",
                                                   NULL), 0);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 100);
    size_t len = 0;
    char *content = read_file(file, &len);
    assert_int_equal(len, 100);
    assert_memory_equal(content + 10, "hello", 5);
    free(content);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
    pkgstore_free(file);
    assert_nothing_outside(fx);
}

static void test_archive__refuses_deep_and_intricate(void **state)
{
    fixture *fx = *state;
    /* 129 levels of directories. */
    char deep[400] = "";
    for (int i = 0; i < 129; i++)
        strcat(deep, i ? "/d" : "d");
    spec specs[] = {{deep, 'f', "x", 0644, 0}};
    make_archive(fx->archive, FMT_TAR, specs, 1);
    expect_refused(fx, NULL, PKGSTORE_ELIMIT, "levels of directories");

    /* Thousands of symlinks with long targets: refused quickly, not
     * resolved for minutes. */
    enum { NLINKS = 3000 };
    static char names[NLINKS][16];
    static char target[4000];
    static spec many[NLINKS];
    target[0] = '\0';
    for (int i = 0; i < 600; i++)
        strcat(target, "x/../");
    strcat(target, "x");
    for (int i = 0; i < NLINKS; i++) {
        snprintf(names[i], sizeof(names[i]), "l%04d", i);
        many[i] = (spec){names[i], 'l', target, 0777, 0};
    }
    make_archive(fx->archive, FMT_TAR, many, NLINKS);
    expect_refused(fx, NULL, PKGSTORE_ELIMIT, "too many or too intricate");
}

/* ------------------------------------------------------------ validation */

static void test_archive__validate_info(void **state)
{
    fixture *fx = *state;
    pkgstore_archive_info *info = NULL;
    make_archive(fx->archive, FMT_TZST, good_specs, NGOOD);
    assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "./otelcol", NULL), 0);
    assert_int_equal(pkgstore_archive_info_format(info), PKGSTORE_ARCHIVE_TAR_ZSTD);
    assert_int_equal(pkgstore_archive_info_entries(info), NGOOD);
    assert_int_equal(pkgstore_archive_info_executables(info), 1);
    assert_string_equal(pkgstore_archive_info_sole_executable(info), "otelcol");
    assert_true(pkgstore_archive_info_archive_size(info) > 0);
    assert_int_equal(pkgstore_archive_info_total_size(info),
                     strlen(good_specs[0].data) + strlen(good_specs[1].data) +
                         strlen(good_specs[3].data));
    pkgstore_archive_info_free(info);
    /* (refusals leave no info to free) */
    info = (pkgstore_archive_info *)&info;
    assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "nope", NULL),
                     PKGSTORE_ENOTFOUND);
    assert_null(info);
    assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "conf/link", NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_archive_validate_file(&info, fx->archive, "conf", NULL),
                     PKGSTORE_EINVALID);
    /* Validation writes nothing. */
    assert_int_equal(count_entries(fx->parent), 0);
}

static void test_archive__remove_tree_readonly_dirs(void **state)
{
    fixture *fx = *state;
    static const spec specs[] = {
        {"ro", 'd', NULL, 0500, 0},
        {"ro/f", 'f', "x", 0444, 0},
    };
    char *dir = NULL;
    make_archive(fx->archive, FMT_TAR, specs, 2);
    assert_int_equal(pkgstore_archive_extract_file(&dir, NULL, fx->archive, fx->parent, NULL, NULL), 0);
    assert_int_equal(pkgstore_archive_remove_tree(dir), 0);
    assert_int_equal(count_entries(fx->parent), 0);
    assert_int_equal(pkgstore_archive_remove_tree(dir), 0); /* missing: fine */
    pkgstore_free(dir);
}

/* ------------------------------------------------------------ creation */

static void test_archive__create_deterministic(void **state)
{
    fixture *fx = *state;
    char src[400], path[600], out1[400], out2[400];
    snprintf(src, sizeof(src), "%s/src", fx->root);
    mkdir(src, 0755);
    snprintf(path, sizeof(path), "%s/otelcol", src);
    write_file(path, "#!/bin/sh\necho hi\n", 18, 0755);
    snprintf(path, sizeof(path), "%s/share", src);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/share/b.txt", src);
    write_file(path, "b", 1, 0644);
    snprintf(path, sizeof(path), "%s/share/a.txt", src);
    write_file(path, "a", 1, 0644);
    snprintf(path, sizeof(path), "%s/share/link", src);
    assert_int_equal(symlink("a.txt", path), 0);
    snprintf(out1, sizeof(out1), "%s/one.tar.zst", fx->parent);
    snprintf(out2, sizeof(out2), "%s/two.tar.zst", fx->parent);

    const char *paths[] = {"share", "./otelcol"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out1, src, paths, 2, NULL), 0);
    /* Touch a file: a new mtime must not change the bytes. */
    snprintf(path, sizeof(path), "%s/share/a.txt", src);
    struct timespec times[2] = {{12345, 0}, {12345, 0}};
    utimensat(AT_FDCWD, path, times, 0);
    const char *reversed[] = {"otelcol", "share/"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out2, src, reversed, 2, NULL), 0);
    size_t l1, l2;
    char *b1 = read_file(out1, &l1), *b2 = read_file(out2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);
    free(b1);
    free(b2);

    pkgstore_archive_list *list = NULL;
    assert_int_equal(pkgstore_archive_list_file(&list, out1, NULL), 0);
    assert_int_equal(pkgstore_archive_list_format(list), PKGSTORE_ARCHIVE_TAR_ZSTD);
    assert_int_equal(pkgstore_archive_list_count(list), 5);
    static const char *order[] = {"otelcol", "share/", "share/a.txt", "share/b.txt", "share/link"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(pkgstore_archive_list_get(list, i)->path, order[i]);
    assert_int_equal(pkgstore_archive_list_get(list, 0)->mode, 0755);
    assert_int_equal(pkgstore_archive_list_get(list, 4)->type, PKGSTORE_ENTRY_SYMLINK);
    pkgstore_archive_list_free(list);

    char *dir = NULL, *file = NULL;
    assert_int_equal(pkgstore_archive_extract_file(&dir, &file, out1, fx->root, "otelcol", NULL), 0);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    pkgstore_archive_remove_tree(dir);
    pkgstore_free(dir);
    pkgstore_free(file);
}

static void test_archive__create_refuses_bad_inputs(void **state)
{
    fixture *fx = *state;
    char out[400], src[400], path[600];
    snprintf(out, sizeof(out), "%s/out.tar.zst", fx->parent);
    snprintf(src, sizeof(src), "%s/src", fx->root);
    mkdir(src, 0755);
    snprintf(path, sizeof(path), "%s/f", src);
    write_file(path, "f", 1, 0644);

    const char *abs[] = {"/etc/hostname"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, abs, 1, NULL), PKGSTORE_EINVALID);
    const char *dotdot[] = {"../x"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, dotdot, 1, NULL), PKGSTORE_EINVALID);
    const char *missing[] = {"nope"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, missing, 1, NULL), PKGSTORE_ENOTFOUND);
    const char *twice[] = {"f", "./f"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, twice, 2, NULL), PKGSTORE_EINVALID);
    /* A file inside a listed directory, even when another name sorts
     * between the two. */
    snprintf(path, sizeof(path), "%s/d", src);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/d/g", src);
    write_file(path, "g", 1, 0644);
    snprintf(path, sizeof(path), "%s/d-x", src);
    write_file(path, "x", 1, 0644);
    const char *inside[] = {"d/g", "d-x", "d"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, inside, 3, NULL), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "d/g: listed twice"));
    snprintf(path, sizeof(path), "%s/fifo", src);
    assert_int_equal(mkfifo(path, 0644), 0);
    const char *fifo[] = {"fifo"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, fifo, 1, NULL), PKGSTORE_EUNSAFE);
    unlink(path);
    snprintf(path, sizeof(path), "%s/esc", src);
    assert_int_equal(symlink("../../etc/passwd", path), 0);
    const char *esc[] = {"esc"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, esc, 1, NULL), PKGSTORE_EUNSAFE);
    /* No partial output, no temporary file left. */
    assert_int_equal(count_entries(fx->parent), 0);
    pkgstore_archive_create_options opts = PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT;
    opts.zstd_level = 42;
    const char *ok[] = {"f"};
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, ok, 1, &opts), PKGSTORE_EINVALID);
    opts.zstd_level = 1;
    assert_int_equal(pkgstore_archive_create_tar_zstd(out, src, ok, 1, &opts), 0);
    assert_int_equal(count_entries(fx->parent), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_archive__format_names),
        T(test_archive__detect_each_format),
        T(test_archive__detect_binary),
        T(test_archive__detect_refuses_odd_content),
        T(test_archive__fd_variants_keep_offset),
        T(test_archive__list_entries),
        T(test_archive__list_shows_unsafe_entries),
        T(test_archive__extract_all_keeps_exec_bit),
        T(test_archive__extract_entrypoint_only),
        T(test_archive__entrypoint_symlink_refused),
        T(test_archive__later_entry_replaces_earlier),
        T(test_archive__refuses_absolute_path),
        T(test_archive__refuses_dotdot),
        T(test_archive__refuses_symlink_escape_then_write),
        T(test_archive__refuses_symlink_chain),
        T(test_archive__refuses_hardlink_escape),
        T(test_archive__refuses_devices_and_fifos),
        T(test_archive__refuses_too_many_entries),
        T(test_archive__refuses_too_large),
        T(test_archive__refuses_zip_bomb_ratio),
        T(test_archive__refuses_deep_and_intricate),
    T(test_archive__sparse_holes_count_as_expanded),
        T(test_archive__validate_info),
        T(test_archive__remove_tree_readonly_dirs),
        T(test_archive__create_deterministic),
        T(test_archive__create_refuses_bad_inputs),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
