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
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <zstd.h>

#include "store_test_util.h"
#include "store_impl.h"

#define MAX_CHILDREN 8

struct fixture {
    char *dir;
    char store_dir[4096];
    pkgstore_store *store;
    pid_t children[MAX_CHILDREN]; /* still running: teardown kills them */
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
    /* a failed assertion leaves its helper processes: stop them by pid */
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (fx->children[i] > 0) {
            kill(fx->children[i], SIGKILL);
            waitpid(fx->children[i], NULL, 0);
        }
    }
    alarm(0);
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

static void put_package(pkgstore_store *store, const char *version, const pkgstore_digest *digest,
                        uint64_t size)
{
    pkgstore_package_record record;
    memset(&record, 0, sizeof(record));
    strcpy(record.name, "otelcol");
    snprintf(record.version, sizeof(record.version), "%s", version);
    strcpy(record.platform, "linux/amd64");
    strcpy(record.format, "binary");
    strcpy(record.entrypoint, "otelcol");
    record.digest = *digest;
    record.size = size;
    assert_int_equal(ps_index_package_put(ps_store_index(store), &record), 0);
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
    int missing, corrupt, stray, orphaned, repaired;
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
    else if (problem->kind == PKGSTORE_FSCK_ORPHAN)
        p->orphaned++;
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

/* A helper process holding the store lock: shared or exclusive through the
 * library, or a plain flock -x on <store>/lock as an operator would. */
enum hold_how { HOLD_SHARED, HOLD_EXCLUSIVE, HOLD_FLOCK_X };

struct holder {
    pid_t pid;
    int release_fd;
    int slot;
};

static int track_child(struct fixture *fx, pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (fx->children[i] == 0) {
            fx->children[i] = pid;
            return i;
        }
    }
    fail_msg("too many helper processes");
    return -1;
}

static void reap_child(struct fixture *fx, int slot, pid_t pid)
{
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fx->children[slot] = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void holder_start(struct fixture *fx, struct holder *h, enum hold_how how)
{
    int ready[2], release[2];
    char byte;

    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    h->pid = fork();
    assert_true(h->pid >= 0);
    if (h->pid == 0) {
        int rc = 1;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ready[0]);
        close(release[1]);
        if (how == HOLD_FLOCK_X) {
            char path[4200];
            int fd;
            snprintf(path, sizeof(path), "%s/lock", fx->store_dir);
            fd = open(path, O_RDWR);
            if (fd >= 0 && flock(fd, LOCK_EX) == 0 && write(ready[1], "r", 1) == 1 &&
                read(release[0], &byte, 1) == 1)
                rc = 0;
        } else {
            pkgstore_store *store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
            if (store != NULL && ps_store_lock(store, how == HOLD_EXCLUSIVE, 0) == 0) {
                if (write(ready[1], "r", 1) == 1 && read(release[0], &byte, 1) == 1)
                    rc = 0;
                ps_store_unlock(store);
            }
            pkgstore_store_free(store);
        }
        _exit(rc);
    }
    close(ready[1]);
    close(release[0]);
    h->release_fd = release[1];
    h->slot = track_child(fx, h->pid);
    assert_int_equal(read(ready[0], &byte, 1), 1);
    close(ready[0]);
}

static void holder_release(struct fixture *fx, struct holder *h)
{
    assert_int_equal(write(h->release_fd, "x", 1), 1);
    close(h->release_fd);
    reap_child(fx, h->slot, h->pid);
}

/* Wait until another handle sees that someone waits for the lock
 * exclusively (the intent lock), the event the tests below sync on. */
static void wait_for_exclusive_waiter(const char *store_dir)
{
    char path[4200];
    struct flock fl;
    int fd;
    snprintf(path, sizeof(path), "%s/lock.intent", store_dir);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    for (;;) {
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_len = 1;
        assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
        if (fl.l_type != F_UNLCK)
            break;
        sched_yield();
    }
    close(fd);
}

