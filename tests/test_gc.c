/*
 * Tests for gc: mark and sweep, grace, dry run, pins, orphaned .zst copies
 * and tmp/ files, options, and gc racing concurrent adders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/index_fixture.h"
#include "pkgstore.h"
#include "pkgstore/gc.h"
#include "pkgstore/index.h"
#include "pkgstore/registry.h"
#include "pkgstore/store.h"
#include "gc.h"
#include "index.h"
#include "store.h"

struct fixture {
    char dir[64];
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

static void assert_ok(int error)
{
    if (error != 0)
        fail_msg("%s: %s", pkgstore_strerror(error), pkgstore_error_detail());
}

static pkgstore_store *open_store(const char *dir)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    opts.durability = PKGSTORE_DURABILITY_NONE;
    assert_ok(pkgstore_store_open(&store, dir, &opts));
    return store;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_gc.XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    fx->store = open_store(fx->dir);
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

static pkgstore_digest add_blob(pkgstore_store *store, const char *text)
{
    pkgstore_digest digest;
    assert_ok(pkgstore_store_add_buffer(&digest, store, text, strlen(text)));
    return digest;
}

static void blob_path(char *buf, size_t size, pkgstore_store *store, const pkgstore_digest *digest,
                      const char *suffix)
{
    assert_ok(ps_store_blob_path(buf, size, store, digest, suffix));
}

static int blob_exists(pkgstore_store *store, const pkgstore_digest *digest)
{
    int exists = pkgstore_store_blob_exists(store, digest);
    assert_true(exists >= 0);
    return exists;
}

/* Making a blob look added seconds_ago takes its record (written raw by
 * tests/helpers/index_fixture.c) and its file's mtime. */
static void set_mtime(const char *path, int64_t when)
{
    struct timespec times[2] = {{(time_t)when, 0}, {(time_t)when, 0}};
    if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
        fail_msg("utimensat %s: %s", path, strerror(errno));
}

static void backdate(pkgstore_store *store, const pkgstore_digest *digest, int64_t seconds_ago)
{
    struct raw_blob raw;
    char path[4096];
    uint64_t size;

    assert_ok(pkgstore_store_blob_stat(&size, store, digest));
    raw.digest = *digest;
    raw.size = size;
    raw.added = (int64_t)time(NULL) - seconds_ago;
    assert_ok(ps_index_write(ps_store_index(store), write_raw_blob, &raw));
    blob_path(path, sizeof(path), store, digest, "");
    set_mtime(path, raw.added);
}

static void register_package(pkgstore_store *store, const char *name, const char *version,
                             const pkgstore_digest *digest)
{
    pkgstore_package_record rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.name, sizeof(rec.name), "%s", name);
    snprintf(rec.version, sizeof(rec.version), "%s", version);
    snprintf(rec.platform, sizeof(rec.platform), "linux/amd64");
    rec.type = PKGSTORE_TYPE_PRIMARY;
    rec.digest = *digest;
    snprintf(rec.format, sizeof(rec.format), "binary");
    assert_ok(pkgstore_store_blob_stat(&rec.size, store, digest));
    /* a package record alone, without a manifest: only the registry writes
     * them, so through the private call */
    assert_ok(ps_index_package_put(ps_store_index(store), &rec));
}

static int drop_package_record(MDB_txn *txn, ps_index *index, void *payload)
{
    (void)payload;
    return ps_index_package_del_txn(txn, index, "otelcol", "1.0.0", "linux/amd64");
}

static pkgstore_gc_report run_gc(pkgstore_store *store, int64_t grace, int dry_run)
{
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    pkgstore_gc_report report;
    opts.grace_seconds = grace;
    opts.dry_run = dry_run;
    assert_ok(pkgstore_gc_run(&report, store, &opts));
    return report;
}

/* ---------------------------------------------------------------- uploads in progress */

/* A blob linked by a writer that has not committed it yet (its upload is
 * being checked by the registry) has no record and may look old, but gc
 * leaves it alone: the writer holds it. */
