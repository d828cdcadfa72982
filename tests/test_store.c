/*
 * Tests for the blob store: open and format marker, the writer (commit,
 * abort, mismatches, already-exists), add_fd paths, read side, verify,
 * fsck and repair, zstd copies, batch mode, the store lock, concurrent
 * processes and ENOSPC on a small tmpfs. The crash test is in
 * test_store_crash.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <zstd.h>

#include "store_test_util.h"
#include "store_impl.h"

struct fixture {
    char *dir;
    char store_dir[4096];
    pkgstore_store *store;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = make_tmpdir();
    if (fx->dir == NULL)
        return -1;
    snprintf(fx->store_dir, sizeof(fx->store_dir), "%s/store", fx->dir);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
    if (fx->store == NULL)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_free(fx->store);
    rm_rf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void path_in(char *buf, size_t size, const struct fixture *fx, const char *rel)
{
    snprintf(buf, size, "%s/%s", fx->store_dir, rel);
}

static int store_count(const struct fixture *fx, const char *rel)
{
    char path[4096];
    path_in(path, sizeof(path), fx, rel);
    return count_files(path, 1);
}

static void blob_file(char *buf, size_t size, const struct fixture *fx, const pkgstore_digest *d)
{
    char rel[128], hex[65];
    pkgstore_digest_format_hex(hex, d);
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%s", hex, hex);
    path_in(buf, size, fx, rel);
}

/* ------------------------------------------------------------------ open */

static void test_store__open_creates_layout(void **state)
{
    struct fixture *fx = *state;
    char path[4096];
    struct stat st;
    pkgstore_store *again = NULL;
    const char *names[] = {"pkgstore.json", "blobs/sha256", "tmp", "index", "lock"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path_in(path, sizeof(path), fx, names[i]);
        assert_int_equal(stat(path, &st), 0);
    }
    assert_string_equal(pkgstore_store_path(fx->store), fx->store_dir);
    assert_int_equal(pkgstore_store_open(&again, fx->store_dir, NULL), 0);
    pkgstore_store_free(again);
}

static void test_store__unknown_format_refused(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *other = NULL;
    char path[4096];

    path_in(path, sizeof(path), fx, "pkgstore.json");
    chmod(path, 0644);
    assert_int_equal(write_file(path, "{\"format\": 2}", 13), 0);
    assert_int_equal(pkgstore_store_open(&other, fx->store_dir, NULL), PKGSTORE_EFORMAT);
    assert_null(other);
    assert_non_null(strstr(pkgstore_error_detail(), "unknown store format 2"));

    assert_int_equal(write_file(path, "{format", 7), 0);
    assert_int_equal(pkgstore_store_open(&other, fx->store_dir, NULL), PKGSTORE_EFORMAT);

    /* a non-empty directory that is not a store is not taken over */
    snprintf(path, sizeof(path), "%s/notastore", fx->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/notastore/file", fx->dir);
    write_file(path, "x", 1);
    snprintf(path, sizeof(path), "%s/notastore", fx->dir);
    assert_int_equal(pkgstore_store_open(&other, path, NULL), PKGSTORE_EFORMAT);

    /* a file where the store should be: said so, with no hint to create it */
    snprintf(path, sizeof(path), "%s/notastore/file", fx->dir);
    assert_int_equal(pkgstore_store_open(&other, path, NULL), PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "Not a directory"));
    assert_null(strstr(pkgstore_error_detail(), "create it"));

    /* no_create on a missing store */
    opts.no_create = 1;
    snprintf(path, sizeof(path), "%s/missing", fx->dir);
    assert_int_equal(pkgstore_store_open(&other, path, &opts), PKGSTORE_ENOTFOUND);
    opts.version = 99;
    assert_int_equal(pkgstore_store_open(&other, path, &opts), PKGSTORE_EINVALID);
}

static void test_store__tmp_cleanup_at_open(void **state)
{
    struct fixture *fx = *state;
    char stale[4096], live[4096], other[4096];
    pkgstore_store *again = NULL;
    int live_fd;

    path_in(stale, sizeof(stale), fx, "tmp/ingest-1-dead");
    path_in(live, sizeof(live), fx, "tmp/ingest-2-alive");
    path_in(other, sizeof(other), fx, "tmp/not-ours");
    assert_int_equal(write_file(stale, "partial", 7), 0);
    assert_int_equal(write_file(live, "partial", 7), 0);
    assert_int_equal(write_file(other, "x", 1), 0);
    live_fd = open(live, O_RDONLY);
    assert_int_equal(flock(live_fd, LOCK_EX), 0); /* as a live writer holds it */

    assert_int_equal(pkgstore_store_open(&again, fx->store_dir, NULL), 0);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0); /* not ours: fsck reports it */
    pkgstore_store_free(again);
    close(live_fd);
    unlink(live);
    unlink(other);
}

