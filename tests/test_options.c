/*
 * test_options.c - the options structs of the store, gc, registry and
 * archive modules: every version from 1 to the current one is accepted,
 * others are refused with a detail; the _options_init() functions give
 * what the _INIT macros give; a zeroed struct with a version is the
 * defaults (issue 10 section 5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <pkgstore.h>

typedef struct fixture {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/test_options.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (pkgstore_archive_remove_tree(f->dir) < 0)
        fprintf(stderr, "teardown: %s\n", pkgstore_error_detail());
    free(f);
    return 0;
}

static void expect_version_refused(int rc, unsigned int current)
{
    char expected[32];
    assert_int_equal(rc, PKGSTORE_EINVALID);
    snprintf(expected, sizeof(expected), "(1 to %u)", current);
    if (!strstr(pkgstore_error_detail(), expected))
        fail_msg("detail \"%s\" does not name the versions read %s", pkgstore_error_detail(),
                 expected);
}

/* A struct of only zeros and a version opens (and creates) a store; the
 * refusal of a missing store gives no program's advice. */
static void test_options__store_zeroed_is_useful(void **state)
{
    fixture *f = *state;
    pkgstore_store_options opts;
    pkgstore_store *store = NULL;
    char path[128];
    struct stat st;

    memset(&opts, 0, sizeof(opts));
    opts.version = PKGSTORE_STORE_OPTIONS_VERSION;
    snprintf(path, sizeof(path), "%s/new", f->dir);
    assert_int_equal(pkgstore_store_open(&store, path, &opts), 0);
    pkgstore_store_free(store);
    snprintf(path, sizeof(path), "%s/new/pkgstore.json", f->dir);
    assert_int_equal(stat(path, &st), 0);

    opts.no_create = 1;
    snprintf(path, sizeof(path), "%s/missing", f->dir);
    assert_int_equal(pkgstore_store_open(&store, path, &opts), PKGSTORE_ENOTFOUND);
    assert_null(store);
    char expected[160];
    snprintf(expected, sizeof(expected), "%s: no store here", path);
    assert_string_equal(pkgstore_error_detail(), expected);
}

/* A program built against version 1 set `create` in that field. */
static void test_options__store_version_1_keeps_its_meaning(void **state)
{
    fixture *f = *state;
    pkgstore_store_options opts;
    pkgstore_store *store = NULL;
    char path[128];

    assert_int_equal(pkgstore_store_options_init(&opts, 1), 0);
    assert_int_equal(opts.version, 1);
    assert_int_equal(opts.no_create, 1); /* version 1's create = 1 */
    snprintf(path, sizeof(path), "%s/v1", f->dir);
    assert_int_equal(pkgstore_store_open(&store, path, &opts), 0);
    pkgstore_store_free(store);
    opts.no_create = 0; /* version 1's create = 0 */
    snprintf(path, sizeof(path), "%s/v1-missing", f->dir);
    assert_int_equal(pkgstore_store_open(&store, path, &opts), PKGSTORE_ENOTFOUND);
}

static void test_options__init_functions_match_the_macros(void **state)
{
    (void)state;
    pkgstore_store_options store_macro = PKGSTORE_STORE_OPTIONS_INIT, store_fn;
    pkgstore_gc_options gc_macro = PKGSTORE_GC_OPTIONS_INIT, gc_fn;
    pkgstore_registry_add_options add_macro = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT, add_fn;
    pkgstore_archive_options archive_macro = PKGSTORE_ARCHIVE_OPTIONS_INIT, archive_fn;
    pkgstore_archive_create_options create_macro = PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT,
                                    create_fn;

    memset(&store_fn, 0xa5, sizeof(store_fn));
    assert_int_equal(pkgstore_store_options_init(&store_fn, PKGSTORE_STORE_OPTIONS_VERSION), 0);
    assert_memory_equal(&store_fn, &store_macro, sizeof(store_fn));
    memset(&gc_fn, 0xa5, sizeof(gc_fn));
    assert_int_equal(pkgstore_gc_options_init(&gc_fn, PKGSTORE_GC_OPTIONS_VERSION), 0);
    assert_int_equal(gc_fn.version, gc_macro.version);
    assert_int_equal(gc_fn.grace_seconds, gc_macro.grace_seconds);
    assert_int_equal(gc_fn.dry_run, gc_macro.dry_run);
    assert_null(gc_fn.cb);
    assert_null(gc_fn.payload);
    memset(&add_fn, 0xa5, sizeof(add_fn));
    assert_int_equal(pkgstore_registry_add_options_init(&add_fn,
                                                        PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION),
                     0);
    assert_int_equal(add_fn.version, add_macro.version);
    assert_int_equal(add_fn.type, add_macro.type);
    assert_int_equal(add_fn.force, add_macro.force);
    assert_null(add_fn.dependencies);
    assert_int_equal(add_fn.dependency_count, 0);
    assert_int_equal(add_fn.created, add_macro.created);
    memset(&archive_fn, 0xa5, sizeof(archive_fn));
    assert_int_equal(pkgstore_archive_options_init(&archive_fn, PKGSTORE_ARCHIVE_OPTIONS_VERSION),
                     0);
    assert_int_equal(archive_fn.version, archive_macro.version); /* (padding after it) */
    assert_int_equal(archive_fn.max_entries, archive_macro.max_entries);
    assert_int_equal(archive_fn.max_total_size, archive_macro.max_total_size);
    assert_int_equal(archive_fn.max_ratio, archive_macro.max_ratio);
    assert_int_equal(archive_fn.ratio_min_size, archive_macro.ratio_min_size);
    memset(&create_fn, 0xa5, sizeof(create_fn));
    assert_int_equal(pkgstore_archive_create_options_init(&create_fn,
                                                          PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION),
                     0);
    assert_memory_equal(&create_fn, &create_macro, sizeof(create_fn));

    /* no version 0, no version from the future, no NULL */
    expect_version_refused(pkgstore_store_options_init(&store_fn, 0),
                           PKGSTORE_STORE_OPTIONS_VERSION);
    expect_version_refused(pkgstore_gc_options_init(&gc_fn, PKGSTORE_GC_OPTIONS_VERSION + 1),
                           PKGSTORE_GC_OPTIONS_VERSION);
    expect_version_refused(pkgstore_registry_add_options_init(&add_fn, 0),
                           PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION);
    expect_version_refused(pkgstore_archive_options_init(&archive_fn, 0),
                           PKGSTORE_ARCHIVE_OPTIONS_VERSION);
    expect_version_refused(pkgstore_archive_create_options_init(&create_fn, 0),
                           PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION);
    assert_int_equal(pkgstore_store_options_init(NULL, 1), PKGSTORE_EINVALID);
}