static void test_gc__leaves_linked_uploads_alone(void **state)
{
    struct fixture *fx = *state;
    pkgstore_store_writer *writer = NULL;
    pkgstore_gc_report report;
    pkgstore_digest digest;
    char path[4096];

    assert_ok(pkgstore_store_writer_open(&writer, fx->store, NULL, -1));
    assert_ok(pkgstore_store_writer_write(writer, "being checked", 13));
    assert_ok(pkgstore_store_writer_link(&digest, NULL, writer));
    blob_path(path, sizeof(path), fx->store, &digest, "");
    set_mtime(path, (int64_t)time(NULL) - 7200);
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_deleted, 0);
    assert_int_equal(blob_exists(fx->store, &digest), 1);
    assert_ok(pkgstore_store_writer_commit(NULL, NULL, writer));
    /* committed and still unreferenced: an old one goes as usual */
    backdate(fx->store, &digest, 7200);
    report = run_gc(fx->store, 3600, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_int_equal(blob_exists(fx->store, &digest), 0);
}

/* ---------------------------------------------------------------- mark and sweep */

static void test_gc__mark_sweep(void **state)
{
    struct fixture *fx = *state;
    struct raw_manifest manifest = {"pkg\0" "1.0.0", 9, {{0}}};
    pkgstore_digest packaged = add_blob(fx->store, "packaged artifact");
    pkgstore_digest manifested = add_blob(fx->store, "{\"manifest\":1}");
    pkgstore_digest orphan = add_blob(fx->store, "nobody wants me");
    pkgstore_gc_report report;
    pkgstore_blob_record rec;

    register_package(fx->store, "pkg", "1.0.0", &packaged);
    manifest.digest = manifested;
    assert_ok(ps_index_write(ps_store_index(fx->store), write_raw_manifest, &manifest));
    backdate(fx->store, &packaged, 7200);
    backdate(fx->store, &manifested, 7200);
    backdate(fx->store, &orphan, 7200);

    report = run_gc(fx->store, 3600, 0);
    assert_int_equal(report.blobs_total, 3);
    assert_int_equal(report.blobs_referenced, 2);
    assert_int_equal(report.blobs_young, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_int_equal(report.bytes_freed, strlen("nobody wants me"));
    assert_int_equal(report.dry_run, 0);
    assert_true(blob_exists(fx->store, &packaged));
    assert_true(blob_exists(fx->store, &manifested));
    assert_false(blob_exists(fx->store, &orphan));
    /* its record went with it */
    assert_int_equal(pkgstore_index_blob_get(&rec, fx->store, &orphan), PKGSTORE_ENOTFOUND);

    /* a second run finds nothing to do */
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_total, 2);
    assert_int_equal(report.blobs_deleted, 0);
    assert_int_equal(report.bytes_freed, 0);
}

/* Through the registry: a removed version's blobs go, a live version's
 * manifest and artifacts stay even when its package records are lost. */
static void test_gc__registry_manifests(void **state)
{
    struct fixture *fx = *state;
    pkgstore_registry *reg = NULL;
    pkgstore_artifact artifact;
    pkgstore_digest live_manifest, gone_manifest;
    pkgstore_digest live = add_blob(fx->store, "live binary");
    pkgstore_digest gone = add_blob(fx->store, "removed binary");
    pkgstore_gc_report report;

    assert_ok(pkgstore_registry_open(&reg, fx->store));
    memset(&artifact, 0, sizeof(artifact));
    snprintf(artifact.platform, sizeof(artifact.platform), "linux/amd64");
    snprintf(artifact.format, sizeof(artifact.format), "binary");
    snprintf(artifact.entrypoint, sizeof(artifact.entrypoint), "otelcol");
    artifact.digest = live;
    artifact.size = strlen("live binary");
    assert_ok(pkgstore_registry_add(NULL, &live_manifest, reg, "otelcol", "1.0.0", &artifact, NULL));
    artifact.digest = gone;
    artifact.size = strlen("removed binary");
    assert_ok(pkgstore_registry_add(NULL, &gone_manifest, reg, "otelcol", "0.9.0", &artifact, NULL));
    assert_ok(pkgstore_registry_remove(reg, "otelcol", "0.9.0"));

    /* lose the live version's package record: its manifest still holds it */
    assert_ok(ps_index_write(ps_store_index(fx->store), drop_package_record, NULL));

    backdate(fx->store, &live, 7200);
    backdate(fx->store, &gone, 7200);
    backdate(fx->store, &live_manifest, 7200);
    backdate(fx->store, &gone_manifest, 7200);
    report = run_gc(fx->store, 3600, 0);
    assert_int_equal(report.blobs_deleted, 2);
    assert_true(blob_exists(fx->store, &live));
    assert_true(blob_exists(fx->store, &live_manifest));
    assert_false(blob_exists(fx->store, &gone));
    assert_false(blob_exists(fx->store, &gone_manifest));
    pkgstore_registry_free(reg);
}

