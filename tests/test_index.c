/*
 * Tests for the LMDB index: environment, blob and package records, walks,
 * map growth, concurrency across processes and threads, stale readers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/index_fixture.h"
#include "helpers/small_disk.h"
#include "pkgstore.h"
#include "pkgstore/gc.h"
#include "pkgstore/index.h"
#include "pkgstore/store.h"
#include "error.h"
#include "index.h"
#include "store.h"

/* ---------------------------------------------------------------- fixture */

struct fixture {
    char dir[64];   /* the mkdtemp() dir */
    char index[96]; /* <dir>/index */
    pkgstore_store *store;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_index.XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->index, sizeof(fx->index), "%s/index", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_free(fx->store);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static ps_index *open_index(const char *dir, uint64_t map_size)
{
    ps_index *index = NULL;
    int error = ps_index_open(&index, dir, 0, 1, map_size);
    if (error != 0)
        fail_msg("ps_index_open: %s: %s", pkgstore_strerror(error), pkgstore_error_detail());
    return index;
}

static void digest_of_int(pkgstore_digest *out, unsigned int seed)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < PKGSTORE_DIGEST_SIZE; i++)
        out->bytes[i] = (unsigned char)((seed * 2654435761u) >> ((i % 4) * 8)) ^ (unsigned char)i;
    memcpy(out->bytes, &seed, sizeof(seed));
}

static void make_package(pkgstore_package_record *rec, const char *name, const char *version,
                         const char *platform, unsigned int seed)
{
    memset(rec, 0, sizeof(*rec));
    snprintf(rec->name, sizeof(rec->name), "%s", name);
    snprintf(rec->version, sizeof(rec->version), "%s", version);
    snprintf(rec->platform, sizeof(rec->platform), "%s", platform);
    rec->type = seed % 2 ? PKGSTORE_TYPE_ADDON : PKGSTORE_TYPE_PRIMARY;
    digest_of_int(&rec->digest, seed);
    rec->size = 1000u + seed;
    snprintf(rec->format, sizeof(rec->format), "%s", seed % 3 ? "tar+zstd" : "binary");
    snprintf(rec->entrypoint, sizeof(rec->entrypoint), "bin/%s-%u", name, seed);
    rec->created = 1700000000 + seed;
}

static void assert_ok(int error)
{
    if (error != 0)
        fail_msg("%s: %s", pkgstore_strerror(error), pkgstore_error_detail());
}

/* ---------------------------------------------------------------- open */

static void test_index__open_reopen(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest;
    pkgstore_blob_record rec;
    ps_index *index = open_index(fx->index, 0);

    digest_of_int(&digest, 7);
    assert_ok(ps_index_blob_put(index, &digest, 42));
    ps_index_free(index);

    index = open_index(fx->index, 0);
    assert_ok(ps_index_blob_get(&rec, index, &digest));
    assert_int_equal(rec.size, 42);
    assert_memory_equal(rec.digest.bytes, digest.bytes, PKGSTORE_DIGEST_SIZE);
    ps_index_free(index);

    /* read-only open sees the same record */
    assert_ok(ps_index_open(&index, fx->index, 1, 0, 0));
    assert_ok(ps_index_blob_get(&rec, index, &digest));
    assert_int_equal(rec.size, 42);
    assert_int_equal(ps_index_blob_put(index, &digest, 1), PKGSTORE_EDENIED);
    ps_index_free(index);
}

/* Two handles on one index in one process share one LMDB environment
 * (LMDB forbids opening it twice); each free drops one reference. */
static void test_index__open_twice_shares_environment(void **state)
{
    struct fixture *fx = *state;
    char alias[160];
    ps_index *first = open_index(fx->index, 0);
    ps_index *second, *read_only = NULL, *other = NULL;
    pkgstore_digest digest;
    pkgstore_blob_record rec;

    snprintf(alias, sizeof(alias), "%s/../index", fx->index); /* another spelling */
    second = open_index(alias, 0);
    assert_ptr_equal(first, second);
    assert_ok(ps_index_open(&read_only, fx->index, 1, 0, 0));
    assert_ptr_equal(first, read_only);
    ps_index_free(read_only);

    digest_of_int(&digest, 5);
    assert_ok(ps_index_blob_put(first, &digest, 5));
    ps_index_free(first);
    assert_ok(ps_index_blob_get(&rec, second, &digest)); /* still open */
    ps_index_free(second);

    /* a read-only environment cannot serve a read-write open */
    assert_ok(ps_index_open(&read_only, fx->index, 1, 0, 0));
    assert_int_equal(ps_index_open(&other, fx->index, 0, 1, 0), PKGSTORE_ELOCKED);
    assert_null(other);
    ps_index_free(read_only);

    /* once all are closed, a fresh open gets a new environment */
    first = open_index(fx->index, 0);
    assert_ok(ps_index_blob_get(&rec, first, &digest));
    ps_index_free(first);
}