static void test_store__concurrent_create(void **state)
{
    struct fixture *fx = *state;
    char fresh[4200];
    pid_t pids[6];
    snprintf(fresh, sizeof(fresh), "%s/fresh", fx->dir);
    for (int c = 0; c < 6; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            pkgstore_store *store = open_store_mode(fresh, PKGSTORE_DURABILITY_NONE);
            int error = store ? pkgstore_store_add_buffer(NULL, store, "first", 5) : -1;
            pkgstore_store_free(store);
            _exit(error == 0 ? 0 : 1);
        }
    }
    for (int c = 0; c < 6; c++) {
        int status = -1;
        waitpid(pids[c], &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

/* ------------------------------------------------------------------ writer */

static void test_store__writer_commit(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "hello, blob store";
    pkgstore_store_writer *writer = NULL;
    pkgstore_digest digest, expected;
    pkgstore_blob_record record;
    uint64_t size = 0;
    char path[4096];
    struct stat st;
    void *data = NULL;
    size_t len = 0;

    pkgstore_digest_buffer(&expected, text, strlen(text));
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, &expected,
                                                (int64_t)strlen(text)), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, text, 5), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, text + 5, strlen(text) - 5), 0);
    assert_int_equal(pkgstore_store_writer_commit(&digest, &size, writer), 0);
    assert_true(pkgstore_digest_equal(&digest, &expected));
    assert_int_equal(size, strlen(text));

    blob_file(path, sizeof(path), fx, &digest);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0444);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);
    assert_int_equal(pkgstore_store_blob_stat(&size, fx->store, &digest), 0);
    assert_int_equal(size, strlen(text));
    assert_int_equal(pkgstore_store_blob_read(&data, &len, fx->store, &digest, 1024), 0);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(data, text, len);
    pkgstore_free(data);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digest), 0);
    assert_int_equal(record.size, strlen(text));
    assert_int_equal(store_count(fx, "tmp"), 0);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &digest), 0);
}

static void test_store__writer_abort(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer = NULL;
    enum ps_tmp_mode modes[] = {PS_TMP_TMPFILE, PS_TMP_NAMED};

    for (size_t i = 0; i < 2; i++) {
        ps_store_set_tmp_mode(fx->store, modes[i]);
        assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, NULL, -1), 0);
        assert_int_equal(pkgstore_store_writer_write(writer, "abc", 3), 0);
        pkgstore_store_writer_abort(writer);
        assert_int_equal(store_count(fx, "blobs"), 0);
        assert_int_equal(store_count(fx, "tmp"), 0);
    }
    pkgstore_store_writer_abort(NULL);
}

static void test_store__digest_mismatch(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer = NULL;
    pkgstore_digest wrong, digest;
    char wrong_text[PKGSTORE_DIGEST_STR_SIZE];

    pkgstore_digest_buffer(&wrong, "something else", 14);
    pkgstore_digest_format(wrong_text, &wrong);
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, &wrong, -1), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, "payload", 7), 0);
    assert_int_equal(pkgstore_store_writer_commit(&digest, NULL, writer), PKGSTORE_EDIGEST_MISMATCH);
    /* both values are in the detail */
    assert_non_null(strstr(pkgstore_error_detail(), wrong_text));
    pkgstore_digest_buffer(&digest, "payload", 7);
    pkgstore_digest_format(wrong_text, &digest);
    assert_non_null(strstr(pkgstore_error_detail(), wrong_text));
    assert_int_equal(store_count(fx, "blobs"), 0);
    assert_int_equal(store_count(fx, "tmp"), 0);
}

static void test_store__size_mismatch(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer = NULL;

    /* too few bytes: at commit */
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, NULL, 10), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, "12345", 5), 0);
    assert_int_equal(pkgstore_store_writer_commit(NULL, NULL, writer), PKGSTORE_ESIZE_MISMATCH);
    assert_non_null(strstr(pkgstore_error_detail(), "expected 10 bytes, got 5"));
    /* too many: at the write that overflows, and the writer is dead */
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, NULL, 3), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, "12345", 5), PKGSTORE_ESIZE_MISMATCH);
    assert_non_null(strstr(pkgstore_error_detail(), "expected 3 bytes"));
    assert_int_equal(pkgstore_store_writer_write(writer, "1", 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_store_writer_commit(NULL, NULL, writer), PKGSTORE_EINVALID);
    assert_int_equal(store_count(fx, "blobs"), 0);
    assert_int_equal(store_count(fx, "tmp"), 0);
}