/* A manifest record whose bytes do not parse stops gc instead of freeing
 * what it may refer to. */
static int write_bad_manifest(MDB_txn *txn, ps_index *index, void *payload)
{
    unsigned char value[40] = {0};
    (void)payload;
    memcpy(value + 32, "not json", 8);
    MDB_val key = {9, "bad\0" "1.0.0"}, val = {sizeof(value), value};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_MANIFESTS), &key, &val, 0);
    return rc ? ps_index_error(rc, "test") : 0;
}

static void test_gc__unreadable_manifest_stops_gc(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest orphan = add_blob(fx->store, "orphan");
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    pkgstore_gc_report report;

    backdate(fx->store, &orphan, 7200);
    assert_ok(ps_index_write(ps_store_index(fx->store), write_bad_manifest, NULL));
    opts.grace_seconds = 0;
    assert_true(pkgstore_gc_run(&report, fx->store, &opts) < 0);
    assert_non_null(strstr(pkgstore_error_detail(), "refusing to sweep: manifest record bad 1.0.0"));
    assert_int_equal(report.blobs_deleted, 0);
    assert_true(blob_exists(fx->store, &orphan));
}

static void test_gc__grace(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest fresh = add_blob(fx->store, "fresh");
    pkgstore_digest ten = add_blob(fx->store, "ten seconds old");
    pkgstore_gc_report report;

    backdate(fx->store, &ten, 10);
    report = run_gc(fx->store, PKGSTORE_GC_GRACE_DEFAULT, 0);
    assert_int_equal(report.blobs_young, 2);
    assert_int_equal(report.blobs_deleted, 0);

    /* grace 5: the ten-second-old blob goes, the fresh one (recorded in the
     * second gc started, or later) is never deleted, even with grace 0 */
    report = run_gc(fx->store, 5, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_false(blob_exists(fx->store, &ten));
    assert_true(blob_exists(fx->store, &fresh));

    backdate(fx->store, &fresh, -5); /* "added" in the future: clock step */
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_deleted, 0);
    assert_true(blob_exists(fx->store, &fresh));
    backdate(fx->store, &fresh, 1);
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_false(blob_exists(fx->store, &fresh));
}

static void test_gc__age_from_mtime_without_record(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest digest = add_blob(fx->store, "no record");
    char path[4096];
    pkgstore_gc_report report;

    assert_ok(ps_index_blob_del(ps_store_index(fx->store), &digest));
    report = run_gc(fx->store, 60, 0);
    assert_int_equal(report.blobs_young, 1);
    blob_path(path, sizeof(path), fx->store, &digest, "");
    set_mtime(path, (int64_t)time(NULL) - 120);
    report = run_gc(fx->store, 60, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_false(blob_exists(fx->store, &digest));
}

/* Only "<64 lowercase hex>" (and ".zst") files in a two-lowercase-hex
 * fan-out directory are gc's; anything else, however old, is fsck's to
 * report and stays. */
static void test_gc__leaves_other_names_alone(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest orphan = add_blob(fx->store, "an old orphan");
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], upper[PKGSTORE_DIGEST_HEX_LEN + 1], path[4096];
    const char *names[4];
    pkgstore_gc_report report;
    int64_t old = (int64_t)time(NULL) - 7200;

    backdate(fx->store, &orphan, 7200);
    pkgstore_digest_format_hex(hex, &orphan);
    for (size_t i = 0; i <= PKGSTORE_DIGEST_HEX_LEN; i++)
        upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 'a' + 'A' : hex[i]);
    names[0] = upper;        /* upper-case hex */
    names[1] = hex + 1;      /* 63 characters */
    names[2] = "not-a-blob"; /* not hex at all */
    names[3] = NULL;
    for (size_t i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx->dir, hex, names[i]);
        assert_int_equal(close(open(path, O_CREAT | O_WRONLY, 0444)), 0);
        set_mtime(path, old);
    }
    /* a blob name in a fan-out directory that is not two lowercase hex digits */
    snprintf(path, sizeof(path), "%s/blobs/sha256/xy", fx->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/blobs/sha256/xy/%s", fx->dir, hex);
    assert_int_equal(close(open(path, O_CREAT | O_WRONLY, 0444)), 0);
    set_mtime(path, old);

    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_total, 1);
    assert_int_equal(report.blobs_deleted, 1);
    assert_false(blob_exists(fx->store, &orphan));
    assert_int_equal(access(path, F_OK), 0);
    for (size_t i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", fx->dir, hex, names[i]);
        assert_int_equal(access(path, F_OK), 0);
    }
}