static void test_index__open_missing_read_only(void **state)
{
    struct fixture *fx = *state;
    ps_index *index = (ps_index *)1;
    int error = ps_index_open(&index, fx->index, 1, 0, 0);
    assert_true(error < 0);
    assert_null(index);
    assert_non_null(strstr(pkgstore_error_detail(), "lmdb"));
}

static int write_format(MDB_txn *txn, ps_index *index, void *payload)
{
    uint32_t format = *(uint32_t *)payload;
    MDB_val key = {6, "format"}, val = {4, &format};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_META), &key, &val, 0);
    return rc ? ps_index_error(rc, "test") : 0;
}

static void test_index__unknown_format_refused(void **state)
{
    struct fixture *fx = *state;
    uint32_t format = 99;
    ps_index *index = open_index(fx->index, 0);
    assert_ok(ps_index_write(index, write_format, &format));
    ps_index_free(index);
    index = NULL;
    assert_int_equal(ps_index_open(&index, fx->index, 0, 1, 0), PKGSTORE_EFORMAT);
    assert_null(index);
    assert_non_null(strstr(pkgstore_error_detail(), "unknown format 99"));
}

static void test_index__error_translation(void **state)
{
    (void)state;
    assert_int_equal(ps_index_error(MDB_NOTFOUND, "reading %s", "x"), PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "lmdb: "));
    assert_non_null(strstr(pkgstore_error_detail(), "reading x"));
    assert_int_equal(ps_index_error(MDB_CORRUPTED, "x"), PKGSTORE_ECORRUPT);
    assert_int_equal(ps_index_error(MDB_MAP_FULL, "x"), PKGSTORE_ENOSPC);
    assert_int_equal(ps_index_error(ENOSPC, "x"), PKGSTORE_ENOSPC);
    assert_int_equal(ps_index_error(MDB_READERS_FULL, "x"), PKGSTORE_ELIMIT);
}

/* ---------------------------------------------------------------- blobs */

/* Raw blob records with a chosen time: tests/helpers/index_fixture.c. */

static void test_index__blob_roundtrip_keeps_first_added(void **state)
{
    struct fixture *fx = *state;
    struct raw_blob raw;
    pkgstore_blob_record rec;
    int64_t before = (int64_t)time(NULL);
    ps_index *index = open_index(fx->index, 0);

    digest_of_int(&raw.digest, 1);
    assert_ok(ps_index_blob_put(index, &raw.digest, 123));
    assert_ok(ps_index_blob_get(&rec, index, &raw.digest));
    assert_int_equal(rec.size, 123);
    assert_true(rec.added >= before && rec.added <= (int64_t)time(NULL));

    /* an old record keeps its time when put again */
    raw.size = 5;
    raw.added = 1000;
    assert_ok(ps_index_write(index, write_raw_blob, &raw));
    assert_ok(ps_index_blob_put(index, &raw.digest, 5));
    assert_ok(ps_index_blob_get(&rec, index, &raw.digest));
    assert_int_equal(rec.added, 1000);
    assert_ok(ps_index_blob_put(index, &raw.digest, 6));
    assert_ok(ps_index_blob_get(&rec, index, &raw.digest));
    assert_int_equal(rec.added, 1000);
    assert_int_equal(rec.size, 6);
    ps_index_free(index);
}

static void test_index__blob_delete_and_notfound(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest;
    pkgstore_blob_record rec;
    ps_index *index = open_index(fx->index, 0);

    digest_of_int(&digest, 3);
    assert_int_equal(ps_index_blob_get(&rec, index, &digest), PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "no blob record for sha256:"));
    assert_int_equal(rec.size, 0);
    assert_ok(ps_index_blob_put(index, &digest, 9));
    assert_ok(ps_index_blob_del(index, &digest));
    assert_int_equal(ps_index_blob_get(&rec, index, &digest), PKGSTORE_ENOTFOUND);
    assert_ok(ps_index_blob_del(index, &digest)); /* idempotent */
    ps_index_free(index);
}

/* ---------------------------------------------------------------- packages */

static void test_index__package_roundtrip(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record in, out;
    ps_index *index = open_index(fx->index, 0);

    make_package(&in, "otelcol-contrib", "0.98.0", "linux/arm/v7", 5);
    snprintf(in.entrypoint, sizeof(in.entrypoint), "%0*d", PKGSTORE_ENTRYPOINT_MAX, 0);
    assert_ok(ps_index_package_put(index, &in));
    assert_ok(ps_index_package_get(&out, index, "otelcol-contrib", "0.98.0", "linux/arm/v7"));
    assert_memory_equal(&in, &out, sizeof(in));

    /* replacing keeps one record */
    in.size = 77;
    memset(in.entrypoint, 0, sizeof(in.entrypoint));
    in.type = PKGSTORE_TYPE_ADDON;
    assert_ok(ps_index_package_put(index, &in));
    assert_ok(ps_index_package_get(&out, index, "otelcol-contrib", "0.98.0", "linux/arm/v7"));
    assert_memory_equal(&in, &out, sizeof(in));
    ps_index_free(index);
}

