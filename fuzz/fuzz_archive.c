/*
 * fuzz_archive: detection, listing, validation and safe extraction of
 * arbitrary bytes.
 *
 * Layout per process: <tmp>/in holds the input, extraction happens in
 * <tmp>/x/y/root, so that a write escaping by one, two or three levels
 * lands somewhere this harness looks. The assertions (__builtin_trap):
 * - after every input, <tmp> holds only "in" and "x", x only "y", y only
 *   "root", and root is empty (refused extractions clean up; successful
 *   ones are removed by the harness);
 * - no extracted regular file or directory is reachable through a symlink
 *   that resolves outside root (checked with realpath on every entry);
 * - validate and extract agree: both accept an archive or both refuse it
 *   (extraction alone may also run out of disk or memory); an archive
 *   validated with an entrypoint is extracted with it.
 *
 * Inputs starting with the byte 0xA5 are a small program instead of raw
 * bytes: records of (type, path, target) turned into a tar by libarchive's
 * writer, so the fuzzer steers paths, symlinks and hard links directly
 * instead of fighting tar checksums.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "pkgstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[PATH_MAX];
static char input_path[PATH_MAX + 8];
static char root_path[PATH_MAX + 16];
static char real_root[PATH_MAX];

static void cleanup(void)
{
    if (base[0])
        pkgstore_archive_remove_tree(base);
}

static void init_once(void)
{
    char path[PATH_MAX + 16];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(base, sizeof(base), "%s/fuzz_archive.XXXXXX", tmp);
    if (!mkdtemp(base))
        __builtin_trap();
    atexit(cleanup);
    snprintf(input_path, sizeof(input_path), "%s/in", base);
    snprintf(path, sizeof(path), "%s/x", base);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/x/y", base);
    mkdir(path, 0755);
    snprintf(root_path, sizeof(root_path), "%s/x/y/root", base);
    mkdir(root_path, 0755);
    if (!realpath(root_path, real_root))
        __builtin_trap();
}

/* The names in dir must be exactly `expected` (n of them). */
static void expect_only(const char *dir, const char *const *expected, int n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int seen = 0;
    if (!d)
        __builtin_trap();
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int ok = 0;
        for (int i = 0; i < n; i++)
            ok |= !strcmp(de->d_name, expected[i]);
        if (!ok)
            __builtin_trap(); /* something was written where it must not be */
        seen++;
    }
    closedir(d);
    if (seen != n)
        __builtin_trap();
}

static void check_layout(void)
{
    char path[PATH_MAX + 16];
    static const char *const top[] = {"in", "x"}, *const x[] = {"y"}, *const y[] = {"root"};
    expect_only(base, top, 2);
    snprintf(path, sizeof(path), "%s/x", base);
    expect_only(path, x, 1);
    snprintf(path, sizeof(path), "%s/x/y", base);
    expect_only(path, y, 1);
    expect_only(root_path, NULL, 0);
}

#define MAX_TOTAL_SIZE (8u << 20)

/* Every path below dir resolves (through symlinks) inside real_root, or
 * does not resolve at all (a dangling link); the regular files below it
 * (by their size, holes included) add to *total. */
static void walk_tree(const char *dir, int depth, uint64_t *total)
{
    DIR *d;
    struct dirent *de;
    if (depth > 64 || !(d = opendir(dir)))
        return;
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX], resolved[PATH_MAX];
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
            continue;
        if (realpath(path, resolved) &&
            (strncmp(resolved, real_root, strlen(real_root)) != 0 ||
             (resolved[strlen(real_root)] != '/' && resolved[strlen(real_root)] != '\0')))
            __builtin_trap(); /* a link leads outside the extraction directory */
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk_tree(path, depth + 1, total);
        else if (S_ISREG(st.st_mode)) /* a hard-linked file counts once in all */
            *total += (uint64_t)st.st_size / (st.st_nlink ? st.st_nlink : 1);
    }
    closedir(d);
}

/* An extraction stays inside root and within the size limit. */
static void check_tree(const char *dir)
{
    uint64_t total = 0;
    walk_tree(dir, 0, &total);
    if (total > MAX_TOTAL_SIZE)
        __builtin_trap(); /* more bytes made than the limit allows */
}

/* Read a length-prefixed string (at most 96 bytes) from the program. */
static int take_string(char *out, const uint8_t **p, const uint8_t *end)
{
    if (*p >= end)
        return -1;
    size_t len = **p % 97;
    (*p)++;
    if ((size_t)(end - *p) < len)
        len = (size_t)(end - *p);
    for (size_t i = 0; i < len; i++)
        out[i] = (*p)[i] ? (char)(*p)[i] : '/';
    out[len] = '\0';
    *p += len;
    return 0;
}