static void test_gc__dry_run(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest keep = add_blob(fx->store, "keep");
    pkgstore_digest drop = add_blob(fx->store, "drop me");
    pkgstore_gc_report dry, real;

    register_package(fx->store, "keep", "1.0.0", &keep);
    backdate(fx->store, &keep, 7200);
    backdate(fx->store, &drop, 7200);
    dry = run_gc(fx->store, 3600, 1);
    assert_int_equal(dry.dry_run, 1);
    assert_int_equal(dry.blobs_deleted, 1);
    assert_int_equal(dry.bytes_freed, strlen("drop me"));
    assert_true(blob_exists(fx->store, &drop));

    real = run_gc(fx->store, 3600, 0);
    assert_int_equal(real.dry_run, 0);
    assert_int_equal(real.blobs_deleted, dry.blobs_deleted);
    assert_int_equal(real.bytes_freed, dry.bytes_freed);
    assert_int_equal(real.blobs_total, dry.blobs_total);
    assert_false(blob_exists(fx->store, &drop));
    assert_true(blob_exists(fx->store, &keep));
}

/* ---------------------------------------------------------------- pins */

struct pins_seen {
    size_t count;
    pkgstore_digest digest;
    char reason[64];
};

static int pins_cb(const pkgstore_digest *digest, const char *reason, void *payload)
{
    struct pins_seen *seen = payload;
    seen->count++;
    seen->digest = *digest;
    snprintf(seen->reason, sizeof(seen->reason), "%s", reason);
    return 0;
}

static void test_gc__pins(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest pinned = add_blob(fx->store, "pinned");
    pkgstore_digest missing;
    struct pins_seen seen;
    pkgstore_gc_report report;
    char long_reason[PKGSTORE_PIN_REASON_MAX + 2];

    memset(&missing, 0xab, sizeof(missing));
    assert_ok(pkgstore_gc_pin(fx->store, &pinned, "rollback target"));
    assert_int_equal(pkgstore_gc_pin(fx->store, &missing, "x"), PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "sha256:abab"));
    memset(long_reason, 'r', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    assert_int_equal(pkgstore_gc_pin(fx->store, &pinned, long_reason), PKGSTORE_EINVALID);

    memset(&seen, 0, sizeof(seen));
    assert_ok(pkgstore_gc_pins_foreach(fx->store, pins_cb, &seen));
    assert_int_equal(seen.count, 1);
    assert_memory_equal(seen.digest.bytes, pinned.bytes, 32);
    assert_string_equal(seen.reason, "rollback target");

    backdate(fx->store, &pinned, 7200);
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_referenced, 1);
    assert_true(blob_exists(fx->store, &pinned));

    assert_ok(pkgstore_gc_unpin(fx->store, &pinned));
    assert_int_equal(pkgstore_gc_unpin(fx->store, &pinned), PKGSTORE_ENOTFOUND);
    memset(&seen, 0, sizeof(seen));
    assert_ok(pkgstore_gc_pins_foreach(fx->store, pins_cb, &seen));
    assert_int_equal(seen.count, 0);
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_false(blob_exists(fx->store, &pinned));

    /* a NULL reason is an empty one */
    pinned = add_blob(fx->store, "pinned again");
    assert_ok(pkgstore_gc_pin(fx->store, &pinned, NULL));
    memset(&seen, 0, sizeof(seen));
    assert_ok(pkgstore_gc_pins_foreach(fx->store, pins_cb, &seen));
    assert_string_equal(seen.reason, "");
}

