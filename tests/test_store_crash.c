/*
 * Crash test for the blob store: a child process adds blobs in a loop and is
 * killed with SIGKILL at a random moment, over and over (both temporary-file
 * modes, both durability modes that matter for a process crash). Afterwards
 * the store must be clean: fsck finds nothing, tmp/ is empty after a reopen,
 * every file under blobs/ hashes to its name and every blob record points at
 * a blob.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "store_test_util.h"
#include "store_impl.h"

#define KILLS 240

static void child_loop(const char *store_dir, int iteration, int ready_fd)
{
    static const pkgstore_durability modes[4] = {PKGSTORE_DURABILITY_NONE,
                                                 PKGSTORE_DURABILITY_NONE,
                                                 PKGSTORE_DURABILITY_BATCH,
                                                 PKGSTORE_DURABILITY_FSYNC};
    pkgstore_store *store = open_store_mode(store_dir, modes[iteration % 4]);
    unsigned int seed = (unsigned int)getpid() * 2654435761u;
    unsigned char *buf = malloc(2 << 20);
    if (store == NULL || buf == NULL)
        _exit(1);
    if (iteration % 2)
        ps_store_set_tmp_mode(store, PS_TMP_NAMED);
    if (write(ready_fd, "r", 1) != 1)
        _exit(1);
    for (int n = 0;; n++) {
        /* a mix of sizes, pieces and repeats of blobs other iterations
         * added; one in seven (through add_fd) is past add_fd's
         * copier-thread threshold of 1 MiB: the first ingest of even
         * children, so that kills land inside the copier, and the fourth
         * of odd ones, whose small first ingests complete even when the
         * kill comes late (a sanitized build is slow) */
        int big = n % 7 == (iteration % 2 ? 3 : 0);
        size_t len = big ? (size_t)(1 << 20) + (size_t)(rand_r(&seed) % (1 << 20))
                         : (size_t)(rand_r(&seed) % 65536);
        pkgstore_store_writer *writer = NULL;
        char path[4200];
        int fd;
        if (n % 5 == 0)
            seed = (unsigned int)(iteration / 3);
        fill_random(buf, len, &seed);
        switch (n % 3) {
        case 2:
            (void)pkgstore_store_add_buffer(NULL, store, buf, len);
            break;
        case 1:
            if (pkgstore_store_writer_open(&writer, store, NULL, -1) == 0) {
                for (size_t off = 0; off < len; off += 4096)
                    (void)pkgstore_store_writer_write(writer, buf + off,
                                                      len - off < 4096 ? len - off : 4096);
                (void)pkgstore_store_writer_commit(NULL, NULL, writer);
            }
            break;
        default:
            snprintf(path, sizeof(path), "%s/../input-%d", store_dir, (int)getpid());
            if (write_file(path, buf, len) == 0 && (fd = open(path, O_RDONLY)) >= 0) {
                (void)pkgstore_store_add_fd(NULL, NULL, store, fd, NULL, -1);
                close(fd);
            }
            unlink(path);
            break;
        }
    }
}

static void test_store_crash__sigkill_while_adding(void **state)
{
    char *dir = make_tmpdir(), store_dir[4200], tmp_dir[4300];
    unsigned int seed = (unsigned int)time(NULL);
    pkgstore_store *store;
    pkgstore_fsck_report report;
    int problems = 0, added_phase = 0;
    (void)state;

    assert_non_null(dir);
    snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
    store = open_store_mode(store_dir, PKGSTORE_DURABILITY_NONE);
    assert_non_null(store);
    pkgstore_store_free(store);
    print_message("crash test: %d SIGKILLs, seed %u\n", KILLS, seed);

    for (int i = 0; i < KILLS; i++) {
        struct timespec delay = {0, 0};
        int status, ready[2];
        char byte;
        pid_t pid;
        assert_int_equal(pipe(ready), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            child_loop(store_dir, i, ready[1]);
        }
        close(ready[1]);
        /* random moment: one kill in ten lands while the store opens, the
         * others while blobs are being added */
        if (i % 10 != 0 && read(ready[0], &byte, 1) == 1)
            added_phase++;
        close(ready[0]);
        delay.tv_nsec = (long)(rand_r(&seed) % 8000) * 1000L;
        nanosleep(&delay, NULL);
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }

    print_message("crash test: %d kills while adding\n", added_phase);
    assert_true(added_phase >= 200);

    /* reopen: stale named temporary files go; O_TMPFILE ones never stayed */
    store = open_store_mode(store_dir, PKGSTORE_DURABILITY_NONE);
    assert_non_null(store);
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", store_dir);
    assert_int_equal(count_files(tmp_dir, 1), 0);
    assert_int_equal(pkgstore_store_fsck(&report, store, 0, NULL, NULL), 0);
    problems = (int)(report.corrupt + report.missing + report.stray);
    print_message("crash test: %llu blobs checked, %d problems\n",
                  (unsigned long long)report.blobs_checked, problems);
    assert_int_equal(problems, 0);
    assert_true(report.blobs_checked > 0);
    pkgstore_store_free(store);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_crash__sigkill_while_adding),
    };
    return cmocka_run_group_tests_name("store_crash", tests, NULL, NULL);
}