static void test_store__lock(void **state)
{
    struct fixture *fx = *state;
    struct holder h;

    /* nesting on one handle */
    assert_int_equal(ps_store_lock(fx->store, 1, 1), 0);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0); /* the exclusive holder may nest */
    ps_store_unlock(fx->store);
    ps_store_unlock(fx->store);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0);
    /* shared to exclusive would wait for itself: refused, not a hang */
    assert_int_equal(ps_store_lock(fx->store, 1, 0), PKGSTORE_EINVALID);
    ps_store_unlock(fx->store);
    ps_store_unlock(fx->store);

    /* another process holding the lock shared keeps repair out */
    holder_start(fx, &h, HOLD_SHARED);
    assert_int_equal(ps_store_lock(fx->store, 1, 1), PKGSTORE_ELOCKED);
    assert_int_equal(ps_store_lock(fx->store, 0, 1), 0); /* other writers are fine */
    ps_store_unlock(fx->store);
    holder_release(fx, &h);
    assert_int_equal(ps_store_lock(fx->store, 1, 0), 0);
    ps_store_unlock(fx->store);
}

/* Issue 10 section 4: `flock -x <store>/lock` froze the server. With a
 * lock timeout nothing waits longer than it: writes fail with
 * PKGSTORE_ELOCKED and leave nothing, reads never touch the lock. */
static void test_store__lock_timeout(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer = NULL;
    pkgstore_gc_report gc_report;
    pkgstore_fsck_report report;
    pkgstore_digest digest, fresh;
    struct holder h;
    void *data = NULL;
    size_t len = 0;
    uint64_t size = 0;
    int fd = -1;

    alarm(120); /* a wait without end would be the bug: fail, do not hang */
    assert_int_equal(pkgstore_store_add_buffer(&digest, fx->store, "served", 6), 0);
    assert_int_equal(pkgstore_store_zstd_write(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_set_lock_timeout(fx->store, 50), 0);
    holder_start(fx, &h, HOLD_FLOCK_X);

    /* writes: refused, up front for a stream */
    assert_int_equal(pkgstore_store_writer_open(&writer, fx->store, NULL, -1), PKGSTORE_ELOCKED);
    assert_null(writer);
    assert_non_null(strstr(pkgstore_error_detail(), "lock"));
    assert_int_equal(pkgstore_store_add_buffer(&fresh, fx->store, "not now", 7), PKGSTORE_ELOCKED);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &digest), PKGSTORE_ELOCKED);
    assert_int_equal(pkgstore_store_zstd_write(fx->store, &digest), PKGSTORE_ELOCKED);
    assert_int_equal(pkgstore_gc_run(&gc_report, fx->store, NULL), PKGSTORE_ELOCKED);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, NULL, NULL),
                     PKGSTORE_ELOCKED);
    assert_int_equal(report.blobs_checked, 1); /* hashed before it needed the lock */
    /* 0: not waiting at all */
    assert_int_equal(pkgstore_store_set_lock_timeout(fx->store, 0), 0);
    assert_int_equal(pkgstore_store_add_buffer(&fresh, fx->store, "not now", 7), PKGSTORE_ELOCKED);
    pkgstore_digest_buffer(&fresh, "not now", 7);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &fresh), 0);
    assert_int_equal(store_count(fx, "tmp"), 0);

    /* reads (downloads) do not care */
    assert_int_equal(pkgstore_store_blob_open(&fd, &size, fx->store, &digest), 0);
    assert_int_equal(size, 6);
    close(fd);
    assert_int_equal(pkgstore_store_zstd_open(&fd, &size, fx->store, &digest), 0);
    close(fd);
    assert_int_equal(pkgstore_store_blob_read(&data, &len, fx->store, &digest, 100), 0);
    pkgstore_free(data);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.blobs_checked, 1);

    holder_release(fx, &h);
    assert_int_equal(pkgstore_store_add_buffer(&fresh, fx->store, "not now", 7), 0);
    assert_int_equal(pkgstore_store_set_lock_timeout(fx->store, -1), 0);
    assert_int_equal(pkgstore_store_set_lock_timeout(NULL, 0), PKGSTORE_EINVALID);
}

struct waiter_arg {
    pkgstore_store *store;
    int report_fd;
    int rc;
};

static void *shared_waiter(void *arg)
{
    struct waiter_arg *w = arg;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (write(w->report_fd, &tid, sizeof(tid)) != (ssize_t)sizeof(tid))
        return NULL;
    w->rc = ps_store_lock(w->store, 0, 0);
    if (w->rc == 0)
        ps_store_unlock(w->store);
    return NULL;
}