/* ---------------------------------------------------------------- zst and tmp */

static void write_file(const char *path, const char *text, int64_t mtime)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    set_mtime(path, mtime);
}

static void test_gc__zst_copies_and_tmp(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest with_copy = add_blob(fx->store, "a blob with a transfer copy, a blob with a transfer copy");
    pkgstore_digest orphaned = add_blob(fx->store, "its blob will vanish, its blob will vanish");
    pkgstore_digest young = add_blob(fx->store, "young orphan copy, young orphan copy");
    char path[4096], zst[4096], tmp_old[4096], tmp_new[4096], tmp_busy[4096], tmp_other[4096];
    int64_t old = (int64_t)time(NULL) - 7200;
    pkgstore_gc_report report;
    struct stat st;
    uint64_t copy_size, expected;
    int busy_fd;

    assert_ok(pkgstore_store_zstd_write(fx->store, &with_copy));
    assert_ok(pkgstore_store_zstd_write(fx->store, &orphaned));
    assert_ok(pkgstore_store_zstd_write(fx->store, &young));
    backdate(fx->store, &with_copy, 7200);

    /* orphan two copies: remove their blobs behind the store's back */
    blob_path(path, sizeof(path), fx->store, &orphaned, "");
    blob_path(zst, sizeof(zst), fx->store, &orphaned, ".zst");
    assert_int_equal(unlink(path), 0);
    assert_ok(ps_index_blob_del(ps_store_index(fx->store), &orphaned));
    set_mtime(zst, old);
    assert_int_equal(stat(zst, &st), 0);
    expected = (uint64_t)st.st_size;
    blob_path(path, sizeof(path), fx->store, &young, "");
    assert_int_equal(unlink(path), 0);
    assert_ok(ps_index_blob_del(ps_store_index(fx->store), &young));

    blob_path(path, sizeof(path), fx->store, &with_copy, ".zst");
    assert_int_equal(stat(path, &st), 0);
    copy_size = (uint64_t)st.st_size;
    expected += copy_size + strlen("a blob with a transfer copy, a blob with a transfer copy");

    snprintf(tmp_old, sizeof(tmp_old), "%s/tmp/ingest-stale", fx->dir);
    snprintf(tmp_new, sizeof(tmp_new), "%s/tmp/ingest-fresh", fx->dir);
    snprintf(tmp_busy, sizeof(tmp_busy), "%s/tmp/ingest-busy", fx->dir);
    write_file(tmp_old, "12345", old);
    write_file(tmp_new, "123", (int64_t)time(NULL));
    write_file(tmp_busy, "1234567", old);
    /* not the store's (fsck calls it a stray): gc leaves it, however old */
    snprintf(tmp_other, sizeof(tmp_other), "%s/tmp/notes.txt", fx->dir);
    write_file(tmp_other, "someone's data", old);
    expected += 5;
    busy_fd = open(tmp_busy, O_RDONLY);
    assert_true(busy_fd >= 0);
    assert_int_equal(flock(busy_fd, LOCK_EX), 0); /* a writer still at it */

    report = run_gc(fx->store, 3600, 0);
    assert_int_equal(report.blobs_deleted, 1);
    assert_int_equal(report.zst_deleted, 2); /* the blob's copy and the old orphan */
    assert_int_equal(report.tmp_deleted, 1);
    assert_int_equal(report.bytes_freed, expected);

    assert_int_equal(access(zst, F_OK), -1);
    assert_int_equal(access(path, F_OK), -1);
    blob_path(path, sizeof(path), fx->store, &young, ".zst");
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(access(tmp_old, F_OK), -1);
    assert_int_equal(access(tmp_new, F_OK), 0);
    assert_int_equal(access(tmp_busy, F_OK), 0);
    assert_int_equal(access(tmp_other, F_OK), 0);
    close(busy_fd);
}

static int count_blob_records(const pkgstore_blob_record *record, void *payload)
{
    (void)record;
    (*(size_t *)payload)++;
    return 0;
}

/* ---------------------------------------------------------------- callbacks and options */

struct items {
    size_t count;
    int kinds[8];
    char paths[8][128];
    int stop;
};