static void test_index__package_invalid(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record rec, out;
    ps_index *index = open_index(fx->index, 0);

    make_package(&rec, "", "1.0.0", "linux/amd64", 1);
    assert_int_equal(ps_index_package_put(index, &rec), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "name"));

    make_package(&rec, "a", "", "linux/amd64", 1);
    assert_int_equal(ps_index_package_put(index, &rec), PKGSTORE_EINVALID);

    make_package(&rec, "a", "1.0.0", "linux/amd64", 1);
    rec.type = (pkgstore_package_type)7;
    assert_int_equal(ps_index_package_put(index, &rec), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "type"));

    make_package(&rec, "a", "1.0.0", "linux/amd64", 1);
    rec.format[0] = '\0';
    assert_int_equal(ps_index_package_put(index, &rec), PKGSTORE_EINVALID);

    make_package(&rec, "a", "1.0.0", "linux/amd64", 1);
    memset(rec.name, 'a', sizeof(rec.name)); /* unterminated */
    assert_int_equal(ps_index_package_put(index, &rec), PKGSTORE_EINVALID);

    char long_version[PKGSTORE_VERSION_MAX + 2];
    memset(long_version, '1', sizeof(long_version) - 1);
    long_version[sizeof(long_version) - 1] = '\0';
    assert_int_equal(ps_index_package_get(&out, index, "a", long_version, "linux/amd64"),
                     PKGSTORE_EINVALID);
    assert_int_equal(ps_index_package_get(&out, index, "a", "1.0.0", NULL), PKGSTORE_EINVALID);
    ps_index_free(index);
}