static char thread_state(pid_t tid)
{
    char path[64], buf[512], *close_paren;
    int fd, n;
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    n = (int)read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : '?';
}

/* A thread waiting for the lock held its handle's mutex across a blocking
 * flock() (store.c:177): every other thread of the process then hung on
 * the mutex, even for a try. Now the wait holds nothing. */
static void test_store__lock_waiter_blocks_nobody(void **state)
{
    struct fixture *fx = *state;
    struct waiter_arg w = {fx->store, -1, 1};
    pthread_t thread;
    struct holder h;
    int tids[2];
    pid_t tid;

    alarm(120); /* the bug is a deadlock: fail, do not hang */
    holder_start(fx, &h, HOLD_FLOCK_X);
    assert_int_equal(pipe(tids), 0);
    w.report_fd = tids[1];
    assert_int_equal(pthread_create(&thread, NULL, shared_waiter, &w), 0);
    assert_int_equal(read(tids[0], &tid, sizeof(tid)), (ssize_t)sizeof(tid));
    while (thread_state(tid) != 'S') /* asleep: waiting for the lock */
        sched_yield();
    /* another thread is not held up by the one that waits */
    assert_int_equal(ps_store_lock(fx->store, 0, 1), PKGSTORE_ELOCKED);
    assert_int_equal(ps_store_lock(fx->store, 1, 1), PKGSTORE_ELOCKED);
    holder_release(fx, &h);
    pthread_join(thread, NULL);
    assert_int_equal(w.rc, 0);
    close(tids[0]);
    close(tids[1]);
}

/* One link of a stream of shared holders that hand the lock on without
 * ever letting go of it all: take it (without waiting) while the peer
 * holds it, then tell the peer to let go. A take that fails means an
 * exclusive locker waits: the stream stops. */
static int stream_link(pkgstore_store *store, int in_fd, int out_fd, int started_fd, int first)
{
    int held = 0, handoffs = 0;
    char msg;
    if (first) {
        if (ps_store_lock(store, 0, 0) != 0)
            return 1;
        held = 1;
        if (write(out_fd, "T", 1) != 1)
            return 2;
    }
    while (read(in_fd, &msg, 1) == 1) {
        if (msg == 'T') {
            int rc = ps_store_lock(store, 0, 1);
            if (rc == PKGSTORE_ELOCKED) {
                if (write(out_fd, "X", 1) != 1)
                    return 3;
                break;
            }
            if (rc != 0)
                return 4;
            held = 1;
            if (++handoffs == 1 && started_fd >= 0 && write(started_fd, "s", 1) != 1)
                return 5;
            /* the peer lets go, then takes it back from us */
            if (write(out_fd, "R", 1) != 1 || write(out_fd, "T", 1) != 1)
                return 6;
        } else if (msg == 'R') {
            ps_store_unlock(store);
            held = 0;
        } else {
            break; /* X */
        }
    }
    if (held)
        ps_store_unlock(store);
    return 0;
}

/* Issue 10 section 4: waiting writers got no priority, so gc starved behind
 * a steady stream of uploads. Processes that always overlap their shared
 * holds must let an exclusive locker in. */
static void test_store__exclusive_not_starved_by_processes(void **state)
{
    struct fixture *fx = *state;
    int to[2][2], started[2], slots[2];
    pid_t pids[2];
    char byte;

    alarm(120); /* starvation is a wait without end: fail, do not hang */
    assert_int_equal(pipe(to[0]), 0);
    assert_int_equal(pipe(to[1]), 0);
    assert_int_equal(pipe(started), 0);
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            pkgstore_store *store;
            int rc;
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
            rc = store ? stream_link(store, to[i][0], to[1 - i][1], i == 1 ? started[1] : -1,
                                     i == 0)
                       : 9;
            pkgstore_store_free(store);
            _exit(rc);
        }
        slots[i] = track_child(fx, pids[i]);
    }
    assert_int_equal(read(started[0], &byte, 1), 1); /* the stream runs */
    assert_int_equal(ps_store_lock(fx->store, 1, 0), 0);
    ps_store_unlock(fx->store);
    for (int i = 0; i < 2; i++)
        reap_child(fx, slots[i], pids[i]);
    for (int i = 0; i < 2; i++) {
        close(to[i][0]);
        close(to[i][1]);
        close(started[i]);
    }
}