static int item_cb(const pkgstore_gc_item *item, void *payload)
{
    struct items *items = payload;
    if (items->count < 8) {
        items->kinds[items->count] = item->kind;
        snprintf(items->paths[items->count], sizeof(items->paths[0]), "%s", item->path);
    }
    items->count++;
    return items->stop ? 7 : 0;
}

static void test_gc__callback_and_options(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest a = add_blob(fx->store, "a"), b = add_blob(fx->store, "b");
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    pkgstore_gc_report report;
    struct items items;
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1], expected[128];

    assert_int_equal(opts.grace_seconds, 3600);
    assert_int_equal(opts.dry_run, 0);
    backdate(fx->store, &a, 100);
    backdate(fx->store, &b, 100);

    memset(&items, 0, sizeof(items));
    opts.grace_seconds = 0;
    opts.dry_run = 1;
    opts.cb = item_cb;
    opts.payload = &items;
    assert_ok(pkgstore_gc_run(&report, fx->store, &opts));
    assert_int_equal(items.count, 2);
    assert_int_equal(items.kinds[0], PKGSTORE_GC_BLOB);
    pkgstore_digest_format_hex(hex, &a);
    snprintf(expected, sizeof(expected), "blobs/sha256/%.2s/%s", hex, hex);
    assert_true(strcmp(items.paths[0], expected) == 0 || strcmp(items.paths[1], expected) == 0);

    /* a non-zero return stops gc after the first item */
    memset(&items, 0, sizeof(items));
    items.stop = 1;
    opts.dry_run = 0;
    assert_int_equal(pkgstore_gc_run(&report, fx->store, &opts), 7);
    assert_int_equal(items.count, 1);
    assert_int_equal(report.blobs_deleted, 1);

    opts.version = 0;
    assert_int_equal(pkgstore_gc_run(&report, fx->store, &opts), PKGSTORE_EINVALID);
    opts.version = PKGSTORE_GC_OPTIONS_VERSION;
    opts.grace_seconds = -1;
    assert_int_equal(pkgstore_gc_run(&report, fx->store, &opts), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_gc_run(&report, NULL, NULL), PKGSTORE_EINVALID);

    /* a read-only store: only a dry run */
    {
        pkgstore_store_options ro = PKGSTORE_STORE_OPTIONS_INIT;
        pkgstore_store *read_only = NULL;
        pkgstore_store_free(fx->store);
        ro.read_only = 1;
        assert_ok(pkgstore_store_open(&read_only, fx->dir, &ro));
        opts.grace_seconds = 0;
        assert_int_equal(pkgstore_gc_run(&report, read_only, &opts), PKGSTORE_EDENIED);
        assert_non_null(strstr(pkgstore_error_detail(), "read-only"));
        opts.dry_run = 1;
        opts.cb = NULL;
        assert_ok(pkgstore_gc_run(&report, read_only, &opts));
        assert_int_equal(report.blobs_deleted, 1);
        pkgstore_store_free(read_only);
        fx->store = open_store(fx->dir);
    }

    /* NULL options: the defaults (one hour), so nothing young is touched */
    assert_ok(pkgstore_gc_run(&report, fx->store, NULL));
    assert_int_equal(report.blobs_deleted, 0);
    assert_int_equal(report.blobs_young, 1);
}

/* More blobs than one delete batch: every one goes, records included, and
 * the ones kept are untouched. */
static void test_gc__large_sweep_in_batches(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest keep = add_blob(fx->store, "keep me");
    pkgstore_digest first, last;
    pkgstore_gc_report report;
    pkgstore_blob_record rec;
    size_t blobs = 0;

    assert_ok(pkgstore_gc_pin(fx->store, &keep, NULL));
    for (int i = 0; i < 300; i++) { /* more than DELETE_BATCH (256) */
        char text[32];
        snprintf(text, sizeof(text), "garbage %d", i);
        last = add_blob(fx->store, text);
        if (i == 0)
            first = last;
    }
    ps_gc_set_clock_skew(60);
    report = run_gc(fx->store, 0, 0);
    ps_gc_set_clock_skew(0);
    assert_int_equal(report.blobs_deleted, 300);
    assert_int_equal(report.blobs_referenced, 1);
    assert_false(blob_exists(fx->store, &first));
    assert_false(blob_exists(fx->store, &last));
    assert_int_equal(pkgstore_index_blob_get(&rec, fx->store, &last), PKGSTORE_ENOTFOUND);
    assert_true(blob_exists(fx->store, &keep));
    assert_ok(pkgstore_index_blob_foreach(fx->store, count_blob_records, &blobs));
    assert_int_equal(blobs, 1);
}