static void test_store__already_exists_writes_nothing(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest first, second;
    struct stat before, after;
    char path[4096];

    assert_int_equal(pkgstore_store_add_buffer(&first, fx->store, "same bytes", 10), 0);
    blob_file(path, sizeof(path), fx, &first);
    assert_int_equal(stat(path, &before), 0);
    ps_store_set_tmp_mode(fx->store, PS_TMP_NAMED);
    assert_int_equal(pkgstore_store_add_buffer(&second, fx->store, "same bytes", 10), 0);
    ps_store_set_tmp_mode(fx->store, PS_TMP_TMPFILE);
    assert_int_equal(pkgstore_store_add_buffer(&second, fx->store, "same bytes", 10), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_true(pkgstore_digest_equal(&first, &second));
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(after.st_nlink, 1);
    assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    assert_int_equal(store_count(fx, "blobs"), 1);
    assert_int_equal(store_count(fx, "tmp"), 0);
}

static void test_store__empty_blob(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest, expected;
    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "", 0), 0);
    pkgstore_digest_buffer(&expected, "", 0);
    assert_true(pkgstore_digest_equal(&digest, &expected));
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &digest), 0);
}

/* ------------------------------------------------------------------ add_fd */

static void test_store__add_file_and_fd(void **state)
{
    struct fixture *fx = *state;
    size_t len = (5u << 20) + 12345; /* past the fast-path threshold */
    unsigned char *data = malloc(len);
    unsigned int seed = 7;
    pkgstore_digest digest, expected, tail;
    uint64_t size = 0;
    char input[4096];
    int fd, pipefd[2];
    pid_t pid;

    fill_random(data, len, &seed);
    snprintf(input, sizeof(input), "%s/input", fx->dir);
    assert_int_equal(write_file(input, data, len), 0);
    pkgstore_digest_buffer(&expected, data, len);

    for (int mode = 0; mode < 2; mode++) {
        ps_store_set_tmp_mode(fx->store, mode ? PS_TMP_NAMED : PS_TMP_TMPFILE);
        assert_int_equal(pkgstore_store_add_file(&digest, &size, fx->store, input, NULL, -1), 0);
        assert_true(pkgstore_digest_equal(&digest, &expected));
        assert_int_equal(size, len);
    }
    /* known size and digest */
    assert_int_equal(pkgstore_store_add_file(&digest, &size, fx->store, input, &expected,
                                             (int64_t)len), 0);
    /* wrong expected size: refused, nothing left behind */
    assert_int_equal(pkgstore_store_add_file(&digest, &size, fx->store, input, NULL,
                                             (int64_t)len - 1), PKGSTORE_ESIZE_MISMATCH);
    assert_int_equal(store_count(fx, "tmp"), 0);
    /* from the fd's current offset */
    fd = open(input, O_RDONLY);
    assert_int_equal(lseek(fd, 4096, SEEK_SET), 4096);
    assert_int_equal(pkgstore_store_add_fd(&digest, &size, fx->store, fd, NULL, -1), 0);
    pkgstore_digest_buffer(&tail, data + 4096, len - 4096);
    assert_true(pkgstore_digest_equal(&digest, &tail));
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)len);
    close(fd);
    /* a pipe takes the streaming path */
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        for (size_t off = 0; off < len;) {
            ssize_t n = write(pipefd[1], data + off, len - off > 65536 ? 65536 : len - off);
            if (n <= 0)
                _exit(1);
            off += (size_t)n;
        }
        _exit(0);
    }
    close(pipefd[1]);
    assert_int_equal(pkgstore_store_add_fd(&digest, &size, fx->store, pipefd[0], NULL, -1), 0);
    close(pipefd[0]);
    waitpid(pid, NULL, 0);
    assert_true(pkgstore_digest_equal(&digest, &expected));
    /* missing input */
    assert_int_equal(pkgstore_store_add_file(&digest, &size, fx->store, "/nonexistent/x", NULL, -1),
                     PKGSTORE_ENOTFOUND);
    assert_int_equal(store_count(fx, "blobs"), 2);
    assert_int_equal(store_count(fx, "tmp"), 0);
    free(data);
}

/* ------------------------------------------------------------------ read side */

static int count_cb(const pkgstore_digest *digest, uint64_t size, void *payload)
{
    (void)digest;
    (void)size;
    (*(int *)payload)++;
    return 0;
}

static void test_store__read_side(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest, missing;
    uint64_t size = 0;
    void *data = NULL;
    size_t len = 0;
    int fd = -1, count = 0;
    char buf[16];

    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "0123456789", 10), 0);
    assert_int_equal(pkgstore_store_add_buffer(NULL, fx->store, "other", 5), 0);
    assert_int_equal(pkgstore_store_blob_open(&fd, &size, fx->store, &digest), 0);
    assert_int_equal(size, 10);
    assert_int_equal(read(fd, buf, sizeof(buf)), 10);
    close(fd);
    assert_int_equal(pkgstore_store_blob_read(&data, &len, fx->store, &digest, 9), PKGSTORE_ELIMIT);
    assert_null(data);
    pkgstore_digest_buffer(&missing, "nope", 4);
    assert_int_equal(pkgstore_store_blob_open(&fd, &size, fx->store, &missing), PKGSTORE_ENOTFOUND);
    assert_int_equal(fd, -1);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &missing), 0);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &missing), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_store_foreach(fx->store, count_cb, &count), 0);
    assert_int_equal(count, 2);

    assert_int_equal(pkgstore_store_zstd_write(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_zstd_open(&fd, &size, fx->store, &digest), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &digest), PKGSTORE_ENOTFOUND);
    {
        pkgstore_blob_record record;
        assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digest), PKGSTORE_ENOTFOUND);
    }
}