/* Every call that takes an options struct reads versions 1 to current. */
static void test_options__every_version_from_1_to_current(void **state)
{
    fixture *f = *state;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    char path[128];

    for (unsigned int v = 0; v <= PKGSTORE_STORE_OPTIONS_VERSION + 1; v++) {
        pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
        opts.version = v;
        opts.no_create = v == 1; /* create, in either meaning */
        snprintf(path, sizeof(path), "%s/store-%u", f->dir, v);
        int rc = pkgstore_store_open(&store, path, &opts);
        if (v >= 1 && v <= PKGSTORE_STORE_OPTIONS_VERSION) {
            assert_int_equal(rc, 0);
            pkgstore_store_free(store);
        } else {
            expect_version_refused(rc, PKGSTORE_STORE_OPTIONS_VERSION);
        }
    }

    snprintf(path, sizeof(path), "%s/store", f->dir);
    assert_int_equal(pkgstore_store_open(&store, path, NULL), 0);
    for (unsigned int v = 0; v <= PKGSTORE_GC_OPTIONS_VERSION + 1; v++) {
        pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
        opts.version = v;
        opts.dry_run = 1;
        int rc = pkgstore_gc_run(NULL, store, &opts);
        if (v >= 1 && v <= PKGSTORE_GC_OPTIONS_VERSION)
            assert_int_equal(rc, 0);
        else
            expect_version_refused(rc, PKGSTORE_GC_OPTIONS_VERSION);
    }

    assert_int_equal(pkgstore_registry_open(&reg, store), 0);
    pkgstore_artifact artifact;
    memset(&artifact, 0, sizeof(artifact));
    strcpy(artifact.platform, "linux/amd64");
    assert_int_equal(pkgstore_store_add_buffer(&artifact.digest, store, "collector", 9), 0);
    for (unsigned int v = 0; v <= PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION + 1; v++) {
        pkgstore_registry_add_options opts;
        assert_int_equal(pkgstore_registry_add_options_init(&opts, 1), 0);
        opts.version = v;
        int rc = pkgstore_registry_add(NULL, NULL, reg, "otelcol", "1.0.0", &artifact, &opts);
        if (v >= 1 && v <= PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION)
            assert_int_equal(rc, 0);
        else
            expect_version_refused(rc, PKGSTORE_REGISTRY_ADD_OPTIONS_VERSION);
    }
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);

    char tree[96], tarball[128];
    const char *paths[] = {"otelcol"};
    snprintf(tree, sizeof(tree), "%s/tree", f->dir);
    assert_int_equal(mkdir(tree, 0755), 0);
    snprintf(path, sizeof(path), "%s/otelcol", tree);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("#!/bin/sh\n", file);
    fclose(file);
    snprintf(tarball, sizeof(tarball), "%s/otelcol.tar.zst", f->dir);
    for (unsigned int v = 0; v <= PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION + 1; v++) {
        pkgstore_archive_create_options opts = PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT;
        opts.version = v;
        int rc = pkgstore_archive_create_tar_zstd(tarball, tree, paths, 1, &opts);
        if (v >= 1 && v <= PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION)
            assert_int_equal(rc, 0);
        else
            expect_version_refused(rc, PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION);
    }
    for (unsigned int v = 0; v <= PKGSTORE_ARCHIVE_OPTIONS_VERSION + 1; v++) {
        pkgstore_archive_options opts;
        pkgstore_archive_list *list = NULL;
        memset(&opts, 0, sizeof(opts)); /* zero limits: the defaults */
        opts.version = v;
        int rc = pkgstore_archive_list_file(&list, tarball, &opts);
        if (v >= 1 && v <= PKGSTORE_ARCHIVE_OPTIONS_VERSION) {
            assert_int_equal(rc, 0);
            assert_int_equal(pkgstore_archive_list_count(list), 1);
        } else {
            expect_version_refused(rc, PKGSTORE_ARCHIVE_OPTIONS_VERSION);
        }
        pkgstore_archive_list_free(list);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_options__store_zeroed_is_useful, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options__store_version_1_keeps_its_meaning, setup,
                                        teardown),
        cmocka_unit_test(test_options__init_functions_match_the_macros),
        cmocka_unit_test_setup_teardown(test_options__every_version_from_1_to_current, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