/* Structured mode: turn records into a tar written at input_path. */
static void write_program_tar(const uint8_t *data, size_t size)
{
    static unsigned char out[1 << 18];
    size_t used = 0;
    const uint8_t *p = data, *end = data + size;
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    if (!a || !e)
        __builtin_trap();
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open_memory(a, out, sizeof(out), &used) != ARCHIVE_OK)
        __builtin_trap();
    for (int n = 0; p < end && n < 64; n++) {
        char path[128], target[128];
        int type = *p++ % 7;
        if (take_string(path, &p, end) < 0 || take_string(target, &p, end) < 0)
            break;
        archive_entry_clear(e);
        archive_entry_set_pathname(e, path);
        archive_entry_set_perm(e, type == 5 ? 0755 : 0644);
        switch (type) {
        case 0: case 5: /* file (5: executable) with target as content */
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(target));
            break;
        case 1: archive_entry_set_filetype(e, AE_IFDIR); break;
        case 2: case 6:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, target);
            break;
        case 3:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, target);
            break;
        default: archive_entry_set_filetype(e, AE_IFIFO); break;
        }
        if (archive_write_header(a, e) < ARCHIVE_WARN)
            break;
        if ((type == 0 || type == 5) && target[0])
            archive_write_data(a, target, strlen(target));
    }
    archive_write_close(a);
    archive_write_free(a);
    archive_entry_free(e);
    int fd = open(input_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, out, used) != (ssize_t)used)
        __builtin_trap();
    close(fd);
}

/* Only extraction writes, so only it may also fail for want of disk or
 * memory. */
static int is_resource_error(int error)
{
    return error == PKGSTORE_EIO || error == PKGSTORE_ENOSPC || error == PKGSTORE_ENOMEM;
}

/* Validation and extraction of everything read the same data: both accept
 * an archive or both refuse it. (With several faults the first one found
 * may differ: extraction meets on disk, at its entry, a directory that an
 * earlier path only implied, validation after the last header.) */
static void expect_agree(int valid, int extracted)
{
    if (!is_resource_error(extracted) && (valid == 0) != (extracted == 0))
        __builtin_trap();
}

/* Entrypoint-only extraction reads the data of the other entries without
 * writing it: an archive that was accepted at upload is one the agent
 * extracts (fuzz/corpus/archive/zip-bogus-compressed-size: a zip entry
 * whose local header lies about its compressed size once failed here,
 * when the other entries were skipped by that size). */
static void expect_extractable(int valid, int extracted)
{
    if (valid == 0 && extracted != 0 && !is_resource_error(extracted))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    pkgstore_archive_options opts = PKGSTORE_ARCHIVE_OPTIONS_INIT;
    pkgstore_archive_format format;
    pkgstore_archive_list *list = NULL;
    char entrypoint[4096] = "";
    char *dir = NULL, *file = NULL;

    if (!initialised) {
        init_once();
        initialised = 1;
    }
    /* Keep each run small and fast. */
    opts.max_entries = 256;
    opts.max_total_size = MAX_TOTAL_SIZE;
    opts.ratio_min_size = 64u << 10;

    if (size > 1 && data[0] == 0xA5) {
        write_program_tar(data + 1, size - 1);
    } else {
        int fd = open(input_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size)
            __builtin_trap();
        close(fd);
        pkgstore_archive_detect_buffer(&format, data, size);
    }
    int detected = pkgstore_archive_detect_file(&format, input_path);

    if (pkgstore_archive_list_file(&list, input_path, &opts) == 0) {
        for (size_t i = 0; i < pkgstore_archive_list_count(list); i++) {
            const pkgstore_archive_entry *e = pkgstore_archive_list_get(list, i);
            if (!e || !e->path)
                __builtin_trap();
            if (e->type == PKGSTORE_ENTRY_FILE && !entrypoint[0])
                snprintf(entrypoint, sizeof(entrypoint), "%s", e->path);
        }
        pkgstore_archive_list_free(list);
    }

    pkgstore_archive_info *info = NULL;
    int valid = pkgstore_archive_validate_file(&info, input_path, NULL, &opts);
    if ((valid == 0) != (info != NULL))
        __builtin_trap(); /* info exactly on success */
    pkgstore_archive_info_free(info);

    int extracted = pkgstore_archive_extract_file(&dir, NULL, input_path, root_path, NULL, &opts);
    if (extracted == 0) {
        if (!dir)
            __builtin_trap();
        check_tree(dir);
        pkgstore_archive_remove_tree(dir);
        pkgstore_free(dir);
        dir = NULL;
    } else if (dir) {
        __builtin_trap(); /* outputs must be NULL on failure */
    }
    check_layout();
    /* Validation is the upload-time view of extraction: they agree. */
    if (detected == 0)
        expect_agree(valid, extracted);

    if (entrypoint[0]) {
        int r = pkgstore_archive_extract_file(&dir, &file, input_path, root_path, entrypoint, &opts);
        expect_extractable(pkgstore_archive_validate_file(NULL, input_path, entrypoint, &opts), r);
        if (r == 0) {
            struct stat st;
            if (!dir || !file || lstat(file, &st) != 0 || !S_ISREG(st.st_mode))
                __builtin_trap();
            check_tree(dir);
            pkgstore_archive_remove_tree(dir);
        }
        pkgstore_free(dir);
        pkgstore_free(file);
        check_layout();
    }
    return 0;
}
