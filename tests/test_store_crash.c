/*
 * Crash test for the blob store: child processes add blobs in a loop, or
 * run gc, delete blobs and register and remove package versions beside the
 * adds, and are killed with SIGKILL at a random moment, over and over (both
 * temporary-file modes, the durability modes that matter for a process
 * crash). Afterwards the store must be consistent: tmp/ is empty after a
 * reopen, fsck finds no corrupt blob, no missing blob and no stray, and
 * what a kill between a link and its record leaves (orphans, which fsck
 * reports) is healed by repair, after which fsck finds nothing at all.
 *
 * PKGSTORE_CRASH_KILLS sets the number of kills (default 240; `make
 * long-tests` runs 10,000).
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
#include "gc.h"

#define DEFAULT_KILLS 240

/* Adds: a mix of sizes, pieces and repeats of blobs other iterations
 * added; one in seven (through add_fd) is past add_fd's copier-thread
 * threshold of 1 MiB: the first ingest of even children, so that kills
 * land inside the copier, and the fourth of odd ones, whose small first
 * ingests complete even when the kill comes late (a sanitized build is
 * slow). */
static void add_loop(pkgstore_store *store, const char *store_dir, int iteration,
                     unsigned char *buf)
{
    unsigned int seed = (unsigned int)getpid() * 2654435761u;
    for (int n = 0;; n++) {
        int big = n % 7 == (iteration % 2 ? 3 : 0);
        size_t len = big ? (size_t)(1 << 20) + (size_t)(rand_r(&seed) % (1 << 20))
                         : (size_t)(rand_r(&seed) % 65536);
        pkgstore_store_writer *writer = NULL;
        char path[4200];
        int fd;
        if (n % 5 == 0)
            seed = (unsigned int)(iteration / 3);
        fill_random(buf, len, &seed);
        switch (n % 4) {
        case 3:
            (void)pkgstore_store_add_buffer(NULL, store, buf, len);
            break;
        case 2:
            /* link, then keep or take back: a failed upload */
            if (pkgstore_store_writer_open(&writer, store, NULL, -1) == 0) {
                (void)pkgstore_store_writer_write(writer, buf, len);
                if (pkgstore_store_writer_link(NULL, NULL, writer) == 0 && n % 8 == 2)
                    (void)pkgstore_store_writer_withdraw(writer);
                else
                    (void)pkgstore_store_writer_commit(NULL, NULL, writer);
            }
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

struct forget {
    pkgstore_store *store;
    int budget;
};

static int forget_blob(const pkgstore_digest *digest, uint64_t size, void *payload)
{
    struct forget *walk = payload;
    (void)size;
    /* refused when referenced or being added: that is the point */
    (void)pkgstore_store_blob_delete(walk->store, digest);
    return --walk->budget > 0 ? 0 : 1;
}

/* Beside the adds: register small binaries as package versions, remove
 * versions, delete blobs and run gc, whose clock runs ahead so that every
 * unreferenced blob is old enough to go. */
static void housekeeping_loop(pkgstore_store *store, int iteration)
{
    pkgstore_registry *reg = NULL;
    ps_gc_set_clock_skew(7200);
    if (pkgstore_registry_open(&reg, store) != 0)
        _exit(1);
    for (int n = 0;; n++) {
        char version[32], content[64];
        pkgstore_artifact artifact;
        pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
        struct forget walk = {store, 3};

        snprintf(version, sizeof(version), "1.%d.%d", iteration % 7, n % 5);
        snprintf(content, sizeof(content), "binary %d %d", iteration % 7, n % 5);
        memset(&artifact, 0, sizeof(artifact));
        snprintf(artifact.platform, sizeof(artifact.platform), "linux/amd64");
        snprintf(artifact.format, sizeof(artifact.format), "binary");
        if (pkgstore_store_add_buffer(&artifact.digest, store, content, strlen(content)) == 0)
            (void)pkgstore_registry_add(NULL, NULL, reg, "crashpkg", version, &artifact, NULL);
        switch (n % 3) {
        case 0:
            snprintf(version, sizeof(version), "1.%d.%d", (iteration + 3) % 7, (n + 2) % 5);
            (void)pkgstore_registry_remove(reg, "crashpkg", version);
            break;
        case 1:
            (void)pkgstore_store_foreach(store, forget_blob, &walk);
            break;
        default:
            opts.grace_seconds = 0;
            (void)pkgstore_gc_run(NULL, store, &opts);
            break;
        }
    }
}

static void child_main(const char *store_dir, int iteration, int ready_fd)
{
    static const pkgstore_durability modes[4] = {PKGSTORE_DURABILITY_NONE,
                                                 PKGSTORE_DURABILITY_NONE,
                                                 PKGSTORE_DURABILITY_BATCH,
                                                 PKGSTORE_DURABILITY_FSYNC};
    pkgstore_store *store = open_store_mode(store_dir, modes[iteration % 4]);
    unsigned char *buf = malloc(2 << 20);
    if (store == NULL || buf == NULL)
        _exit(1);
    if (iteration % 2)
        ps_store_set_tmp_mode(store, PS_TMP_NAMED);
    if (write(ready_fd, "r", 1) != 1)
        _exit(1);
    if (iteration % 5 == 4)
        housekeeping_loop(store, iteration);
    add_loop(store, store_dir, iteration, buf);
}

static int kill_count(void)
{
    const char *text = getenv("PKGSTORE_CRASH_KILLS");
    char *end = NULL;
    long n;
    if (text == NULL || text[0] == '\0')
        return DEFAULT_KILLS;
    n = strtol(text, &end, 10);
    if (*end != '\0' || n < 10 || n > 10000000) {
        fprintf(stderr, "PKGSTORE_CRASH_KILLS=%s: not a number from 10 to 10000000\n", text);
        exit(2);
    }
    return (int)n;
}

static void test_store_crash__sigkill_while_adding(void **state)
{
    char *dir = make_tmpdir(), store_dir[4200], tmp_dir[4300];
    unsigned int seed = (unsigned int)time(NULL);
    int kills = kill_count(), added_phase = 0, housekeeping = 0;
    pkgstore_fsck_report report, repaired;
    pkgstore_store *store;
    struct timespec started, ended;
    (void)state;

    assert_non_null(dir);
    snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
    store = open_store_mode(store_dir, PKGSTORE_DURABILITY_NONE);
    assert_non_null(store);
    pkgstore_store_free(store);
    print_message("crash test: %d SIGKILLs, seed %u\n", kills, seed);
    clock_gettime(CLOCK_MONOTONIC, &started);

    for (int i = 0; i < kills; i++) {
        struct timespec delay = {0, 0};
        int status, ready[2];
        char byte;
        pid_t pid;
        assert_int_equal(pipe(ready), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            child_main(store_dir, i, ready[1]);
        }
        close(ready[1]);
        /* random moment: one kill in ten lands while the store opens, the
         * others while blobs are being added */
        if (i % 10 != 0 && read(ready[0], &byte, 1) == 1) {
            added_phase++;
            housekeeping += i % 5 == 4;
        }
        close(ready[0]);
        delay.tv_nsec = (long)(rand_r(&seed) % 8000) * 1000L;
        nanosleep(&delay, NULL);
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    clock_gettime(CLOCK_MONOTONIC, &ended);

    print_message("crash test: %d kills while working, %d of them in gc, deletes and registry "
                  "changes (%.0f s)\n",
                  added_phase, housekeeping,
                  (double)(ended.tv_sec - started.tv_sec) +
                      (double)(ended.tv_nsec - started.tv_nsec) / 1e9);
    assert_true(added_phase >= kills * 5 / 6);

    /* reopen: stale named temporary files go; O_TMPFILE ones never stayed */
    store = open_store_mode(store_dir, PKGSTORE_DURABILITY_NONE);
    assert_non_null(store);
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", store_dir);
    assert_int_equal(count_files(tmp_dir, 1), 0);
    assert_int_equal(pkgstore_store_fsck(&report, store, 0, NULL, NULL), 0);
    print_message("crash test: %llu blobs checked: %llu corrupt, %llu missing, %llu stray, "
                  "%llu orphaned\n",
                  (unsigned long long)report.blobs_checked, (unsigned long long)report.corrupt,
                  (unsigned long long)report.missing, (unsigned long long)report.stray,
                  (unsigned long long)report.orphaned);
    assert_int_equal(report.corrupt + report.missing + report.stray, 0);
    assert_true(report.blobs_checked > 0);
    /* orphans are what a kill between link and record leaves: repair
     * records those something refers to and quarantines the rest */
    assert_int_equal(pkgstore_store_fsck(&repaired, store, PKGSTORE_FSCK_REPAIR, NULL, NULL), 0);
    assert_int_equal(repaired.orphaned, report.orphaned);
    assert_int_equal(repaired.repaired, report.orphaned);
    assert_int_equal(pkgstore_store_fsck(&report, store, 0, NULL, NULL), 0);
    assert_int_equal(report.corrupt + report.missing + report.stray + report.orphaned, 0);
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