static void test_index__package_notfound(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record out;
    ps_index *index = open_index(fx->index, 0);

    assert_int_equal(ps_index_package_get(&out, index, "nope", "1.0.0", "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
    assert_string_equal(pkgstore_error_detail(), "package nope 1.0.0 linux/amd64: not in the index");
    assert_int_equal(out.name[0], '\0');
    ps_index_free(index);
}

struct walk {
    ps_index *index;
    char keys[2048][400];
    size_t count;
    int write_in_cb;
    int stop_at;
};

static int walk_cb(const void *key, size_t key_len, const void *val, size_t val_len, void *payload)
{
    struct walk *walk = payload;
    pkgstore_package_record rec;
    assert_ok(ps_index_package_decode(&rec, key, key_len, val, val_len));
    snprintf(walk->keys[walk->count], sizeof(walk->keys[0]), "%s %s %s", rec.name, rec.version,
             rec.platform);
    walk->count++;
    if (walk->write_in_cb) {
        /* callbacks run outside any transaction: writing must not deadlock */
        pkgstore_digest digest;
        digest_of_int(&digest, (unsigned int)walk->count);
        assert_ok(ps_index_blob_put(walk->index, &digest, walk->count));
    }
    if (walk->stop_at && (int)walk->count == walk->stop_at)
        return 42;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_index__foreach_order_prefix_and_batches(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record rec;
    ps_index *index = open_index(fx->index, 0);
    struct walk *walk = calloc(1, sizeof(*walk));
    const char *platforms[] = {"linux/arm64", "linux/amd64", "darwin/arm64"};
    char *expected[2048];
    size_t n = 0;

    /* 700 records for "b" (more than one batch), a few for "a", "bb", "c",
     * inserted in a scrambled order */
    for (unsigned int i = 0; i < 700; i++) {
        unsigned int j = (i * 337) % 700;
        char version[32];
        snprintf(version, sizeof(version), "1.%u.0", j / 3);
        make_package(&rec, "b", version, platforms[j % 3], j);
        assert_ok(ps_index_package_put(index, &rec));
    }
    make_package(&rec, "a", "1.0.0", "linux/amd64", 1);
    assert_ok(ps_index_package_put(index, &rec));
    make_package(&rec, "bb", "1.0.0", "linux/amd64", 1);
    assert_ok(ps_index_package_put(index, &rec));
    make_package(&rec, "c", "1.0.0", "linux/amd64", 1);
    assert_ok(ps_index_package_put(index, &rec));

    walk->index = index;
    walk->write_in_cb = 1;
    assert_ok(ps_index_foreach(index, PS_DB_PACKAGES, "b", 2, walk_cb, walk));
    assert_int_equal(walk->count, 700);
    for (unsigned int j = 0; j < 700; j++) {
        expected[n] = malloc(64);
        snprintf(expected[n], 64, "b 1.%u.0 %s", j / 3, platforms[j % 3]);
        n++;
    }
    /* LMDB order is byte order of name\0version\0platform: for one name
     * that is the byte order of "version platform" with a NUL between,
     * which sorts like "version\x01platform". */
    for (size_t i = 0; i < n; i++)
        for (char *p = expected[i] + 2; *p; p++)
            if (*p == ' ')
                *p = '\x01';
    qsort(expected, n, sizeof(expected[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        for (char *p = expected[i]; *p; p++)
            if (*p == '\x01')
                *p = ' ';
        assert_string_equal(walk->keys[i], expected[i]);
        free(expected[i]);
    }

    /* all of them, in key order: a, b..., bb, c */
    memset(walk, 0, sizeof(*walk));
    assert_ok(ps_index_foreach(index, PS_DB_PACKAGES, NULL, 0, walk_cb, walk));
    assert_int_equal(walk->count, 703);
    assert_string_equal(walk->keys[0], "a 1.0.0 linux/amd64");
    assert_string_equal(walk->keys[701], "bb 1.0.0 linux/amd64");
    assert_string_equal(walk->keys[702], "c 1.0.0 linux/amd64");

    /* a non-zero return stops the walk and is returned */
    memset(walk, 0, sizeof(*walk));
    walk->stop_at = 300;
    assert_int_equal(ps_index_foreach(index, PS_DB_PACKAGES, NULL, 0, walk_cb, walk), 42);
    assert_int_equal(walk->count, 300);

    /* an empty prefix range */
    memset(walk, 0, sizeof(*walk));
    assert_ok(ps_index_foreach(index, PS_DB_PACKAGES, "zz", 3, walk_cb, walk));
    assert_int_equal(walk->count, 0);
    free(walk);
    ps_index_free(index);
}

static int nested_read(MDB_txn *txn, ps_index *index, void *payload)
{
    (void)txn;
    (void)payload;
    return ps_index_read(index, nested_read, NULL);
}

static int nested_write(MDB_txn *txn, ps_index *index, void *payload)
{
    pkgstore_digest digest;
    (void)txn;
    (void)payload;
    digest_of_int(&digest, 1);
    return ps_index_blob_put(index, &digest, 1);
}

static void test_index__nested_transactions_refused(void **state)
{
    struct fixture *fx = *state;
    ps_index *index = open_index(fx->index, 0);
    assert_int_equal(ps_index_read(index, nested_read, NULL), PKGSTORE_EINTERNAL);
    assert_non_null(strstr(pkgstore_error_detail(), "inside another"));
    assert_int_equal(ps_index_write(index, nested_write, NULL), PKGSTORE_EINTERNAL);
    assert_int_equal(ps_index_read(index, nested_write, NULL), PKGSTORE_EINTERNAL);
    /* and the thread is usable afterwards */
    assert_ok(ps_index_write(index, write_format, &(uint32_t){1}));
    ps_index_free(index);
}

/* ---------------------------------------------------------------- map growth */

struct many {
    unsigned int first, count;
};

static int put_many(MDB_txn *txn, ps_index *index, void *payload)
{
    struct many *many = payload;
    for (unsigned int i = many->first; i < many->first + many->count; i++) {
        pkgstore_digest digest;
        unsigned char value[200];
        digest_of_int(&digest, i);
        memset(value, (int)i, sizeof(value));
        MDB_val key = {32, digest.bytes}, val = {sizeof(value), value};
        int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_PINS), &key, &val, 0);
        if (rc != 0)
            return ps_index_error(rc, "put %u", i);
    }
    return 0;
}

static void test_index__map_full_grows(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record rec, out;
    ps_index *index = open_index(fx->index, 64 << 10);
    uint64_t initial = ps_index_map_size(index);
    struct many many = {100000, 3000};

    assert_true(initial <= 64 << 10);
    for (unsigned int i = 0; i < 3000; i++) {
        char version[32];
        snprintf(version, sizeof(version), "0.%u.%u", i / 100, i % 100);
        make_package(&rec, "otelcol-contrib", version, "linux/amd64", i);
        assert_ok(ps_index_package_put(index, &rec));
    }
    /* one transaction far larger than the map */
    assert_ok(ps_index_write(index, put_many, &many));
    assert_true(ps_index_map_size(index) > initial * 8);
    assert_ok(ps_index_package_get(&out, index, "otelcol-contrib", "0.29.99", "linux/amd64"));
    assert_int_equal(out.size, 1000 + 2999);
    ps_index_free(index);

    /* reopening with the tiny size keeps the grown map */
    index = open_index(fx->index, 64 << 10);
    assert_true(ps_index_map_size(index) > initial * 8);
    assert_ok(ps_index_package_get(&out, index, "otelcol-contrib", "0.0.0", "linux/amd64"));
    ps_index_free(index);
}

/* Another process grows the map far beyond ours: our next read (renewing a
 * pooled transaction) and write must adopt the new size, not fail. */
static void test_index__map_resized_by_other_process(void **state)
{
    struct fixture *fx = *state;
    ps_index *index = open_index(fx->index, 64 << 10);
    pkgstore_package_record rec, out;
    pkgstore_blob_record blob;
    pkgstore_digest digest;
    uint64_t before = ps_index_map_size(index);
    pid_t pid;
    int status;

    make_package(&rec, "first", "1.0.0", "linux/amd64", 1);
    assert_ok(ps_index_package_put(index, &rec));
    assert_ok(ps_index_package_get(&out, index, "first", "1.0.0", "linux/amd64"));

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ps_index *child = NULL;
        struct many many = {0, 20000};
        if (ps_index_open(&child, fx->index, 0, 1, 64 << 10) != 0 ||
            ps_index_write(child, put_many, &many) != 0)
            _exit(1);
        ps_index_free(child);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    assert_ok(ps_index_package_get(&out, index, "first", "1.0.0", "linux/amd64"));
    assert_true(ps_index_map_size(index) > before);
    digest_of_int(&digest, 99);
    assert_ok(ps_index_blob_put(index, &digest, 5));
    assert_ok(ps_index_blob_get(&blob, index, &digest));
    ps_index_free(index);
}

/* ---------------------------------------------------------------- concurrency */

#define WRITERS 4
#define PER_WRITER 400

static void put_range(ps_index *index, unsigned int writer)
{
    for (unsigned int i = 0; i < PER_WRITER; i++) {
        pkgstore_package_record rec, out;
        char name[32], version[32];
        snprintf(name, sizeof(name), "writer%u", writer);
        snprintf(version, sizeof(version), "1.0.%u", i);
        make_package(&rec, name, version, "linux/amd64", i);
        if (ps_index_package_put(index, &rec) != 0)
            fail_msg("writer %u: %s", writer, pkgstore_error_detail());
        if (ps_index_package_get(&out, index, name, version, "linux/amd64") != 0)
            fail_msg("writer %u read: %s", writer, pkgstore_error_detail());
    }
}

static int count_cb(const void *key, size_t key_len, const void *val, size_t val_len, void *payload)
{
    (void)key;
    (void)key_len;
    (void)val;
    (void)val_len;
    (*(size_t *)payload)++;
    return 0;
}

static void check_all_writers(const char *dir)
{
    ps_index *index = open_index(dir, 0);
    size_t count = 0;
    assert_ok(ps_index_foreach(index, PS_DB_PACKAGES, NULL, 0, count_cb, &count));
    assert_int_equal(count, WRITERS * PER_WRITER);
    ps_index_free(index);
}

static void test_index__concurrent_processes(void **state)
{
    struct fixture *fx = *state;
    pid_t pids[WRITERS];

    ps_index_free(open_index(fx->index, 64 << 10)); /* create it first */
    for (unsigned int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            ps_index *index = NULL;
            if (ps_index_open(&index, fx->index, 0, 1, 64 << 10) != 0) {
                fprintf(stderr, "child %u: open: %s\n", w, pkgstore_error_detail());
                _exit(10);
            }
            for (unsigned int i = 0; i < PER_WRITER; i++) {
                pkgstore_package_record rec;
                char name[32], version[32];
                snprintf(name, sizeof(name), "writer%u", w);
                snprintf(version, sizeof(version), "1.0.%u", i);
                make_package(&rec, name, version, "linux/amd64", i);
                if (ps_index_package_put(index, &rec) != 0) {
                    fprintf(stderr, "child %u: %s\n", w, pkgstore_error_detail());
                    _exit(11);
                }
            }
            ps_index_free(index);
            _exit(0);
        }
    }
    for (unsigned int w = 0; w < WRITERS; w++) {
        int status;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    check_all_writers(fx->index);
}

struct thread_arg {
    ps_index *index;
    unsigned int writer;
};

static void *writer_thread(void *arg)
{
    struct thread_arg *ta = arg;
    put_range(ta->index, ta->writer);
    return NULL;
}

static void test_index__concurrent_threads(void **state)
{
    struct fixture *fx = *state;
    ps_index *index = open_index(fx->index, 64 << 10);
    pthread_t threads[WRITERS];
    struct thread_arg args[WRITERS];

    for (unsigned int w = 0; w < WRITERS; w++) {
        args[w].index = index;
        args[w].writer = w;
        assert_int_equal(pthread_create(&threads[w], NULL, writer_thread, &args[w]), 0);
    }
    for (unsigned int w = 0; w < WRITERS; w++)
        pthread_join(threads[w], NULL);
    ps_index_free(index);
    check_all_writers(fx->index);
}

/* ---------------------------------------------------------------- stale readers */

static int hold_read(MDB_txn *txn, ps_index *index, void *payload)
{
    int fd = *(int *)payload;
    (void)txn;
    (void)index;
    if (write(fd, "r", 1) != 1)
        _exit(12);
    for (;;)
        pause();
    return 0;
}

static int count_reader(const char *msg, void *ctx)
{
    /* the first line is a header: "    pid     thread     txnid" */
    if (strstr(msg, "pid") == NULL && strstr(msg, "(no active readers)") == NULL)
        (*(int *)ctx)++;
    return 0;
}

static int raw_reader_count(const char *dir)
{
    MDB_env *env;
    int count = 0;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    mdb_env_set_maxreaders(env, 1024);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0644), 0);
    mdb_reader_list(env, count_reader, &count);
    mdb_env_close(env);
    return count;
}

/* LMDB resets the reader table when the first process opens the
 * environment, so a stale slot only survives while some other process keeps
 * the environment open: a "holder" child does that here. */
static void test_index__stale_reader_cleared_at_open(void **state)
{
    struct fixture *fx = *state;
    int ready[2], release[2], held[2];
    char c;
    pid_t holder, reader;
    int status;

    ps_index_free(open_index(fx->index, 0));
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    holder = fork();
    assert_true(holder >= 0);
    if (holder == 0) {
        ps_index *index = NULL;
        close(ready[0]);
        close(release[1]);
        if (ps_index_open(&index, fx->index, 0, 1, 0) != 0)
            _exit(10);
        if (write(ready[1], "h", 1) != 1)
            _exit(11);
        while (read(release[0], &c, 1) > 0)
            ;
        ps_index_free(index);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);

    assert_int_equal(pipe(held), 0);
    reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        ps_index *index = NULL;
        close(held[0]);
        close(release[1]);
        if (ps_index_open(&index, fx->index, 0, 1, 0) != 0)
            _exit(10);
        ps_index_read(index, hold_read, &held[1]);
        _exit(13);
    }
    close(held[1]);
    assert_int_equal(read(held[0], &c, 1), 1); /* the reader holds a read txn */
    close(held[0]);
    kill(reader, SIGKILL);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_true(WIFSIGNALED(status));

    assert_int_equal(raw_reader_count(fx->index), 1); /* the dead reader's slot */
    ps_index_free(open_index(fx->index, 0));          /* mdb_reader_check() */
    assert_int_equal(raw_reader_count(fx->index), 0);

    close(release[1]);
    assert_int_equal(waitpid(holder, &status, 0), holder);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---------------------------------------------------------------- public API over a store */

static pkgstore_store *open_store(struct fixture *fx)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    opts.durability = PKGSTORE_DURABILITY_NONE;
    assert_ok(pkgstore_store_open(&fx->store, fx->dir, &opts));
    return fx->store;
}