static void test_store__read_only(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *ro = NULL;
    pkgstore_store_writer *writer = NULL;
    pkgstore_fsck_report report;
    pkgstore_digest digest, other;
    char stale[4096];

    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "kept", 4), 0);
    path_in(stale, sizeof(stale), fx, "tmp/ingest-5-dead");
    write_file(stale, "x", 1);
    opts.read_only = 1;
    assert_int_equal(pkgstore_store_open(&ro, fx->store_dir, &opts), 0);
    assert_int_equal(access(stale, F_OK), 0); /* read-only: no cleanup */
    assert_int_equal(pkgstore_store_blob_verify(ro, &digest), 0);
    assert_int_equal(pkgstore_store_add_buffer(&other, ro, "new", 3), PKGSTORE_EDENIED);
    assert_int_equal(pkgstore_store_writer_open(&writer, ro, NULL, -1), PKGSTORE_EDENIED);
    assert_null(writer);
    assert_int_equal(pkgstore_store_blob_delete(ro, &digest), PKGSTORE_EDENIED);
    assert_int_equal(pkgstore_store_zstd_write(ro, &digest), PKGSTORE_EDENIED);
    assert_int_equal(pkgstore_store_fsck(&report, ro, 0, NULL, NULL), 0);
    assert_int_equal(report.blobs_checked, 1);
    assert_int_equal(report.stray, 1);
    assert_int_equal(pkgstore_store_fsck(&report, ro, PKGSTORE_FSCK_REPAIR, NULL, NULL),
                     PKGSTORE_EDENIED);
    pkgstore_store_free(ro);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);
    unlink(stale);
}

/* ------------------------------------------------------------------ verify, fsck */

struct problems {
    int missing, corrupt, stray, repaired;
};

static int collect_problem(const pkgstore_fsck_problem *problem, void *payload)
{
    struct problems *p = payload;
    assert_non_null(problem->path);
    assert_non_null(problem->detail);
    if (problem->kind == PKGSTORE_FSCK_MISSING)
        p->missing++;
    else if (problem->kind == PKGSTORE_FSCK_CORRUPT)
        p->corrupt++;
    else
        p->stray++;
    p->repaired += problem->repaired;
    return 0;
}

static void corrupt_file(const char *path)
{
    int fd;
    unsigned char byte;
    chmod(path, 0644);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, 0), 1);
    byte ^= 0x55;
    assert_int_equal(pwrite(fd, &byte, 1, 0), 1);
    close(fd);
}

static void test_store__verify_catches_corruption(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest, good;
    pkgstore_fsck_report report;
    struct problems found = {0};
    char path[4096], text[PKGSTORE_DIGEST_STR_SIZE];

    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "precious bytes", 14), 0);
    assert_int_equal(pkgstore_store_add_buffer(&good, fx->store, "fine bytes", 10), 0);
    blob_file(path, sizeof(path), fx, &digest);
    corrupt_file(path);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &digest), PKGSTORE_ECORRUPT);
    pkgstore_digest_format(text, &digest);
    assert_non_null(strstr(pkgstore_error_detail(), text));
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &good), 0);

    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, collect_problem, &found), 0);
    assert_int_equal(report.corrupt, 1);
    assert_int_equal(report.blobs_checked, 2);
    assert_int_equal(found.corrupt, 1);
    assert_int_equal(access(path, F_OK), 0); /* no repair: untouched */

    memset(&found, 0, sizeof(found));
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, collect_problem,
                                         &found), 0);
    assert_int_equal(report.corrupt, 1);
    assert_int_equal(report.repaired, 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(store_count(fx, "quarantine"), 1);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
    assert_int_equal(report.blobs_checked, 1);
}