struct stream_arg {
    pkgstore_store *store;
    int in_fd, out_fd, started_fd, first, rc;
};

static void *stream_thread(void *arg)
{
    struct stream_arg *a = arg;
    a->rc = stream_link(a->store, a->in_fd, a->out_fd, a->started_fd, a->first);
    return NULL;
}

/* The same inside one process: threads sharing a handle. */
static void test_store__exclusive_not_starved_by_threads(void **state)
{
    struct fixture *fx = *state;
    struct stream_arg args[2];
    pthread_t threads[2];
    int to[2][2], started[2];
    char byte;

    alarm(120);
    assert_int_equal(pipe(to[0]), 0);
    assert_int_equal(pipe(to[1]), 0);
    assert_int_equal(pipe(started), 0);
    for (int i = 0; i < 2; i++) {
        args[i].store = fx->store;
        args[i].in_fd = to[i][0];
        args[i].out_fd = to[1 - i][1];
        args[i].started_fd = i == 1 ? started[1] : -1;
        args[i].first = i == 0;
        args[i].rc = -1;
        assert_int_equal(pthread_create(&threads[i], NULL, stream_thread, &args[i]), 0);
    }
    assert_int_equal(read(started[0], &byte, 1), 1);
    assert_int_equal(ps_store_lock(fx->store, 1, 0), 0);
    ps_store_unlock(fx->store);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].rc, 0);
        close(to[i][0]);
        close(to[i][1]);
        close(started[i]);
    }
}

struct repair_arg {
    pkgstore_store *store;
    pkgstore_fsck_report report;
    struct problems found;
    int rc;
};

static void *repair_once(void *arg)
{
    struct repair_arg *r = arg;
    r->rc = pkgstore_store_fsck(&r->report, r->store, PKGSTORE_FSCK_REPAIR, collect_problem,
                                &r->found);
    return NULL;
}

/* Issue 10 section 4: repair held the exclusive lock while it re-hashed
 * every blob (store_fsck.c:345). It now hashes first, waits for the lock
 * only to act, and acts only on what is still as it found it: here the
 * corrupt blob is healed while repair waits, and must not be quarantined. */
static void test_store__repair_rechecks_under_lock(void **state)
{
    struct fixture *fx = *state;
    struct repair_arg r;
    pkgstore_digest healed, fine;
    pkgstore_fsck_report report;
    pthread_t thread;
    struct holder h;
    char path[4096];

    alarm(120);
    memset(&r, 0, sizeof(r));
    r.store = fx->store;
    assert_int_equal(pkgstore_store_add_buffer(&healed, fx->store, "healed later", 12), 0);
    assert_int_equal(pkgstore_store_add_buffer(&fine, fx->store, "always fine", 11), 0);
    blob_file(path, sizeof(path), fx, &healed);
    corrupt_file(path);

    /* a writer holds the lock: repair hashes everything, then waits */
    holder_start(fx, &h, HOLD_SHARED);
    assert_int_equal(pthread_create(&thread, NULL, repair_once, &r), 0);
    wait_for_exclusive_waiter(fx->store_dir);
    /* meanwhile the blob is made whole again (a new file, as a re-add) */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(write_file(path, "healed later", 12), 0);
    holder_release(fx, &h);
    pthread_join(thread, NULL);

    assert_int_equal(r.rc, 0);
    assert_int_equal(r.report.blobs_checked, 2);
    assert_int_equal(r.report.corrupt, 1); /* found, reported ... */
    assert_int_equal(r.report.repaired, 0); /* ... but left alone */
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(store_count(fx, "quarantine"), 0);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &healed), 0);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray + report.orphaned, 0);
}

/* Issue 10 section 2: blob_delete removed a blob a manifest still needed,
 * under the lock taken shared. It now refuses referenced blobs, and takes
 * the lock exclusively. */
