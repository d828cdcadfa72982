/*
 * Tests for the install module: verify, prepare, swap with .bak, restore,
 * atomic writes, the preflight check, the step hook, and every crash point
 * through fault injection (the private install.h of the test build): after
 * a failure or a simulated kill at any point the live path holds a
 * complete executable, the old one or the new one, and a .bak is always the
 * complete old one.
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
#include <sys/wait.h>
#include <unistd.h>

#include "pkgstore.h"
#include "install.h" /* private: fault injection (test build) */

#define PAYLOAD_SIZE (256 * 1024)

typedef struct fixture {
    char root[256];
    char live[300];
    char bak[300];
    char new_exe[300];
    char work[300];
    char *old_content;
    char *new_content;
} fixture;

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static char *slurp(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    fstat(fd, &st);
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    buf[n < 0 ? 0 : n] = '\0';
    *len_out = n < 0 ? 0 : (size_t)n;
    return buf;
}

/* A shell script padded to PAYLOAD_SIZE, printing its version. */
static char *make_script(const char *version)
{
    char *buf = malloc(PAYLOAD_SIZE);
    int n = snprintf(buf, PAYLOAD_SIZE, "#!/bin/sh\necho %s\nexit 0\n", version);
    memset(buf + n, '#', PAYLOAD_SIZE - (size_t)n - 1);
    buf[PAYLOAD_SIZE - 1] = '\n';
    return buf;
}

/* 1 if path holds exactly content (PAYLOAD_SIZE bytes). */
static int has_content(const char *path, const char *content)
{
    size_t len;
    char *data = slurp(path, &len);
    int ok = data && len == PAYLOAD_SIZE && memcmp(data, content, len) == 0;
    free(data);
    return ok;
}

/* 1 if path holds exactly content and is executable. */
static int holds(const char *path, const char *content)
{
    struct stat st;
    return has_content(path, content) && stat(path, &st) == 0 && (st.st_mode & 0100);
}

/* Run path and return its first output line's version word. */
static void assert_runs_as(const char *path, const char *version)
{
    char cmd[400], line[64] = "";
    snprintf(cmd, sizeof(cmd), "'%s'", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(line, sizeof(line), p))
        line[0] = '\0';
    assert_int_equal(pclose(p), 0);
    line[strcspn(line, "\n")] = '\0';
    assert_string_equal(line, version);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fx->root, sizeof(fx->root), "%s/test_install.XXXXXX", tmp);
    if (!mkdtemp(fx->root))
        return -1;
    snprintf(fx->live, sizeof(fx->live), "%s/otelcol", fx->root);
    snprintf(fx->bak, sizeof(fx->bak), "%s/otelcol.bak", fx->root);
    snprintf(fx->new_exe, sizeof(fx->new_exe), "%s/download", fx->root);
    snprintf(fx->work, sizeof(fx->work), "%s/work", fx->root);
    mkdir(fx->work, 0700);
    fx->old_content = make_script("v1");
    fx->new_content = make_script("v2");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    ps_install_set_fault(0, 0);
    ps_install_set_no_links(0);
    pkgstore_archive_remove_tree(fx->root);
    free(fx->old_content);
    free(fx->new_content);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------ verify */

static void test_install__verify(void **state)
{
    fixture *fx = *state;
    pkgstore_digest want, got;
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_digest_buffer(&want, fx->new_content, PAYLOAD_SIZE), 0);
    assert_int_equal(pkgstore_install_verify(&got, fx->new_exe, &want, PAYLOAD_SIZE), 0);
    assert_true(pkgstore_digest_equal(&got, &want));
    assert_int_equal(pkgstore_install_verify(NULL, fx->new_exe, &want, 0), 0);

    /* Oversize is refused before hashing. */
    assert_int_equal(pkgstore_install_verify(&got, fx->new_exe, &want, PAYLOAD_SIZE - 1),
                     PKGSTORE_ESIZE_MISMATCH);
    assert_non_null(strstr(pkgstore_error_detail(), "more than"));

    /* One flipped byte is a mismatch naming both digests. */
    fx->new_content[100] ^= 1;
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_verify(&got, fx->new_exe, &want, PAYLOAD_SIZE),
                     PKGSTORE_EDIGEST_MISMATCH);
    char want_str[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(want_str, &want);
    assert_non_null(strstr(pkgstore_error_detail(), want_str));
    assert_false(pkgstore_digest_equal(&got, &want));

    assert_int_equal(pkgstore_install_verify(&got, "/nonexistent/x", &want, 0), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_install_verify(&got, fx->work, &want, 0), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_install_verify(&got, NULL, &want, 0), PKGSTORE_EINVALID);
}