static void test_store__fsck_missing_and_stray(void **state)
{
    struct fixture *fx = *state;
    pkgstore_package_record record;
    pkgstore_fsck_report report;
    struct problems found = {0};
    pkgstore_digest digest;
    char path[4096];

    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "binary", 6), 0);
    memset(&record, 0, sizeof(record));
    strcpy(record.name, "otelcol");
    strcpy(record.version, "0.98.0");
    strcpy(record.platform, "linux/amd64");
    strcpy(record.format, "binary");
    strcpy(record.entrypoint, "otelcol");
    record.digest = digest;
    record.size = 6;
    assert_int_equal(ps_index_package_put(ps_store_index(fx->store), &record), 0);
    /* the blob vanishes behind the store's back */
    blob_file(path, sizeof(path), fx, &digest);
    assert_int_equal(unlink(path), 0);
    /* strays */
    path_in(path, sizeof(path), fx, "blobs/sha256/zz");
    mkdir(path, 0755);
    path_in(path, sizeof(path), fx, "blobs/sha256/ab");
    mkdir(path, 0755);
    path_in(path, sizeof(path), fx, "blobs/sha256/ab/notablob");
    write_file(path, "x", 1);
    path_in(path, sizeof(path), fx, "tmp/ingest-99-stale");
    write_file(path, "partial", 7);

    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, collect_problem, &found), 0);
    assert_int_equal(report.missing, 2); /* the blob record and the package record */
    assert_int_equal(found.missing, 2);
    assert_int_equal(report.stray, 3);
    assert_int_equal(report.repaired, 0);

    memset(&found, 0, sizeof(found));
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, collect_problem,
                                         &found), 0);
    assert_int_equal(report.repaired, 5);
    assert_int_equal(found.repaired, 5);
    assert_int_equal(ps_index_package_get(&record, ps_store_index(fx->store), "otelcol",
                                          "0.98.0", "linux/amd64"), PKGSTORE_ENOTFOUND);
    assert_int_equal(store_count(fx, "tmp"), 0);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
}

struct stray_details {
    char text[2048];
};

static int collect_detail(const pkgstore_fsck_problem *problem, void *payload)
{
    struct stray_details *details = payload;
    size_t used = strlen(details->text);
    snprintf(details->text + used, sizeof(details->text) - used, "%d %s: %s\n",
             (int)problem->kind, problem->path, problem->detail);
    return 0;
}

/* The strays of docs/store-format.md's fsck table that the test above does
 * not make: a .zst copy without its blob, a blob in the wrong fan-out
 * directory, a blob name that is not a regular file, a foreign file in
 * tmp/. Each is reported and repair moves each to quarantine/. */
static void test_store__fsck_strays_of_every_kind(void **state)
{
    struct fixture *fx = *state;
    struct stray_details details;
    pkgstore_fsck_report report;
    pkgstore_digest absent, kept;
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], path[4096], rel[256];

    assert_int_equal(pkgstore_store_add_buffer(&kept, fx->store, "a good blob", 11), 0);
    /* a copy whose blob is not there */
    pkgstore_digest_buffer(&absent, "never added", 11);
    pkgstore_digest_format_hex(hex, &absent);
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s", hex);
    path_in(path, sizeof(path), fx, rel);
    mkdir(path, 0755);
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%s.zst", hex, hex);
    path_in(path, sizeof(path), fx, rel);
    assert_int_equal(write_file(path, "zst", 3), 0);
    /* a blob name in another fan-out directory */
    pkgstore_digest_format_hex(hex, &kept);
    snprintf(rel, sizeof(rel), "blobs/sha256/%s", hex[0] == '0' ? "ff" : "00");
    path_in(path, sizeof(path), fx, rel);
    mkdir(path, 0755);
    snprintf(rel, sizeof(rel), "blobs/sha256/%s/%s", hex[0] == '0' ? "ff" : "00", hex);
    path_in(path, sizeof(path), fx, rel);
    assert_int_equal(write_file(path, "a good blob", 11), 0);
    /* the name of a blob, as a symbolic link */
    pkgstore_digest_buffer(&absent, "never added either", 18);
    pkgstore_digest_format_hex(hex, &absent);
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s", hex);
    path_in(path, sizeof(path), fx, rel);
    mkdir(path, 0755);
    snprintf(rel, sizeof(rel), "blobs/sha256/%.2s/%s", hex, hex);
    path_in(path, sizeof(path), fx, rel);
    assert_int_equal(symlink("/etc/hostname", path), 0);
    /* not the store's */
    path_in(path, sizeof(path), fx, "tmp/notes.txt");
    assert_int_equal(write_file(path, "mine", 4), 0);

    memset(&details, 0, sizeof(details));
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, collect_detail, &details), 0);
    assert_int_equal(report.stray, 4);
    assert_int_equal(report.corrupt + report.missing + report.repaired, 0);
    assert_int_equal(report.blobs_checked, 1);
    assert_non_null(strstr(details.text, "zstd copy without its blob"));
    assert_non_null(strstr(details.text, "blob in the wrong directory"));
    assert_non_null(strstr(details.text, "not a regular file"));
    assert_non_null(strstr(details.text, "tmp/notes.txt: unknown entry in tmp/"));

    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, NULL, NULL), 0);
    assert_int_equal(report.stray, 4);
    assert_int_equal(report.repaired, 4);
    assert_int_equal(store_count(fx, "quarantine"), 4);
    assert_int_equal(store_count(fx, "tmp"), 0);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &kept), 0);
}

/* ------------------------------------------------------------------ zstd */