static void test_store__blob_delete_refuses_referenced(void **state)
{
    struct fixture *fx = *state;
    pkgstore_fsck_report report;
    pkgstore_digest used, unused;
    struct holder h;

    assert_int_equal(pkgstore_store_add_buffer(&used, fx->store, "an artifact", 11), 0);
    assert_int_equal(pkgstore_store_add_buffer(&unused, fx->store, "nobody's", 8), 0);
    put_package(fx->store, "0.98.0", &used, 11);

    assert_int_equal(pkgstore_store_blob_delete(fx->store, &used), PKGSTORE_ECONFLICT);
    assert_non_null(strstr(pkgstore_error_detail(), "otelcol 0.98.0"));
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &used), 1);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.missing, 0);

    /* a writer in another process holds the lock shared: no delete */
    assert_int_equal(pkgstore_store_set_lock_timeout(fx->store, 0), 0);
    holder_start(fx, &h, HOLD_SHARED);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &unused), PKGSTORE_ELOCKED);
    holder_release(fx, &h);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &unused), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &unused), 0);
    assert_int_equal(pkgstore_store_blob_delete(fx->store, &unused), PKGSTORE_ENOTFOUND);
}

/* ------------------------------------------------------------------ failed uploads */

static pkgstore_store_writer *linked_writer(pkgstore_store *store, const char *text,
                                            pkgstore_digest *digest)
{
    pkgstore_store_writer *writer = NULL;
    assert_int_equal(pkgstore_store_writer_open(&writer, store, NULL, -1), 0);
    assert_int_equal(pkgstore_store_writer_write(writer, text, strlen(text)), 0);
    assert_int_equal(pkgstore_store_writer_link(digest, NULL, writer), 0);
    return writer;
}

/* Issue 9: a refused archive's blob was committed before the registry
 * looked at it, and stayed. A writer can now link the blob (readable by
 * digest, for the check), then commit it or take it back. */
static void test_store__link_then_commit_or_withdraw(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer, *other;
    pkgstore_blob_record record;
    pkgstore_fsck_report report;
    pkgstore_digest digest, again;
    uint64_t size = 0;

    /* accepted: readable once linked, recorded at commit */
    writer = linked_writer(fx->store, "accepted upload", &digest);
    assert_int_equal(pkgstore_store_blob_stat(&size, fx->store, &digest), 0);
    assert_int_equal(size, 15);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digest), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_store_writer_write(writer, "x", 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_store_writer_link(NULL, NULL, writer), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_store_writer_commit(&again, &size, writer), 0);
    assert_true(pkgstore_digest_equal(&digest, &again));
    assert_int_equal(size, 15);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digest), 0);

    /* refused: nothing left to serve, and nothing for fsck to find */
    writer = linked_writer(fx->store, "refused upload", &digest);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);
    assert_int_equal(pkgstore_store_writer_withdraw(writer), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 0);
    assert_int_equal(store_count(fx, "tmp"), 0);

    /* another writer recorded the same bytes meanwhile: they stay theirs */
    writer = linked_writer(fx->store, "shared bytes", &digest);
    assert_int_equal(pkgstore_store_add_buffer(&again, fx->store, "shared bytes", 12), 0);
    assert_int_equal(pkgstore_store_writer_withdraw(writer), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);

    /* a package refers to it meanwhile: it stays */
    writer = linked_writer(fx->store, "referenced meanwhile", &digest);
    put_package(fx->store, "1.0.0", &digest, 20);
    assert_int_equal(pkgstore_store_writer_withdraw(writer), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);

    /* two uploads of the same bytes that both fail: the first keeps it for
     * the second, the second takes it back */
    writer = linked_writer(fx->store, "twice refused", &digest);
    other = linked_writer(fx->store, "twice refused", &again);
    assert_int_equal(pkgstore_store_writer_withdraw(writer), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 1);
    assert_int_equal(pkgstore_store_writer_withdraw(other), 0);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 0);

    /* abort takes back a linked blob too */
    writer = linked_writer(fx->store, "aborted after link", &digest);
    pkgstore_store_writer_abort(writer);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_writer_withdraw(NULL), 0);

    /* the one kept for the package has no blob record (its upload never
     * committed): an orphan that repair records, since it is needed */
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
    assert_int_equal(report.orphaned, 1);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, NULL, NULL), 0);
    assert_int_equal(report.repaired, 1);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray + report.orphaned, 0);
}

/* The same with the lock held by someone else: withdraw cannot take the
 * lock in time, says so, and fsck then reports the blob it left. */