/* ------------------------------------------------------------ prepare */

static void make_tar_zst(const char *out, const char *entry_path, const char *data, size_t len,
                         unsigned int mode, const char *extra_path)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_zstd(a);
    assert_int_equal(archive_write_open_filename(a, out), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, entry_path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, mode);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_write_header(a, e);
    archive_write_data(a, data, len);
    if (extra_path) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, extra_path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 1);
        archive_write_header(a, e);
        archive_write_data(a, "x", 1);
    }
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_install__prepare_binary(void **state)
{
    fixture *fx = *state;
    char *exe = NULL, *dir = NULL;
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0600);
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_BINARY,
                                              "otelcol", fx->work, NULL), 0);
    assert_string_equal(exe, fx->new_exe);
    assert_null(dir);
    assert_true(holds(exe, fx->new_content));
    assert_runs_as(exe, "v2");
    pkgstore_free(exe);

    /* A binary declared as an archive is refused. */
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_TAR_ZSTD,
                                              "otelcol", fx->work, NULL), PKGSTORE_EFORMAT);
    assert_null(exe);
    assert_null(dir);
}

static void test_install__prepare_archive(void **state)
{
    fixture *fx = *state;
    char *exe = NULL, *dir = NULL;
    make_tar_zst(fx->new_exe, "bin/otelcol", fx->new_content, PAYLOAD_SIZE, 0644, "README");
    /* Detected from the content when the format is unknown. */
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_UNKNOWN,
                                              "bin/otelcol", fx->work, NULL), 0);
    assert_non_null(dir);
    assert_ptr_equal(strstr(exe, dir), exe);
    assert_true(holds(exe, fx->new_content)); /* made executable */
    assert_runs_as(exe, "v2");
    assert_int_equal(pkgstore_archive_remove_tree(dir), 0);
    pkgstore_free(exe);
    pkgstore_free(dir);
    assert_int_equal(count_entries(fx->work), 0);

    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_TAR_GZIP,
                                              "bin/otelcol", fx->work, NULL), PKGSTORE_EFORMAT);
    assert_non_null(strstr(pkgstore_error_detail(), "declared tar+gzip"));
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_TAR_ZSTD,
                                              NULL, fx->work, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_TAR_ZSTD,
                                              "otelcol", fx->work, NULL), PKGSTORE_ENOTFOUND);
    /* An unsafe archive leaves nothing in the work directory. */
    make_tar_zst(fx->new_exe, "bin/otelcol", fx->new_content, PAYLOAD_SIZE, 0755, "../../evil");
    assert_int_equal(pkgstore_install_prepare(&exe, &dir, fx->new_exe, PKGSTORE_ARCHIVE_TAR_ZSTD,
                                              "bin/otelcol", fx->work, NULL), PKGSTORE_EUNSAFE);
    assert_null(exe);
    assert_null(dir);
    assert_int_equal(count_entries(fx->work), 0);
}

/* ------------------------------------------------------------ swap, restore */

static void test_install__swap_keeps_bak(void **state)
{
    fixture *fx = *state;
    /* First install: no live file yet, so no .bak. */
    write_file(fx->new_exe, fx->old_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->new_exe), 0);
    assert_true(holds(fx->live, fx->old_content));
    assert_int_equal(pkgstore_install_has_backup(fx->live), 0);
    assert_runs_as(fx->live, "v1");

    struct stat old_st, bak_st;
    assert_int_equal(stat(fx->live, &old_st), 0);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->new_exe), 0);
    assert_true(holds(fx->live, fx->new_content));
    assert_true(holds(fx->bak, fx->old_content));
    /* The .bak is the old file itself under a second name, not a copy. */
    assert_int_equal(stat(fx->bak, &bak_st), 0);
    assert_true(bak_st.st_ino == old_st.st_ino);
    assert_int_equal(pkgstore_install_has_backup(fx->live), 1);
    assert_runs_as(fx->live, "v2");
    /* The source stays; no temporary file is left. */
    assert_true(has_content(fx->new_exe, fx->new_content));
    assert_int_equal(count_entries(fx->root), 4); /* live, .bak, download, work */

    assert_int_equal(pkgstore_install_swap(fx->live, "/nonexistent/x"), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->work), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_install_swap("/nonexistent/dir/otelcol", fx->new_exe),
                     PKGSTORE_ENOTFOUND);
    assert_true(holds(fx->live, fx->new_content));
}