static void test_store__zstd_roundtrip(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *zstore = NULL;
    size_t len = 300000, zlen;
    unsigned char *data = malloc(len), *zdata, *back = malloc(len);
    pkgstore_digest digest;
    pkgstore_fsck_report report;
    uint64_t zsize = 0;
    char path[4096], zpath[4200];
    int fd = -1;

    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)("otelcol "[i % 8] + (i / 4096) % 3);
    pkgstore_store_free(fx->store);
    opts.durability = PKGSTORE_DURABILITY_NONE;
    opts.zstd_copies = 1;
    assert_int_equal(pkgstore_store_open(&zstore, fx->store_dir, &opts), 0);
    fx->store = zstore;
    assert_int_equal(pkgstore_store_add_buffer(&digest, zstore, data, len), 0);
    assert_int_equal(pkgstore_store_zstd_write(zstore, &digest), 0); /* exists: success */
    assert_int_equal(pkgstore_store_zstd_open(&fd, &zsize, zstore, &digest), 0);
    assert_true(zsize > 0 && zsize < len);
    zdata = malloc(zsize);
    assert_int_equal(read(fd, zdata, zsize), (ssize_t)zsize);
    close(fd);
    zlen = ZSTD_decompress(back, len, zdata, zsize);
    assert_false(ZSTD_isError(zlen));
    assert_int_equal(zlen, len);
    assert_memory_equal(back, data, len);
    assert_int_equal(pkgstore_store_blob_verify(zstore, &digest), 0);

    /* a bad copy is caught by verify and by fsck, and repair removes it */
    blob_file(path, sizeof(path), fx, &digest);
    snprintf(zpath, sizeof(zpath), "%s.zst", path);
    chmod(zpath, 0644);
    fd = open(zpath, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, zdata, zsize / 2), (ssize_t)(zsize / 2));
    close(fd);
    assert_int_equal(pkgstore_store_blob_verify(zstore, &digest), PKGSTORE_ECORRUPT);
    assert_int_equal(pkgstore_store_fsck(&report, zstore, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt, 1);
    assert_int_equal(pkgstore_store_fsck(&report, zstore, PKGSTORE_FSCK_REPAIR, NULL, NULL), 0);
    assert_int_equal(access(zpath, F_OK), -1);
    assert_int_equal(access(path, F_OK), 0); /* the blob itself was fine */
    assert_int_equal(pkgstore_store_zstd_write(zstore, &digest), 0);
    assert_int_equal(pkgstore_store_blob_verify(zstore, &digest), 0);
    /* a corrupt blob never gets a copy */
    assert_int_equal(pkgstore_store_blob_delete(zstore, &digest), 0);
    assert_int_equal(pkgstore_store_add_buffer(&digest, zstore, data, len), 0);
    unlink(zpath);
    corrupt_file(path);
    assert_int_equal(pkgstore_store_zstd_write(zstore, &digest), PKGSTORE_ECORRUPT);
    assert_int_equal(access(zpath, F_OK), -1);
    assert_int_equal(store_count(fx, "tmp"), 0);
    free(zdata);
    free(data);
    free(back);
}

/* ------------------------------------------------------------------ durability */

static void test_store__batch_mode(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store *batch;
    pkgstore_blob_record record;
    pkgstore_digest digests[20];

    pkgstore_store_free(fx->store);
    fx->store = batch = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_BATCH);
    assert_non_null(batch);
    for (int i = 0; i < 20; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "batch blob %d", i);
        assert_int_equal(pkgstore_store_add_buffer(&digests[i], batch, text, (size_t)n), 0);
        assert_int_equal(pkgstore_store_blob_exists(batch, &digests[i]), 1);
    }
    /* not durable yet, so not recorded yet (invariant 2) */
    assert_int_equal(pkgstore_index_blob_get(&record, batch, &digests[0]), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_store_sync(batch), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(pkgstore_index_blob_get(&record, batch, &digests[i]), 0);
    assert_int_equal(pkgstore_store_sync(batch), 0);

    /* FSYNC mode works end to end too */
    pkgstore_store_free(fx->store);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_FSYNC);
    assert_int_equal(pkgstore_store_add_buffer(&digests[0], fx->store, "durable", 7), 0);
    assert_int_equal(pkgstore_store_add_buffer(&digests[0], fx->store, "durable", 7), 0);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digests[0]), 0);
}

/* ------------------------------------------------------------------ lock */

static void test_store__lock(void **state)
{
    struct fixture *fx = *state;
    int ready[2], done[2];
    char byte;
    pid_t pid;

    /* nesting on one handle */
    assert_int_equal(ps_store_lock(fx->store, 1, 1), 0);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0); /* the exclusive holder may nest */
    ps_store_unlock(fx->store);
    ps_store_unlock(fx->store);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0);
    ps_store_unlock(fx->store);
    ps_store_unlock(fx->store);

    /* another process holding a writer lock keeps repair out */
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid = fork();
    if (pid == 0) {
        pkgstore_store *child = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
        pkgstore_store_writer *writer = NULL;
        if (child == NULL || pkgstore_store_writer_open(&writer, child, NULL, -1) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1 || read(done[0], &byte, 1) != 1)
            _exit(1);
        pkgstore_store_writer_abort(writer);
        pkgstore_store_free(child);
        _exit(0);
    }
    assert_int_equal(read(ready[0], &byte, 1), 1);
    assert_int_equal(ps_store_lock(fx->store, 1, 1), PKGSTORE_ELOCKED);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0); /* other writers are fine */
    ps_store_unlock(fx->store);
    assert_int_equal(write(done[1], "d", 1), 1);
    {
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(ps_store_lock(fx->store, 1, 0), 0);
    ps_store_unlock(fx->store);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
}