#define ROUNDS 15
#define JUNK 20

/* gc SIGKILLed at random moments leaves a consistent store: no record
 * without its blob, every registered blob in place, and the next run
 * finishes the job. */
static void test_gc__killed_midway(void **state)
{
    struct fixture *fx = *state;
    pkgstore_digest kept[10];
    pkgstore_fsck_report fsck;
    pkgstore_gc_report report;
    unsigned int seed = (unsigned int)getpid();
    int kills = 0;

    for (int i = 0; i < 10; i++) {
        char text[32], version[16];
        snprintf(text, sizeof(text), "registered %d", i);
        snprintf(version, sizeof(version), "1.0.%d", i);
        kept[i] = add_blob(fx->store, text);
        register_package(fx->store, "kept", version, &kept[i]);
    }
    for (int round = 0; round < ROUNDS; round++) {
        pid_t pid;
        int status;
        for (int i = 0; i < JUNK; i++) {
            char text[48];
            snprintf(text, sizeof(text), "junk %d %d", round, i);
            add_blob(fx->store, text);
        }
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            pkgstore_store *store = open_store(fx->dir);
            pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
            opts.grace_seconds = 0;
            ps_gc_set_clock_skew(60);
            _exit(pkgstore_gc_run(NULL, store, &opts) == 0 ? 0 : 1);
        }
        usleep((useconds_t)(rand_r(&seed) % 40000));
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status))
            kills++;
        else
            assert_int_equal(WEXITSTATUS(status), 0);
    }

    assert_ok(pkgstore_store_fsck(&fsck, fx->store, 0, NULL, NULL));
    assert_int_equal(fsck.missing, 0);
    assert_int_equal(fsck.corrupt, 0);
    for (int i = 0; i < 10; i++)
        assert_true(blob_exists(fx->store, &kept[i]));

    ps_gc_set_clock_skew(60);
    report = run_gc(fx->store, 0, 0);
    ps_gc_set_clock_skew(0);
    print_message("gc killed in %d of %d runs; they deleted %d of %d junk blobs\n", kills,
                  ROUNDS, ROUNDS * JUNK - (int)report.blobs_deleted, ROUNDS * JUNK);
    assert_int_equal(report.blobs_total, report.blobs_referenced + report.blobs_deleted);
    assert_int_equal(report.blobs_referenced, 10);
    report = run_gc(fx->store, 0, 0);
    assert_int_equal(report.blobs_total, 10);
}

/* ---------------------------------------------------------------- racing adders */

#define ADDERS 3
#define ADDS 60

/* Adder n: blobs registered as package "adder<n>" through the registry
 * (even adders also hold the shared store lock from the blob's write to
 * the registry add), and as many unregistered blobs that gc may take at
 * any time. Odd adders use the public API only: add then register, so the
 * registry may refuse with ENOTFOUND when gc took the blob in between, but
 * must never leave a dangling record. */
static int adder(const char *dir, int n)
{
    pkgstore_store *store = NULL;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    opts.durability = PKGSTORE_DURABILITY_NONE;
    if (pkgstore_store_open(&store, dir, &opts) != 0)
        return 10;
    pkgstore_registry *reg = NULL;
    if (pkgstore_registry_open(&reg, store) != 0)
        return 10;
    for (int i = 0; i < ADDS; i++) {
        char text[128], junk[128], name[32], version[32];
        pkgstore_artifact artifact;
        pkgstore_digest junk_digest;
        int locked = n % 2 == 0, error;

        snprintf(text, sizeof(text), "adder %d blob %d pid %d", n, i, (int)getpid());
        snprintf(junk, sizeof(junk), "adder %d junk %d pid %d", n, i, (int)getpid());
        snprintf(name, sizeof(name), "adder%d", n);
        snprintf(version, sizeof(version), "1.0.%d", i);
        memset(&artifact, 0, sizeof(artifact));
        snprintf(artifact.platform, sizeof(artifact.platform), "linux/amd64");
        snprintf(artifact.format, sizeof(artifact.format), "binary");
        artifact.size = strlen(text);

        if (locked && ps_store_lock(store, 0, 0) != 0)
            return 11;
        if (pkgstore_store_add_buffer(&artifact.digest, store, text, strlen(text)) != 0)
            return 12;
        error = pkgstore_registry_add(NULL, NULL, reg, name, version, &artifact, NULL);
        if (locked)
            ps_store_unlock(store);
        if (error != 0 && (locked || error != PKGSTORE_ENOTFOUND)) {
            fprintf(stderr, "adder %d: %s\n", n, pkgstore_error_detail());
            return 13;
        }
        if (pkgstore_store_add_buffer(&junk_digest, store, junk, strlen(junk)) != 0)
            return 14;
    }
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return 0;
}