static void test_install__restore(void **state)
{
    fixture *fx = *state;
    assert_int_equal(pkgstore_install_restore(fx->live), PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "no backup"));
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0755);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->new_exe), 0);
    assert_int_equal(pkgstore_install_restore(fx->live), 0);
    assert_true(holds(fx->live, fx->old_content));
    assert_true(holds(fx->bak, fx->old_content)); /* kept */
    struct stat live_st, bak_st;
    assert_int_equal(stat(fx->live, &live_st), 0);
    assert_int_equal(stat(fx->bak, &bak_st), 0);
    assert_true(live_st.st_ino == bak_st.st_ino); /* linked back, not copied */
    assert_runs_as(fx->live, "v1");
    assert_int_equal(pkgstore_install_restore(fx->live), 0); /* idempotent */
    assert_true(holds(fx->live, fx->old_content));
    assert_int_equal(count_entries(fx->root), 4);
}

static void test_install__write_atomic(void **state)
{
    fixture *fx = *state;
    char path[400];
    struct stat st;
    size_t len;
    snprintf(path, sizeof(path), "%s/journal.json", fx->root);
    assert_int_equal(pkgstore_install_write_atomic(path, "{\"a\":1}", 7, 0600), 0);
    char *data = slurp(path, &len);
    assert_string_equal(data, "{\"a\":1}");
    free(data);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A stale temporary file from a crash is replaced. */
    char tmp[420];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    write_file(tmp, "garbage garbage garbage", 23, 0644);
    assert_int_equal(pkgstore_install_write_atomic(path, "{}", 2, 0600), 0);
    data = slurp(path, &len);
    assert_string_equal(data, "{}");
    free(data);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(pkgstore_install_write_atomic(path, "", 0, 0600), 0);
    assert_int_equal(pkgstore_install_write_atomic("/nonexistent/dir/j", "x", 1, 0600),
                     PKGSTORE_ENOTFOUND);

    char copy[420];
    snprintf(copy, sizeof(copy), "%s/copy", fx->root);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_copy_atomic(copy, fx->new_exe, 0755), 0);
    assert_true(holds(copy, fx->new_content));
    assert_int_equal(pkgstore_install_copy_atomic(copy, "/nonexistent", 0755), PKGSTORE_ENOTFOUND);
}

/* ------------------------------------------------------------ crash points */

/* The swap under test: copy (0) or move (PKGSTORE_INSTALL_MOVE). */
static unsigned int swap_flags;

static int swap_now(fixture *fx)
{
    pkgstore_install_options opts = PKGSTORE_INSTALL_OPTIONS_INIT;
    opts.flags = swap_flags;
    return pkgstore_install_swap_ext(fx->live, fx->new_exe, &opts);
}

/* Swap v1 -> v2 with point n armed; returns whether the point was hit. */
static int swap_with_fault(fixture *fx, int n, int mode)
{
    unlink(fx->bak);
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    ps_install_set_fault(n, mode);
    int r = swap_now(fx);
    int hit = ps_install_fault_hit();
    ps_install_set_fault(0, 0);
    if (hit)
        assert_int_equal(r, PKGSTORE_EINTERNAL);
    else
        assert_int_equal(r, 0);
    return hit;
}