static void test_store__reader_during_write(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store *reader = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
    pkgstore_store_writer *writer = NULL;
    pkgstore_fsck_report report;
    pkgstore_digest old, fresh;
    void *data = NULL;
    size_t len;

    assert_non_null(reader);
    assert_int_equal(pkgstore_store_add_buffer(&old, fx->store, "old blob", 8), 0);
    ps_store_set_tmp_mode(fx->store, PS_TMP_NAMED);
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, NULL, -1), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, "half", 4), 0);
    /* a second handle reads, verifies and checks while the write is open */
    assert_int_equal(pkgstore_store_blob_read(&data, &len, reader, &old, 100), 0);
    pkgstore_free(data);
    assert_int_equal(pkgstore_store_blob_verify(reader, &old), 0);
    assert_int_equal(pkgstore_store_fsck(&report, reader, 0, NULL, NULL), 0);
    assert_int_equal(report.stray, 0); /* a live ingest is not a stray */
    pkgstore_store_free(reader); /* a reopen does not clean a live ingest */
    reader = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
    assert_int_equal(store_count(fx, "tmp"), 1);
    assert_int_equal(pkgstore_store_writer_write(writer, " and the rest", 13), 0);
    assert_int_equal(pkgstore_store_writer_commit(&fresh, NULL, writer), 0);
    assert_int_equal(pkgstore_store_blob_exists(reader, &fresh), 1);
    pkgstore_store_free(reader);
}

/* ------------------------------------------------------------------ processes */

#define POOL 24
#define CHILDREN 4

static void make_pool_file(char *path, size_t size, const char *dir, int i)
{
    snprintf(path, size, "%s/in-%02d", dir, i);
}

static void test_store__concurrent_processes(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest expected[POOL];
    pkgstore_fsck_report report;
    pid_t pids[CHILDREN];
    int count = 0;

    for (int i = 0; i < POOL; i++) {
        size_t len = (size_t)(i % 3 == 0 ? (1u << 20) + 1000u * (unsigned)i : 3000u * (unsigned)i);
        unsigned char *data = malloc(len + 1);
        unsigned int seed = (unsigned int)i + 1;
        char path[4096];
        fill_random(data, len, &seed);
        make_pool_file(path, sizeof(path), fx->dir, i);
        assert_int_equal(write_file(path, data, len), 0);
        pkgstore_digest_buffer(&expected[i], data, len);
        free(data);
    }
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            pkgstore_store *store = open_store_mode(
                fx->store_dir, c == 0 ? PKGSTORE_DURABILITY_FSYNC : PKGSTORE_DURABILITY_NONE);
            if (store == NULL)
                _exit(10);
            if (c % 2)
                ps_store_set_tmp_mode(store, PS_TMP_NAMED);
            /* overlapping sets, in different orders: every child adds
             * two thirds of the pool, twice */
            for (int round = 0; round < 2; round++) {
                for (int k = 0; k < POOL; k++) {
                    int i = (c % 2 ? POOL - 1 - k : k + c * 3) % POOL;
                    pkgstore_digest digest;
                    char path[4096];
                    if ((i + c) % 3 == 0)
                        continue;
                    make_pool_file(path, sizeof(path), fx->dir, i);
                    if (pkgstore_store_add_file(&digest, NULL, store, path, &expected[i], -1) < 0) {
                        fprintf(stderr, "child %d: %s\n", c, pkgstore_error_detail());
                        _exit(11);
                    }
                }
            }
            pkgstore_store_free(store);
            _exit(0);
        }
    }
    for (int c = 0; c < CHILDREN; c++) {
        int status = -1;
        waitpid(pids[c], &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
    assert_int_equal(report.blobs_checked, POOL);
    for (int i = 0; i < POOL; i++) {
        pkgstore_blob_record record;
        assert_int_equal(pkgstore_store_blob_verify(fx->store, &expected[i]), 0);
        assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &expected[i]), 0);
    }
    assert_int_equal(pkgstore_store_foreach(fx->store, count_cb, &count), 0);
    assert_int_equal(count, POOL);
    assert_int_equal(store_count(fx, "tmp"), 0);
}

/* ------------------------------------------------------------------ threads */

struct thread_arg {
    pkgstore_store *store;
    int id;
    int failures;
};