struct names {
    size_t count;
    char seen[8][300];
};

static int names_cb(const pkgstore_package_record *record, void *payload)
{
    struct names *names = payload;
    if (names->count < 8)
        snprintf(names->seen[names->count], sizeof(names->seen[0]), "%s %s",
                 pkgstore_package_record_name(record), pkgstore_package_record_version(record));
    names->count++;
    return 0;
}

static int blobs_cb(const pkgstore_blob_record *record, void *payload)
{
    (void)record;
    (*(size_t *)payload)++;
    return 0;
}

/* The public side reads: package records come from the registry (here
 * written through the private call, as it does), blob records from the
 * store; records are opaque and read through accessors. */
static void test_index__public_package_api(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store *store = open_store(fx);
    pkgstore_package_record rec, *out = NULL;
    pkgstore_blob_record blob;
    pkgstore_digest digest, missing;
    struct names names;
    size_t blobs = 0;

    assert_ok(pkgstore_store_add_buffer(&digest, store, "artifact", 8));
    assert_ok(pkgstore_index_blob_get(&blob, store, &digest));
    assert_int_equal(blob.size, 8);
    assert_ok(pkgstore_index_blob_foreach(store, blobs_cb, &blobs));
    assert_int_equal(blobs, 1);

    make_package(&rec, "otelcol", "1.0.0", "linux/amd64", 1);
    rec.digest = digest;
    assert_ok(ps_index_package_put(ps_store_index(store), &rec));
    make_package(&rec, "otelcol", "1.1.0", "linux/amd64", 2);
    rec.digest = digest;
    rec.type = PKGSTORE_TYPE_ADDON;
    rec.created = 1795773600;
    assert_ok(ps_index_package_put(ps_store_index(store), &rec));
    make_package(&rec, "otelcol-contrib", "1.0.0", "linux/amd64", 3);
    rec.digest = digest;
    assert_ok(ps_index_package_put(ps_store_index(store), &rec));

    assert_ok(pkgstore_index_package_get(&out, store, "otelcol", "1.1.0", "linux/amd64"));
    assert_non_null(out);
    assert_string_equal(pkgstore_package_record_name(out), "otelcol");
    assert_string_equal(pkgstore_package_record_version(out), "1.1.0");
    assert_string_equal(pkgstore_package_record_platform(out), "linux/amd64");
    assert_int_equal(pkgstore_package_record_type(out), PKGSTORE_TYPE_ADDON);
    assert_memory_equal(pkgstore_package_record_digest(out)->bytes, digest.bytes, 32);
    assert_int_equal(pkgstore_package_record_size(out), 1002); /* make_package, seed 2 */
    assert_string_equal(pkgstore_package_record_format(out), "tar+zstd");
    assert_string_equal(pkgstore_package_record_entrypoint(out), "bin/otelcol-2");
    assert_int_equal(pkgstore_package_record_created(out), 1795773600);
    pkgstore_package_record_free(out);
    pkgstore_package_record_free(NULL);

    out = &rec; /* a failure leaves NULL, nothing to free */
    assert_int_equal(pkgstore_index_package_get(&out, store, "ghost", "1.0.0", "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
    assert_null(out);
    assert_string_equal(pkgstore_error_detail(), "package ghost 1.0.0 linux/amd64: not in the index");
    assert_int_equal(pkgstore_index_package_get(&out, store, "", "1.0.0", "linux/amd64"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_index_package_get(NULL, store, "otelcol", "1.0.0", "linux/amd64"),
                     PKGSTORE_EINVALID);

    /* a name walk does not run into a longer name sharing the prefix */
    memset(&names, 0, sizeof(names));
    assert_ok(pkgstore_index_package_foreach(store, "otelcol", names_cb, &names));
    assert_int_equal(names.count, 2);
    assert_string_equal(names.seen[0], "otelcol 1.0.0");
    assert_string_equal(names.seen[1], "otelcol 1.1.0");
    memset(&names, 0, sizeof(names));
    assert_ok(pkgstore_index_package_foreach(store, NULL, names_cb, &names));
    assert_int_equal(names.count, 3);

    assert_int_equal(pkgstore_index_package_foreach(store, NULL, NULL, NULL), PKGSTORE_EINVALID);
    memset(&missing, 0x5a, sizeof(missing));
    assert_int_equal(pkgstore_index_blob_get(&blob, store, &missing), PKGSTORE_ENOTFOUND);
}

struct problems {
    size_t count;
    char paths[8][256];
    int repaired[8];
};

static int problems_cb(const pkgstore_fsck_problem *problem, void *payload)
{
    struct problems *problems = payload;
    if (problem->kind == PKGSTORE_FSCK_MISSING && problems->count < 8) {
        snprintf(problems->paths[problems->count], sizeof(problems->paths[0]), "%s",
                 problem->path);
        problems->repaired[problems->count] = problem->repaired;
        problems->count++;
    }
    return 0;
}

static int has_path(const struct problems *problems, const char *path)
{
    for (size_t i = 0; i < problems->count; i++)
        if (strcmp(problems->paths[i], path) == 0)
            return 1;
    return 0;
}

/* fsck through the store: every kind of record pointing at a vanished blob
 * is reported with a readable path, and repair drops it. */
static void test_index__check_refs_reports_and_repairs(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store *store = open_store(fx);
    pkgstore_package_record rec;
    pkgstore_digest digest;
    pkgstore_fsck_report report;
    struct problems problems;
    struct raw_manifest manifest = {"demo\0" "1.0.0", 10, {{0}}};
    char path[4096], text[PKGSTORE_DIGEST_STR_SIZE], expected[256];

    assert_ok(pkgstore_store_add_buffer(&digest, store, "soon gone", 9));
    make_package(&rec, "demo", "1.0.0", "linux/amd64", 1);
    rec.digest = digest;
    assert_ok(ps_index_package_put(ps_store_index(store), &rec));
    manifest.digest = digest;
    assert_ok(ps_index_write(ps_store_index(store), write_raw_manifest, &manifest));
    assert_ok(pkgstore_gc_pin(store, &digest, "test"));

    assert_ok(ps_store_blob_path(path, sizeof(path), store, &digest, ""));
    assert_int_equal(unlink(path), 0);

    memset(&problems, 0, sizeof(problems));
    assert_ok(pkgstore_store_fsck(&report, store, 0, problems_cb, &problems));
    assert_int_equal(report.missing, 4);
    assert_int_equal(problems.count, 4);
    pkgstore_digest_format(text, &digest);
    assert_true(has_path(&problems, "index/packages/demo 1.0.0 linux/amd64"));
    assert_true(has_path(&problems, "index/manifests/demo 1.0.0"));
    snprintf(expected, sizeof(expected), "index/blobs/%s", text);
    assert_true(has_path(&problems, expected));
    snprintf(expected, sizeof(expected), "index/pins/%s", text);
    assert_true(has_path(&problems, expected));
    assert_int_equal(problems.repaired[0], 0);

    memset(&problems, 0, sizeof(problems));
    assert_ok(pkgstore_store_fsck(&report, store, PKGSTORE_FSCK_REPAIR, problems_cb, &problems));
    assert_int_equal(report.missing, 4);
    assert_int_equal(report.repaired, 4);
    assert_int_equal(problems.repaired[0], 1);

    memset(&problems, 0, sizeof(problems));
    assert_ok(pkgstore_store_fsck(&report, store, 0, problems_cb, &problems));
    assert_int_equal(report.missing, 0);
    assert_int_equal(problems.count, 0);
}

/* ---------------------------------------------------------------- package types */

static void test_index__package_type_names(void **state)
{
    pkgstore_package_type type;
    (void)state;
    assert_string_equal(pkgstore_package_type_name(PKGSTORE_TYPE_PRIMARY), "primary");
    assert_string_equal(pkgstore_package_type_name(PKGSTORE_TYPE_ADDON), "addon");
    assert_null(pkgstore_package_type_name((pkgstore_package_type)5));
    assert_ok(pkgstore_package_type_parse(&type, "addon"));
    assert_int_equal(type, PKGSTORE_TYPE_ADDON);
    assert_ok(pkgstore_package_type_parse(&type, "primary"));
    assert_int_equal(type, PKGSTORE_TYPE_PRIMARY);
    assert_int_equal(pkgstore_package_type_parse(&type, "Primary"), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "'Primary'"));
    assert_int_equal(pkgstore_package_type_parse(&type, NULL), PKGSTORE_EINVALID);
}

/* ---------------------------------------------------------------- a full disk */

static int put_big(MDB_txn *txn, ps_index *index, void *payload)
{
    static char value[256 * 1024]; /* overflow pages, written at the end of the file */
    MDB_val key = {strlen(payload), payload}, val = {sizeof(value), value};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_META), &key, &val, 0);
    return rc ? ps_index_error(rc, "test: put %s", (const char *)payload) : 0;
}