static void check_after_swap_fault(fixture *fx, int n, int mode)
{
    const char *point = ps_install_fault_point();
    int is_old = holds(fx->live, fx->old_content), is_new = holds(fx->live, fx->new_content);
    if (!is_old && !is_new)
        fail_msg("point %d (%s, mode %d): live path is neither v1 nor v2", n, point, mode);
    assert_runs_as(fx->live, is_old ? "v1" : "v2");
    /* A .bak, if there is one, is always the complete old file. */
    if (access(fx->bak, F_OK) == 0 && !holds(fx->bak, fx->old_content))
        fail_msg("point %d (%s): .bak is partial", n, point);
    if (mode == PS_INSTALL_FAULT_FAIL && is_old) {
        /* The error path cleans its temporary files. */
        char tmp[420];
        snprintf(tmp, sizeof(tmp), "%s.new.tmp", fx->live);
        assert_int_not_equal(access(tmp, F_OK), 0);
        snprintf(tmp, sizeof(tmp), "%s.bak.tmp", fx->live);
        assert_int_not_equal(access(tmp, F_OK), 0);
    }
    /* The agent restarts and retries: a clean swap then works, whatever
     * the crash left behind (a moved new file is gone once it is live:
     * the retry starts from a new download). */
    if (access(fx->new_exe, F_OK) != 0)
        write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(swap_now(fx), 0);
    assert_true(holds(fx->live, fx->new_content));
}

static int run_swap_faults(fixture *fx, int mode)
{
    int n, hits = 0;
    for (n = 1; n < 100; n++) {
        if (!swap_with_fault(fx, n, mode))
            break;
        hits++;
        check_after_swap_fault(fx, n, mode);
    }
    return hits;
}

static void test_install__swap_fault_every_point(void **state)
{
    /* bak: link rename dirsync, new: write fsync rename dirsync */
    assert_int_equal(run_swap_faults(*state, PS_INSTALL_FAULT_FAIL), 7);
}

static void test_install__swap_crash_every_point(void **state)
{
    assert_int_equal(run_swap_faults(*state, PS_INSTALL_FAULT_CRASH), 7);
}

/* Moving the new file in: bak: link rename dirsync, new: fsync rename
 * dirsync; the file is renamed, never copied. */
static void test_install__swap_move_every_point(void **state)
{
    fixture *fx = *state;
    swap_flags = PKGSTORE_INSTALL_MOVE;
    assert_int_equal(run_swap_faults(fx, PS_INSTALL_FAULT_FAIL), 6);
    assert_int_equal(run_swap_faults(fx, PS_INSTALL_FAULT_CRASH), 6);
    /* a clean move: the new file is the live file, under its new name */
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    struct stat new_st, live_st;
    assert_int_equal(stat(fx->new_exe, &new_st), 0);
    assert_int_equal(swap_now(fx), 0);
    swap_flags = 0;
    assert_int_equal(stat(fx->live, &live_st), 0);
    assert_true(live_st.st_ino == new_st.st_ino);
    assert_int_equal((int)(live_st.st_mode & 0777), 0755);
    assert_int_not_equal(access(fx->new_exe, F_OK), 0);
    assert_runs_as(fx->live, "v2");
}

/* Where hard links are not supported the .bak and the restore are copies,
 * with the same guarantees at every point. */
static void test_install__swap_without_links(void **state)
{
    fixture *fx = *state;
    ps_install_set_no_links(1);
    /* bak: link(refused) write fsync rename dirsync, new: write fsync rename dirsync */
    assert_int_equal(run_swap_faults(fx, PS_INSTALL_FAULT_FAIL), 9);
    assert_int_equal(run_swap_faults(fx, PS_INSTALL_FAULT_CRASH), 9);
    struct stat live_st, bak_st;
    assert_int_equal(pkgstore_install_restore(fx->live), 0);
    assert_int_equal(stat(fx->live, &live_st), 0);
    assert_int_equal(stat(fx->bak, &bak_st), 0);
    assert_true(live_st.st_ino != bak_st.st_ino);
    assert_true(holds(fx->live, fx->old_content));
    ps_install_set_no_links(0);
}

static void test_install__restore_crash_every_point(void **state)
{
    fixture *fx = *state;
    static const int modes[] = {PS_INSTALL_FAULT_FAIL, PS_INSTALL_FAULT_CRASH};
    for (size_t m = 0; m < 2; m++) {
        int n, hits = 0;
        for (n = 1; n < 100; n++) {
            write_file(fx->live, fx->new_content, PAYLOAD_SIZE, 0755);
            write_file(fx->bak, fx->old_content, PAYLOAD_SIZE, 0755);
            ps_install_set_fault(n, modes[m]);
            int r = pkgstore_install_restore(fx->live);
            int hit = ps_install_fault_hit();
            ps_install_set_fault(0, 0);
            if (!hit) {
                assert_int_equal(r, 0);
                assert_true(holds(fx->live, fx->old_content));
                break;
            }
            hits++;
            assert_int_equal(r, PKGSTORE_EINTERNAL);
            if (!holds(fx->live, fx->old_content) && !holds(fx->live, fx->new_content))
                fail_msg("restore point %d (%s): live path partial", n, ps_install_fault_point());
            assert_true(holds(fx->bak, fx->old_content));
            assert_int_equal(pkgstore_install_restore(fx->live), 0);
            assert_true(holds(fx->live, fx->old_content));
        }
        assert_int_equal(hits, 3); /* link rename dirsync */
    }
}