static void test_store__withdraw_without_the_lock(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer;
    pkgstore_fsck_report report;
    struct problems found = {0};
    pkgstore_digest digest;
    struct holder h;

    writer = linked_writer(fx->store, "withdrawn too late", &digest);
    assert_int_equal(pkgstore_store_set_lock_timeout(fx->store, 0), 0);
    holder_start(fx, &h, HOLD_SHARED);
    assert_int_equal(pkgstore_store_writer_withdraw(writer), PKGSTORE_ELOCKED);
    holder_release(fx, &h);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, collect_problem, &found), 0);
    assert_int_equal(report.orphaned, 1);
    assert_int_equal(found.orphaned, 1);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, NULL, NULL), 0);
    assert_int_equal(report.repaired, 1);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &digest), 0);
    assert_int_equal(store_count(fx, "quarantine"), 1);
}

/* Issue 9: fsck called a store clean when a failed upload had left its
 * blob (linked, never recorded). Such a blob is an orphan now: reported,
 * and repair records it when something refers to it, else quarantines it.
 * A .zst copy without its blob is never served. */
static void test_store__fsck_reports_orphans(void **state)
{
    struct fixture *fx = *state;
    pkgstore_fsck_report report;
    struct problems found = {0};
    pkgstore_digest left, needed;
    pkgstore_blob_record record;
    char path[4096], dir[4096];
    int fd = -1;

    /* what a failed upload left: a valid blob, linked, without a record */
    pkgstore_digest_buffer(&left, "left behind", 11);
    pkgstore_digest_buffer(&needed, "needed by a package", 19);
    blob_file(path, sizeof(path), fx, &left);
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    mkdir(dir, 0755);
    assert_int_equal(write_file(path, "left behind", 11), 0);
    blob_file(path, sizeof(path), fx, &needed);
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    mkdir(dir, 0755);
    assert_int_equal(write_file(path, "needed by a package", 19), 0);
    put_package(fx->store, "2.0.0", &needed, 19);

    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, collect_problem, &found), 0);
    assert_int_equal(report.orphaned, 2);
    assert_int_equal(found.orphaned, 2);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);

    /* a copy alone is not served */
    snprintf(path + strlen(path), sizeof(path) - strlen(path), ".zst");
    assert_int_equal(pkgstore_store_zstd_write(fx->store, &needed), 0);
    blob_file(path, sizeof(path), fx, &needed);
    assert_int_equal(rename(path, dir), -1); /* (dir is not empty: keep it) */
    {
        char moved[4200];
        snprintf(moved, sizeof(moved), "%s/moved-away", fx->dir);
        assert_int_equal(rename(path, moved), 0);
        assert_int_equal(pkgstore_store_zstd_open(&fd, NULL, fx->store, &needed),
                         PKGSTORE_ENOTFOUND);
        assert_int_equal(fd, -1);
        assert_int_equal(rename(moved, path), 0);
    }
    assert_int_equal(pkgstore_store_zstd_open(&fd, NULL, fx->store, &needed), 0);
    close(fd);

    memset(&found, 0, sizeof(found));
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, PKGSTORE_FSCK_REPAIR, collect_problem,
                                         &found), 0);
    assert_int_equal(report.orphaned, 2);
    assert_int_equal(report.repaired, 2);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &left), 0);
    assert_int_equal(store_count(fx, "quarantine"), 1);
    assert_int_equal(pkgstore_store_blob_exists(fx->store, &needed), 1);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &needed), 0);
    assert_int_equal(record.size, 19);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray + report.orphaned, 0);
}