struct race_check {
    pkgstore_store *store;
    size_t records;
    size_t missing;
};

static int race_check_cb(const pkgstore_package_record *record, void *payload)
{
    struct race_check *check = payload;
    check->records++;
    if (pkgstore_store_blob_exists(check->store, pkgstore_package_record_digest(record)) != 1)
        check->missing++;
    return 0;
}

static void test_gc__racing_adders(void **state)
{
    struct fixture *fx = *state;
    pid_t pids[ADDERS];
    int running = ADDERS, runs = 0, start[2];
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    pkgstore_fsck_report fsck;
    struct race_check check = {fx->store, 0, 0};
    uint64_t deleted = 0;

    /* every blob looks a minute old: only the marks and the lock protect */
    opts.grace_seconds = 0;
    ps_gc_set_clock_skew(60);
    assert_int_equal(pipe(start), 0);
    for (int n = 0; n < ADDERS; n++) {
        pids[n] = fork();
        assert_true(pids[n] >= 0);
        if (pids[n] == 0) {
            char c;
            close(start[1]);
            if (read(start[0], &c, 1) != 0) /* wait until gc is about to run */
                _exit(9);
            _exit(adder(fx->dir, n));
        }
    }
    close(start[0]);
    close(start[1]);
    while (running > 0) {
        pkgstore_gc_report report;
        int status;
        assert_ok(pkgstore_gc_run(&report, fx->store, &opts));
        deleted += report.blobs_deleted;
        runs++;
        for (int n = 0; n < ADDERS; n++) {
            if (pids[n] > 0 && waitpid(pids[n], &status, WNOHANG) == pids[n]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    fail_msg("adder %d failed: status %d", n, status);
                pids[n] = 0;
                running--;
            }
        }
    }
    /* one more pass after the adders: all the junk left goes */
    {
        pkgstore_gc_report report;
        assert_ok(pkgstore_gc_run(&report, fx->store, &opts));
        deleted += report.blobs_deleted;
        assert_int_equal(report.blobs_young, 0);
    }
    ps_gc_set_clock_skew(0);
    print_message("gc ran %d times during the adds, deleting %llu blobs\n", runs,
                  (unsigned long long)deleted);
    assert_true(deleted >= ADDERS * ADDS); /* every junk blob at least */

    assert_ok(pkgstore_index_package_foreach(fx->store, NULL, race_check_cb, &check));
    assert_int_equal(check.missing, 0);
    /* the locked (even) adders never lose an add */
    for (int n = 0; n < ADDERS; n += 2) {
        struct race_check one = {fx->store, 0, 0};
        char name[32];
        snprintf(name, sizeof(name), "adder%d", n);
        assert_ok(pkgstore_index_package_foreach(fx->store, name, race_check_cb, &one));
        assert_int_equal(one.records, ADDS);
    }
    assert_ok(pkgstore_store_fsck(&fsck, fx->store, 0, NULL, NULL));
    assert_int_equal(fsck.missing, 0);
    assert_int_equal(fsck.corrupt, 0);
    assert_int_equal(fsck.stray, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gc__mark_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__leaves_linked_uploads_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__registry_manifests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__unreadable_manifest_stops_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__age_from_mtime_without_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__leaves_other_names_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__zst_copies_and_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__callback_and_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__large_sweep_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__killed_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc__racing_adders, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