static void *adder_thread(void *arg)
{
    struct thread_arg *t = arg;
    for (int i = 0; i < 40; i++) {
        char text[64];
        /* half of the blobs are shared with the other threads */
        int n = snprintf(text, sizeof(text), "blob %d from %d", i, i % 2 ? t->id : -1);
        if (pkgstore_store_add_buffer(NULL, t->store, text, (size_t)n) < 0)
            t->failures++;
    }
    return NULL;
}

static void *repair_thread(void *arg)
{
    struct thread_arg *t = arg;
    pkgstore_fsck_report report;
    for (int i = 0; i < 5; i++)
        if (pkgstore_store_fsck(&report, t->store, PKGSTORE_FSCK_REPAIR, NULL, NULL) < 0 ||
            report.corrupt + report.missing > 0)
            t->failures++;
    return NULL;
}

static void test_store__threads_share_a_handle(void **state)
{
    struct fixture *fx = *state;
    pthread_t threads[5];
    struct thread_arg args[5];
    pkgstore_fsck_report report;
    int count = 0;

    pkgstore_store_free(fx->store);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_BATCH);
    for (int i = 0; i < 5; i++) {
        args[i].store = fx->store;
        args[i].id = i;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&threads[i], NULL, i == 4 ? repair_thread : adder_thread,
                                        &args[i]), 0);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(pkgstore_store_sync(fx->store), 0);
    assert_int_equal(pkgstore_store_foreach(fx->store, count_cb, &count), 0);
    assert_int_equal(count, 20 + 4 * 20);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
}

/* ------------------------------------------------------------------ ENOSPC */

static void test_store__enospc(void **state)
{
    struct fixture *fx = *state;
    char mnt[4096], sdir[4200];
    pkgstore_store *small = NULL;
    pkgstore_store_writer *writer = NULL;
    pkgstore_fsck_report report;
    pkgstore_digest digest;
    size_t big = 4u << 20;
    unsigned char *data;
    int error = 0;

    if (geteuid() != 0) {
        print_message("SKIP test_store__enospc: needs root to mount a small tmpfs\n");
        skip();
    }
    snprintf(mnt, sizeof(mnt), "%s/small", fx->dir);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
        print_message("SKIP test_store__enospc: mount tmpfs: %s\n", strerror(errno));
        skip();
    }
    snprintf(sdir, sizeof(sdir), "%s/store", mnt);
    small = open_store_mode(sdir, PKGSTORE_DURABILITY_FSYNC);
    if (small == NULL)
        goto out;
    data = calloc(1, big);
    /* known size: refused up front */
    error = pkgstore_store_add_buffer(&digest, small, data, big);
    if (error != PKGSTORE_ENOSPC)
        fprintf(stderr, "add_buffer: %d %s\n", error, pkgstore_error_detail());
    /* unknown size: fails on a write */
    if (error == PKGSTORE_ENOSPC && pkgstore_store_writer_open(&writer, small, NULL, -1) == 0) {
        for (size_t off = 0; off < big && error == PKGSTORE_ENOSPC; off += 65536)
            if (pkgstore_store_writer_write(writer, data, 65536) < 0)
                break;
        error = pkgstore_store_writer_commit(&digest, NULL, writer);
        if (error != PKGSTORE_ENOSPC && error != PKGSTORE_EINVALID)
            fprintf(stderr, "writer: %d %s\n", error, pkgstore_error_detail());
    }
    /* a big file through the copy_file_range path */
    if (error == PKGSTORE_ENOSPC || error == PKGSTORE_EINVALID) {
        char input[4200];
        int add_error;
        snprintf(input, sizeof(input), "%s/big-input", fx->dir);
        write_file(input, data, big);
        add_error = pkgstore_store_add_file(&digest, NULL, small, input, NULL, -1);
        if (add_error != PKGSTORE_ENOSPC) {
            fprintf(stderr, "add_file: %d %s\n", add_error, pkgstore_error_detail());
            error = add_error;
        }
    }
    free(data);
    assert_int_equal(count_files(sdir, 0) >= 4, 1);
    {
        char sub[4300];
        snprintf(sub, sizeof(sub), "%s/blobs", sdir);
        assert_int_equal(count_files(sub, 1), 0);
        snprintf(sub, sizeof(sub), "%s/tmp", sdir);
        assert_int_equal(count_files(sub, 1), 0);
    }
    /* the store is still usable */
    assert_int_equal(pkgstore_store_add_buffer(&digest, small, "still works", 11), 0);
    assert_int_equal(pkgstore_store_fsck(&report, small, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
out:
    pkgstore_store_free(small);
    umount2(mnt, MNT_DETACH);
    assert_non_null(small);
    assert_int_equal(error == PKGSTORE_ENOSPC || error == PKGSTORE_EINVALID, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store__open_creates_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__unknown_format_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__tmp_cleanup_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__concurrent_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__writer_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__writer_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__digest_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__size_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__already_exists_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__add_file_and_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__read_side, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__verify_catches_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__fsck_missing_and_stray, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__fsck_strays_of_every_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__zstd_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__batch_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__reader_during_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__threads_share_a_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__enospc, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