/* Mount a small tmpfs under the test directory (root only: said so). */
static int small_tmpfs(char *mnt, size_t size, const struct fixture *fx, const char *options)
{
    if (geteuid() != 0) {
        print_message("SKIP: needs root to mount a small tmpfs\n");
        return -1;
    }
    snprintf(mnt, size, "%s/small", fx->dir);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, options) != 0) {
        print_message("SKIP: mount tmpfs: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Issue 9: on a full disk the blob was linked, then its .zst copy did not
 * fit: the client got 507, yet the blob stayed and was served. The copy
 * now goes first, and a failure leaves neither. */
static void test_store__full_disk_zstd_copy_leaves_nothing(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *small = NULL;
    pkgstore_store_writer *writer = NULL;
    pkgstore_fsck_report report;
    pkgstore_digest digest;
    size_t len = 1300u << 10; /* fits once, not twice */
    unsigned char *data = malloc(len);
    unsigned int seed = 3;
    char mnt[4096], sdir[4200], blobs[4300];
    int add_error = 0, commit_error = 0;

    if (small_tmpfs(mnt, sizeof(mnt), fx, "size=2m") < 0) {
        free(data);
        skip();
    }
    fill_random(data, len, &seed); /* random: the copy is as large as the blob */
    pkgstore_digest_buffer(&digest, data, len);
    snprintf(sdir, sizeof(sdir), "%s/store", mnt);
    opts.durability = PKGSTORE_DURABILITY_FSYNC;
    opts.zstd_copies = 1;
    if (pkgstore_store_open(&small, sdir, &opts) < 0)
        goto out;
    add_error = pkgstore_store_add_buffer(NULL, small, data, len);
    if (pkgstore_store_writer_open(&writer, small, NULL, (int64_t)len) == 0 &&
        pkgstore_store_writer_write(writer, data, len) == 0)
        commit_error = pkgstore_store_writer_commit(NULL, NULL, writer);
    else
        pkgstore_store_writer_abort(writer);
out:
    if (small != NULL) {
        snprintf(blobs, sizeof(blobs), "%s/blobs", sdir);
        assert_int_equal(count_files(blobs, 1), 0); /* no blob, no copy */
        assert_int_equal(pkgstore_store_blob_exists(small, &digest), 0);
        assert_int_equal(pkgstore_store_fsck(&report, small, 0, NULL, NULL), 0);
        assert_int_equal(report.corrupt + report.missing + report.stray + report.orphaned, 0);
        /* still usable */
        assert_int_equal(pkgstore_store_add_buffer(NULL, small, "small", 5), 0);
    }
    pkgstore_store_free(small);
    umount2(mnt, MNT_DETACH);
    free(data);
    assert_non_null(small);
    assert_int_equal(add_error, PKGSTORE_ENOSPC);
    assert_int_equal(commit_error, PKGSTORE_ENOSPC);
}

/* Issue 10 section 6: batch sync opened one write transaction per blob. */
static void test_store__batch_sync_is_one_transaction(void **state)
{
    struct fixture *fx = *state;
    pkgstore_blob_record record;
    pkgstore_digest digests[50];
    uint64_t before;

    pkgstore_store_free(fx->store);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_BATCH);
    assert_non_null(fx->store);
    for (int i = 0; i < 50; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "batch %d", i);
        assert_int_equal(pkgstore_store_add_buffer(&digests[i], fx->store, text, (size_t)n), 0);
    }
    before = ps_index_last_txnid(ps_store_index(fx->store));
    assert_int_equal(pkgstore_store_sync(fx->store), 0);
    assert_int_equal(ps_index_last_txnid(ps_store_index(fx->store)) - before, 1);
    for (int i = 0; i < 50; i++)
        assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &digests[i]), 0);
}

/* Issue 10 section 6: pkgstore_store_free() dropped a failed batch sync
 * without a trace. Its blobs stay unrecorded; fsck now reports them, and
 * the detail says why. */
static void test_store__free_with_failed_sync_leaves_a_trace(void **state)
{
    struct fixture *fx = *state;
    pkgstore_fsck_report report;

    pkgstore_store_free(fx->store);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_BATCH);
    assert_non_null(fx->store);
    for (int i = 0; i < 3; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "never synced %d", i);
        assert_int_equal(pkgstore_store_add_buffer(NULL, fx->store, text, (size_t)n), 0);
    }
    ps_store_test_fail_sync(fx->store, PKGSTORE_EIO);
    assert_int_equal(pkgstore_store_sync(fx->store), PKGSTORE_EIO);
    pkgstore_store_free(fx->store);
    assert_non_null(strstr(pkgstore_error_detail(), "sync failed"));
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
    assert_non_null(fx->store);
    assert_int_equal(pkgstore_store_fsck(&report, fx->store, 0, NULL, NULL), 0);
    assert_int_equal(report.orphaned, 3);
}

/* A batch holds the lock shared until it is synced (its blobs wait for
 * their records), and yields to an exclusive locker that waits. */
