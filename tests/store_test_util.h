/*
 * Small helpers shared by tests/test_store*.c (header-only, static).
 */
#ifndef STORE_TEST_UTIL_H
#define STORE_TEST_UTIL_H

/* Test paths are built in fixed 4 KiB buffers from short mkdtemp() names;
 * truncation cannot happen and the warning only adds noise here. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pkgstore.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    remove(path);
    return 0;
}

static inline void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(4096);
    snprintf(dir, 4096, "%s/pkgstore-test-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        free(dir);
        return NULL;
    }
    return dir;
}

/* Number of entries in dir (recursively files only when recursive). */
static inline int count_files(const char *dir, int recursive)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && recursive)
            n += count_files(path, 1);
        else
            n++;
    }
    closedir(d);
    return n;
}

static inline void fill_random(unsigned char *buf, size_t len, unsigned int *seed)
{
    /* xorshift64: fast enough to fill megabytes inside the crash test */
    uint64_t x = 0x9e3779b97f4a7c15ull ^ *seed;
    for (size_t i = 0; i < len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
    }
    *seed = (unsigned int)(x >> 32) ^ (unsigned int)x;
}

static inline int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const unsigned char *p = data;
    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

static inline pkgstore_store *open_store_mode(const char *dir, pkgstore_durability durability)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    opts.durability = durability;
    if (pkgstore_store_open(&store, dir, &opts) < 0) {
        fprintf(stderr, "open %s: %s\n", dir, pkgstore_error_detail());
        return NULL;
    }
    return store;
}

#endif