/* The child's side: 0 when a full disk under the index is PKGSTORE_ENOSPC,
 * and the index works again once there is room. */
static int enospc_child(const char *dir)
{
    char index_dir[256], filler[256];
    ps_index *index = NULL;
    snprintf(index_dir, sizeof(index_dir), "%s/index", dir);
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    if (mkdir(index_dir, 0755) != 0 || ps_index_open(&index, index_dir, 0, 0, 0) != 0) {
        fprintf(stderr, "open: %s\n", pkgstore_error_detail());
        return 10;
    }
    if (ps_index_write(index, put_big, "before") != 0) {
        fprintf(stderr, "first write: %s\n", pkgstore_error_detail());
        return 11;
    }
    /* one page left: LMDB's write of the next transaction comes short */
    if (small_disk_fill(filler, 4096) != 0)
        return 12;
    int error = ps_index_write(index, put_big, "full");
    if (error != PKGSTORE_ENOSPC) {
        fprintf(stderr, "a full disk gave %s: %s\n", pkgstore_error_name(error),
                pkgstore_error_detail());
        return 13;
    }
    fprintf(stderr, "full disk: %s\n", pkgstore_error_detail());
    if (!strstr(pkgstore_error_detail(), "no space left on device") ||
        !strstr(pkgstore_error_detail(), "index")) {
        fprintf(stderr, "detail: %s\n", pkgstore_error_detail());
        return 14;
    }
    /* room again: the index takes writes, and kept what it had */
    if (unlink(filler) != 0 || ps_index_write(index, put_big, "after") != 0) {
        fprintf(stderr, "after: %s\n", pkgstore_error_detail());
        return 15;
    }
    ps_index_free(index);
    return 0;
}

/* Issue 9: LMDB turns the short write of a full disk into EIO
 * ("lmdb: Input/output error"); the index says ENOSPC. */
static void test_index__full_disk_is_enospc(void **state)
{
    struct fixture *fx = *state;
    small_disk_test(fx->dir, enospc_child);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_index__full_disk_is_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__open_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__open_twice_shares_environment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__open_missing_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__unknown_format_refused, setup, teardown),
        cmocka_unit_test(test_index__error_translation),
        cmocka_unit_test_setup_teardown(test_index__blob_roundtrip_keeps_first_added, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__blob_delete_and_notfound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__package_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__package_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__package_notfound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__foreach_order_prefix_and_batches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__nested_transactions_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__map_full_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__map_resized_by_other_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__concurrent_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__stale_reader_cleared_at_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index__public_package_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index__check_refs_reports_and_repairs, setup,
                                        teardown),
        cmocka_unit_test(test_index__package_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