static void test_install__write_atomic_crash_every_point(void **state)
{
    fixture *fx = *state;
    char path[400];
    snprintf(path, sizeof(path), "%s/journal", fx->root);
    for (int mode = PS_INSTALL_FAULT_FAIL; mode <= PS_INSTALL_FAULT_CRASH; mode++) {
        int n, hits = 0;
        for (n = 1; n < 100; n++) {
            assert_int_equal(pkgstore_install_write_atomic(path, "old-state", 9, 0600), 0);
            ps_install_set_fault(n, mode);
            int r = pkgstore_install_write_atomic(path, "new-state!", 10, 0600);
            int hit = ps_install_fault_hit();
            ps_install_set_fault(0, 0);
            size_t len;
            char *data = slurp(path, &len);
            assert_non_null(data);
            assert_true(strcmp(data, "old-state") == 0 || strcmp(data, "new-state!") == 0);
            free(data);
            if (!hit) {
                assert_int_equal(r, 0);
                break;
            }
            hits++;
        }
        assert_int_equal(hits, 4);
    }
}

/* The public step hook sees every step in order and can stop one: a
 * refusal at the final directory fsync leaves v2 live. */
typedef struct step_log {
    char steps[16][24];
    int count;
    const char *refuse;
} step_log;

static int record_step(const char *step, void *payload)
{
    step_log *log = payload;
    if (log->count < 16)
        snprintf(log->steps[log->count++], sizeof(log->steps[0]), "%s", step);
    return log->refuse && strcmp(step, log->refuse) == 0 ? PKGSTORE_EIO : 0;
}

static void test_install__step_hook(void **state)
{
    fixture *fx = *state;
    step_log log = {.count = 0};
    pkgstore_install_options opts;
    pkgstore_install_options_init(&opts);
    opts.flags = PKGSTORE_INSTALL_MOVE;
    opts.step = record_step;
    opts.payload = &log;
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_swap_ext(fx->live, fx->new_exe, &opts), 0);
    static const char *const expected[] = {"bak:link", "bak:rename", "bak:dirsync",
                                           "new:fsync", "new:rename", "new:dirsync"};
    assert_int_equal(log.count, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(log.steps[i], expected[i]);

    log.count = 0;
    log.refuse = "new:dirsync";
    opts.flags = 0;
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_restore(fx->live), 0);
    assert_int_equal(pkgstore_install_swap_ext(fx->live, fx->new_exe, &opts), PKGSTORE_EIO);
    assert_non_null(strstr(pkgstore_error_detail(), "new:dirsync"));
    assert_true(holds(fx->live, fx->new_content));
    assert_true(holds(fx->bak, fx->old_content));

    /* a refusal before the rename leaves the old file live, nothing behind */
    log.refuse = "new:rename";
    assert_int_equal(pkgstore_install_restore(fx->live), 0);
    assert_int_equal(pkgstore_install_swap_ext(fx->live, fx->new_exe, &opts), PKGSTORE_EIO);
    assert_true(holds(fx->live, fx->old_content));
    assert_int_equal(count_entries(fx->root), 4); /* live, .bak, download, work */

    opts.version = PKGSTORE_INSTALL_OPTIONS_VERSION + 1;
    assert_int_equal(pkgstore_install_swap_ext(fx->live, fx->new_exe, &opts), PKGSTORE_EINVALID);
    pkgstore_install_options zeroed;
    memset(&zeroed, 0, sizeof(zeroed)); /* a zeroed struct is the defaults */
    assert_int_equal(pkgstore_install_swap_ext(fx->live, fx->new_exe, &zeroed), 0);
    assert_true(holds(fx->live, fx->new_content));
}

/* The preflight check finds what would fail a swap half-way, changes
 * nothing, and leaves no probe behind. */