static void test_store__batch_yields_to_exclusive(void **state)
{
    struct fixture *fx = *state;
    pkgstore_blob_record record;
    pkgstore_digest first, second;
    int report[2], slot;
    char byte;
    pid_t pid;

    alarm(120);
    pkgstore_store_free(fx->store);
    fx->store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_BATCH);
    assert_non_null(fx->store);
    assert_int_equal(pkgstore_store_add_buffer(&first, fx->store, "pending 1", 9), 0);
    assert_int_equal(pipe(report), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pkgstore_store *store;
        int rc = 1;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        store = open_store_mode(fx->store_dir, PKGSTORE_DURABILITY_NONE);
        if (store != NULL && ps_store_lock(store, 1, 1) == PKGSTORE_ELOCKED &&
            ps_store_lock(store, 1, 0) == 0) {
            /* the batch was recorded before it let go */
            pkgstore_blob_record r;
            if (pkgstore_index_blob_get(&r, store, &first) == 0 && write(report[1], "a", 1) == 1)
                rc = 0;
            ps_store_unlock(store);
        }
        pkgstore_store_free(store);
        _exit(rc);
    }
    slot = track_child(fx, pid);
    wait_for_exclusive_waiter(fx->store_dir);
    /* the next add sees the waiter: it syncs the batch and lets go, waits
     * for the exclusive holder to finish, then goes on */
    assert_int_equal(pkgstore_store_add_buffer(&second, fx->store, "pending 2", 9), 0);
    assert_int_equal(read(report[0], &byte, 1), 1);
    reap_child(fx, slot, pid);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &first), 0);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &second), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_store_sync(fx->store), 0);
    assert_int_equal(pkgstore_index_blob_get(&record, fx->store, &second), 0);
    close(report[0]);
    close(report[1]);
}

/* The copy_file_range() fallback of add_fd (store_writer.c): a file on
 * another filesystem (a tmpfs) than the store gets EXDEV and is copied
 * with read/write. */
static void test_store__add_fd_across_filesystems(void **state)
{
    struct fixture *fx = *state;
    size_t len = (3u << 20) + 777; /* past the copier-thread threshold */
    unsigned char *data = malloc(len);
    unsigned int seed = 11;
    pkgstore_digest digest, expected;
    uint64_t size = 0;
    char mnt[4096], input[4200], probe_path[4200];
    loff_t in_off = 0, out_off = 0;
    int fd, probe;

    if (small_tmpfs(mnt, sizeof(mnt), fx, "size=8m") < 0) {
        free(data);
        skip();
    }
    fill_random(data, len, &seed);
    pkgstore_digest_buffer(&expected, data, len);
    snprintf(input, sizeof(input), "%s/input", mnt);
    assert_int_equal(write_file(input, data, len), 0);
    /* the case under test: the kernel refuses copy_file_range() here */
    fd = open(input, O_RDONLY);
    snprintf(probe_path, sizeof(probe_path), "%s/probe", fx->store_dir);
    probe = open(probe_path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0 && probe >= 0);
    assert_int_equal(copy_file_range(fd, &in_off, probe, &out_off, 4096, 0), -1);
    assert_int_equal(errno, EXDEV);
    close(probe);
    unlink(probe_path);

    assert_int_equal(pkgstore_store_add_fd(&digest, &size, fx->store, fd, NULL, -1), 0);
    close(fd);
    assert_true(pkgstore_digest_equal(&digest, &expected));
    assert_int_equal(size, len);
    assert_int_equal(pkgstore_store_blob_verify(fx->store, &digest), 0);
    assert_int_equal(pkgstore_store_add_file(&digest, &size, fx->store, input, &expected,
                                             (int64_t)len), 0);
    umount2(mnt, MNT_DETACH);
    free(data);
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
        cmocka_unit_test_setup_teardown(test_store__lock_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__lock_waiter_blocks_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__exclusive_not_starved_by_processes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__exclusive_not_starved_by_threads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__repair_rechecks_under_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__blob_delete_refuses_referenced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__link_then_commit_or_withdraw, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__withdraw_without_the_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__fsck_reports_orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__full_disk_zstd_copy_leaves_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__batch_sync_is_one_transaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__free_with_failed_sync_leaves_a_trace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store__batch_yields_to_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__add_fd_across_filesystems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__reader_during_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__threads_share_a_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__enospc, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