static void test_install__check(void **state)
{
    fixture *fx = *state;
    pkgstore_install_options opts = PKGSTORE_INSTALL_OPTIONS_INIT;
    opts.flags = PKGSTORE_INSTALL_MOVE;
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_check(fx->live, fx->new_exe, &opts), 0);
    assert_int_equal(pkgstore_install_check(fx->live, fx->new_exe, NULL), 0);
    assert_int_equal(count_entries(fx->root), 3); /* live, download, work */
    assert_true(holds(fx->live, fx->old_content));

    assert_int_equal(pkgstore_install_check(fx->live, "/nonexistent/x", &opts), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_install_check("/nonexistent/dir/otelcol", fx->new_exe, &opts),
                     PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_install_check(fx->work, fx->new_exe, &opts), PKGSTORE_EINVALID);

    assert_int_equal(mkdir(fx->bak, 0755), 0);
    assert_int_equal(pkgstore_install_check(fx->live, fx->new_exe, &opts), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), ".bak: is a directory"));
    rmdir(fx->bak);

    /* a first install (no live file yet) is fine too */
    unlink(fx->live);
    assert_int_equal(pkgstore_install_check(fx->live, fx->new_exe, &opts), 0);
}

/* dst becomes a second name of src (the agent's kept copy). */
static void test_install__link_atomic(void **state)
{
    fixture *fx = *state;
    char keep[400];
    struct stat a, b;
    snprintf(keep, sizeof(keep), "%s/keep", fx->root);
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    assert_int_equal(pkgstore_install_link_atomic(keep, fx->live), 0);
    assert_int_equal(stat(keep, &a), 0);
    assert_int_equal(stat(fx->live, &b), 0);
    assert_true(a.st_ino == b.st_ino);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    assert_int_equal(pkgstore_install_link_atomic(keep, fx->new_exe), 0); /* replaced */
    assert_true(has_content(keep, fx->new_content));
    ps_install_set_no_links(1);
    assert_int_equal(pkgstore_install_link_atomic(keep, fx->live), 0);
    ps_install_set_no_links(0);
    assert_true(holds(keep, fx->old_content));
    assert_int_equal(stat(keep, &a), 0);
    assert_true(a.st_ino != b.st_ino);
    assert_int_equal(pkgstore_install_link_atomic(keep, "/nonexistent"), PKGSTORE_ENOTFOUND);
}

/* A point armed by name fails there every time it is reached: a swap
 * failing at its final directory fsync has already put v2 live. */
static void test_install__fault_by_name(void **state)
{
    fixture *fx = *state;
    write_file(fx->live, fx->old_content, PAYLOAD_SIZE, 0755);
    write_file(fx->new_exe, fx->new_content, PAYLOAD_SIZE, 0644);
    ps_install_set_fault_point("new:dirsync", PS_INSTALL_FAULT_FAIL);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->new_exe), PKGSTORE_EINTERNAL);
    assert_int_equal(ps_install_fault_hit(), 1);
    assert_string_equal(ps_install_fault_point(), "new:dirsync");
    assert_non_null(strstr(pkgstore_error_detail(), "new:dirsync"));
    assert_true(holds(fx->live, fx->new_content));
    assert_true(holds(fx->bak, fx->old_content));
    /* still armed: the restore's own points are named differently */
    assert_int_equal(pkgstore_install_restore(fx->live), 0);
    assert_true(holds(fx->live, fx->old_content));
    /* a point that is never reached leaves the swap alone */
    ps_install_set_fault_point("nowhere:write", PS_INSTALL_FAULT_FAIL);
    assert_int_equal(pkgstore_install_swap(fx->live, fx->new_exe), 0);
    assert_int_equal(ps_install_fault_hit(), 0);
    ps_install_set_fault_point(NULL, 0);
    assert_true(holds(fx->live, fx->new_content));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_install__verify),
        T(test_install__prepare_binary),
        T(test_install__prepare_archive),
        T(test_install__swap_keeps_bak),
        T(test_install__restore),
        T(test_install__write_atomic),
        T(test_install__swap_fault_every_point),
        T(test_install__swap_crash_every_point),
        T(test_install__restore_crash_every_point),
        T(test_install__write_atomic_crash_every_point),
        T(test_install__fault_by_name),
        T(test_install__swap_move_every_point),
        T(test_install__swap_without_links),
        T(test_install__step_hook),
        T(test_install__check),
        T(test_install__link_atomic),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
