/*
 * test_registry.c - packages over a real store: add, regenerate, list,
 * precedence order, resolve with platforms and constraints, remove,
 * dependency checks, name validation, and changes seen across handles and
 * processes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <signal.h>
#include <fcntl.h>

#include "pkgstore/archive.h"
#include "pkgstore/error.h"
#include "pkgstore/index.h"
#include "pkgstore/manifest.h"
#include "pkgstore/platform.h"
#include "pkgstore/registry.h"
#include "pkgstore/store.h"

/* private: commit counts, and policy records written as the policy module
 * writes them (the tests link the static library) */
#include "index.h"
#include "store.h"

#include "helpers/small_disk.h"

typedef struct fixture {
    char dir[64];
    pkgstore_store *store;
    pkgstore_registry *reg;
} fixture;

static int open_store(pkgstore_store **out, const char *dir)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    opts.durability = PKGSTORE_DURABILITY_NONE;
    return pkgstore_store_open(out, dir, &opts);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/test_registry.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(open_store(&f->store, f->dir), 0);
    assert_int_equal(pkgstore_registry_open(&f->reg, f->store), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pkgstore_registry_free(f->reg);
    pkgstore_store_free(f->store);
    if (pkgstore_archive_remove_tree(f->dir) < 0)
        fprintf(stderr, "teardown: %s\n", pkgstore_error_detail());
    free(f);
    return 0;
}

/* Put a distinct blob in the store; return its artifact for platform. */
static pkgstore_artifact blob(fixture *f, const char *platform, const char *content)
{
    pkgstore_artifact a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(pkgstore_store_add_buffer(&a.digest, f->store, content, strlen(content)), 0);
    snprintf(a.platform, sizeof(a.platform), "%s", platform);
    return a;
}

static void add(fixture *f, const char *name, const char *version, const char *platform,
                pkgstore_package_type type)
{
    char content[256];
    snprintf(content, sizeof(content), "%s %s %s", name, version, platform);
    pkgstore_artifact a = blob(f, platform, content);
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    opts.type = type;
    int rc = pkgstore_registry_add(NULL, NULL, f->reg, name, version, &a, &opts);
    if (rc != 0)
        fail_msg("add %s %s %s: %d %s", name, version, platform, rc, pkgstore_error_detail());
}

/* Write a tar.zst with the given entries (path, mode, content; a NULL
 * content makes a symlink to "../../outside") into the store; return its
 * artifact. Built with libarchive directly so that unsafe entries can be
 * made too. */
typedef struct entry_spec {
    const char *path;
    unsigned int mode;
    const char *content;
} entry_spec;

static pkgstore_artifact archive_blob(fixture *f, const char *platform, const entry_spec *entries,
                                      size_t count)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/archive.tar.zst", f->dir);
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < count; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, entries[i].path);
        if (entries[i].content) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, entries[i].mode);
            archive_entry_set_size(e, (la_int64_t)strlen(entries[i].content));
        } else {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, "../../outside");
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (entries[i].content)
            assert_int_equal(archive_write_data(a, entries[i].content, strlen(entries[i].content)),
                             (la_ssize_t)strlen(entries[i].content));
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);

    pkgstore_artifact artifact;
    memset(&artifact, 0, sizeof(artifact));
    assert_int_equal(pkgstore_store_add_file(&artifact.digest, &artifact.size, f->store, path,
                                             NULL, -1),
                     0);
    unlink(path);
    snprintf(artifact.platform, sizeof(artifact.platform), "%s", platform);
    return artifact;
}

static void test_registry__add_creates_and_indexes(void **state)
{
    fixture *f = *state;
    pkgstore_artifact a = blob(f, "Linux/x86_64", "the collector");
    pkgstore_manifest *m = NULL;
    pkgstore_digest manifest_digest, got_digest;

    assert_int_equal(pkgstore_registry_add(&m, &manifest_digest, f->reg, "otelcol", "v0.98.0",
                                           &a, NULL),
                     0);
    assert_string_equal(pkgstore_manifest_version(m), "0.98.0");
    assert_int_equal(pkgstore_manifest_artifact_count(m), 1);
    const pkgstore_artifact *stored = pkgstore_manifest_artifact(m, 0);
    assert_string_equal(stored->platform, "linux/amd64");
    assert_string_equal(stored->format, "binary");
    assert_string_equal(stored->entrypoint, "otelcol"); /* a binary's default */
    assert_int_equal(stored->size, strlen("the collector")); /* size 0: the blob's */

    /* the manifest is a blob, named by the digest of its canonical bytes */
    pkgstore_digest computed;
    assert_int_equal(pkgstore_manifest_digest(&computed, m), 0);
    assert_true(pkgstore_digest_equal(&computed, &manifest_digest));
    assert_int_equal(pkgstore_store_blob_exists(f->store, &manifest_digest), 1);
    void *bytes = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_store_blob_read(&bytes, &len, f->store, &manifest_digest, 1 << 20),
                     0);
    char *canonical = NULL;
    size_t canonical_len = 0;
    assert_int_equal(pkgstore_manifest_serialize(&canonical, &canonical_len, m, 0), 0);
    assert_int_equal(len, canonical_len);
    assert_memory_equal(bytes, canonical, len);
    pkgstore_free(bytes);
    pkgstore_free(canonical);

    /* get gives it back */
    pkgstore_manifest *got = NULL;
    assert_int_equal(pkgstore_registry_get(&got, &got_digest, f->reg, "otelcol", "0.98.0"), 0);
    assert_true(pkgstore_digest_equal(&got_digest, &manifest_digest));
    assert_string_equal(pkgstore_manifest_name(got), "otelcol");
    pkgstore_manifest_free(got);
    assert_int_equal(pkgstore_registry_get(NULL, &got_digest, f->reg, "otelcol", "v0.98.0"), 0);
    assert_int_equal(pkgstore_registry_get(&got, NULL, f->reg, "otelcol", "0.98.1"),
                     PKGSTORE_ENOTFOUND);
    assert_null(got);

    /* one package record per artifact */
    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "0.98.0",
                                                "linux/amd64"),
                     0);
    assert_true(pkgstore_digest_equal(pkgstore_package_record_digest(record), &a.digest));
    assert_int_equal(pkgstore_package_record_type(record), PKGSTORE_TYPE_PRIMARY);
    assert_string_equal(pkgstore_package_record_entrypoint(record), "otelcol");
    pkgstore_package_record_free(record);
    pkgstore_manifest_free(m);
}

static void test_registry__add_regenerates(void **state)
{
    fixture *f = *state;
    pkgstore_digest first, second, third;
    pkgstore_artifact amd = blob(f, "linux/amd64", "amd64 v1");
    const entry_spec files[] = {{"bin/otelcol", 0755, "arm64 v1"}};
    pkgstore_artifact arm = archive_blob(f, "linux/arm64", files, 1);
    strcpy(arm.format, "tar+zstd");
    strcpy(arm.entrypoint, "bin/otelcol");

    assert_int_equal(pkgstore_registry_add(NULL, &first, f->reg, "otelcol", "1.0.0", &amd, NULL),
                     0);
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_registry_add(&m, &second, f->reg, "otelcol", "1.0.0", &arm, NULL),
                     0);
    assert_false(pkgstore_digest_equal(&first, &second));
    assert_int_equal(pkgstore_manifest_artifact_count(m), 2);
    assert_string_equal(pkgstore_manifest_artifact(m, 0)->platform, "linux/amd64");
    assert_true(pkgstore_digest_equal(&pkgstore_manifest_artifact(m, 0)->digest, &amd.digest));
    assert_string_equal(pkgstore_manifest_artifact(m, 1)->entrypoint, "bin/otelcol");
    pkgstore_manifest_free(m);

    /* adding the same artifact again changes nothing */
    assert_int_equal(pkgstore_registry_add(NULL, &third, f->reg, "otelcol", "1.0.0", &amd, NULL),
                     0);
    assert_true(pkgstore_digest_equal(&second, &third));

    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.0.0",
                                                "linux/amd64"),
                     0);
    assert_true(pkgstore_digest_equal(pkgstore_package_record_digest(record), &amd.digest));
    pkgstore_package_record_free(record);
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.0.0",
                                                "linux/arm64"),
                     0);
    assert_string_equal(pkgstore_package_record_format(record), "tar+zstd");
    pkgstore_package_record_free(record);
}

static void test_registry__add_refuses(void **state)
{
    fixture *f = *state;
    pkgstore_artifact a = blob(f, "linux/amd64", "x");
    pkgstore_artifact missing = a;
    missing.digest.bytes[0] ^= 0xff;

    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &missing, NULL),
                     PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "not in the store"));
    pkgstore_artifact wrong_size = a;
    wrong_size.size = 99;
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &wrong_size, NULL),
                     PKGSTORE_ESIZE_MISMATCH);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0", &a, NULL),
                     PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "version"));
    pkgstore_artifact archive = a;
    strcpy(archive.format, "zip"); /* but it is not one */
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &archive, NULL),
                     PKGSTORE_EFORMAT);
    strcpy(archive.format, "rar");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &archive, NULL),
                     PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "format"));
    pkgstore_artifact bad_platform = a;
    strcpy(bad_platform.platform, "linux");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &bad_platform, NULL),
                     PKGSTORE_EINVALID);

    /* a version keeps its type */
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &a, NULL), 0);
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    opts.type = PKGSTORE_TYPE_ADDON;
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "x", "1.0.0", &a, &opts),
                     PKGSTORE_ECONFLICT);
    assert_non_null(strstr(pkgstore_error_detail(), "primary"));

    /* nothing half-done: the failed adds left no version behind */
    char **versions = NULL;
    size_t count = 0;
    assert_int_equal(pkgstore_registry_versions(&versions, &count, f->reg, "x"), 0);
    assert_int_equal(count, 1);
    pkgstore_registry_strings_free(versions, count);
}

static void test_registry__name_validation(void **state)
{
    fixture *f = *state;
    pkgstore_artifact a = blob(f, "linux/amd64", "x");
    static const char *const bad[] = {"", "Otelcol", "-x", ".x", "_x", "a/b", "a b", "a:b",
                                      "caf\xc3\xa9", "../x", "x\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = pkgstore_registry_add(NULL, NULL, f->reg, bad[i], "1.0.0", &a, NULL);
        if (rc != PKGSTORE_EINVALID)
            fail_msg("name \"%s\": %d", bad[i], rc);
        assert_non_null(strstr(pkgstore_error_detail(), "name"));
    }
    char longest[PKGSTORE_NAME_MAX + 2];
    memset(longest, 'a', PKGSTORE_NAME_MAX);
    longest[PKGSTORE_NAME_MAX] = '\0';
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, longest, "1.0.0", &a, NULL), 0);
    longest[PKGSTORE_NAME_MAX] = 'a';
    longest[PKGSTORE_NAME_MAX + 1] = '\0';
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, longest, "1.0.0", &a, NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "0.x_y-z", "1.0.0", &a, NULL), 0);
    pkgstore_resolution r;
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "A", NULL, "linux/amd64"),
                     PKGSTORE_EINVALID);
    char **versions = NULL;
    size_t count = 0;
    assert_int_equal(pkgstore_registry_versions(&versions, &count, f->reg, "a/b"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_registry_remove(f->reg, "a b", "1.0.0"), PKGSTORE_EINVALID);
}

static void test_registry__lists_in_precedence_order(void **state)
{
    fixture *f = *state;
    static const char *const added[] = {"1.0.0",  "1.0.0-rc.1", "0.9.0",       "1.10.0",
                                        "1.2.0",  "v2.0.0-alpha", "1.0.0-alpha", "1.0.0-rc.10",
                                        "1.0.0-rc.2"};
    static const char *const sorted[] = {"0.9.0",      "1.0.0-alpha", "1.0.0-rc.1",
                                         "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0",
                                         "1.2.0",      "1.10.0",      "2.0.0-alpha"};
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        add(f, "otelcol", added[i], "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "alpha", "1.0.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "zeta", "1.0.0", "linux/amd64", PKGSTORE_TYPE_ADDON);
    add(f, "otelcol-contrib", "1.0.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);

    char **versions = NULL;
    size_t count = 0;
    assert_int_equal(pkgstore_registry_versions(&versions, &count, f->reg, "otelcol"), 0);
    assert_int_equal(count, sizeof(sorted) / sizeof(sorted[0]));
    for (size_t i = 0; i < count; i++)
        assert_string_equal(versions[i], sorted[i]);
    pkgstore_registry_strings_free(versions, count);

    char **names = NULL;
    assert_int_equal(pkgstore_registry_names(&names, &count, f->reg), 0);
    assert_int_equal(count, 4);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "otelcol");
    assert_string_equal(names[2], "otelcol-contrib");
    assert_string_equal(names[3], "zeta");
    pkgstore_registry_strings_free(names, count);

    assert_int_equal(pkgstore_registry_versions(&versions, &count, f->reg, "nothing"),
                     PKGSTORE_ENOTFOUND);
    assert_null(versions);
    assert_int_equal(count, 0);
}

static void expect_resolve(fixture *f, const char *name, const char *constraint,
                           const char *platform, const char *want_version,
                           const char *want_platform)
{
    pkgstore_resolution r;
    int rc = pkgstore_registry_resolve(&r, f->reg, name, constraint, platform);
    if (rc != 0)
        fail_msg("resolve %s \"%s\" %s: %d %s", name, constraint ? constraint : "(null)",
                 platform, rc, pkgstore_error_detail());
    if (strcmp(r.version, want_version) != 0 || strcmp(r.artifact.platform, want_platform) != 0)
        fail_msg("resolve %s \"%s\" %s: got %s %s, wanted %s %s", name,
                 constraint ? constraint : "(null)", platform, r.version, r.artifact.platform,
                 want_version, want_platform);
}

static void test_registry__resolve_platforms_and_constraints(void **state)
{
    fixture *f = *state;
    add(f, "otelcol", "0.97.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "0.97.0", "linux/arm64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "0.98.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "0.98.0", "linux/386", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "0.98.0", "linux/arm/v6", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "0.99.0", "linux/386", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "1.0.0-rc.1", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "script", "1.0.0", "any/any", PKGSTORE_TYPE_ADDON);
    add(f, "script", "1.1.0", "linux/amd64", PKGSTORE_TYPE_ADDON);
    add(f, "beta-only", "2.0.0-beta.1", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "beta-only", "2.0.0-beta.2", "linux/amd64", PKGSTORE_TYPE_PRIMARY);

    /* highest release with a compatible artifact; amd64 runs 386 */
    expect_resolve(f, "otelcol", NULL, "linux/amd64", "0.99.0", "linux/386");
    expect_resolve(f, "otelcol", "", "linux/x86_64", "0.99.0", "linux/386");
    /* exact beats fallback within one version */
    expect_resolve(f, "otelcol", "~0.98", "linux/amd64", "0.98.0", "linux/amd64");
    expect_resolve(f, "otelcol", ">=0.97.0 <0.99.0", "linux/amd64", "0.98.0", "linux/amd64");
    expect_resolve(f, "otelcol", "0.97.x || 0.98.x", "linux/386", "0.98.0", "linux/386");
    /* arm64 has only 0.97.0 exactly; arm/v6 of 0.98.0 is a fallback for arm64 */
    expect_resolve(f, "otelcol", NULL, "linux/arm64", "0.98.0", "linux/arm/v6");
    expect_resolve(f, "otelcol", "<0.98.0", "linux/aarch64", "0.97.0", "linux/arm64");
    expect_resolve(f, "otelcol", NULL, "linux/armv7l", "0.98.0", "linux/arm/v6");
    /* pre-releases: only when asked for, or when nothing else exists */
    expect_resolve(f, "otelcol", ">=1.0.0-rc.0", "linux/amd64", "1.0.0-rc.1", "linux/amd64");
    expect_resolve(f, "beta-only", NULL, "linux/amd64", "2.0.0-beta.2", "linux/amd64");
    /* any/any runs everywhere, but an exact artifact of a higher version wins */
    expect_resolve(f, "script", NULL, "darwin/arm64", "1.0.0", "any/any");
    expect_resolve(f, "script", NULL, "linux/amd64", "1.1.0", "linux/amd64");

    pkgstore_resolution r;
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", NULL, "windows/amd64"),
                     PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "windows/amd64"));
    assert_string_equal(r.version, "");
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", ">=5", "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "no version matches"));
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "nothing", NULL, "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
    assert_non_null(strstr(pkgstore_error_detail(), "no such package"));
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", ">>1", "linux/amd64"),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", NULL, "linux"),
                     PKGSTORE_EINVALID);

    /* the resolution carries everything an offer needs */
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", "0.98.0", "linux/amd64"), 0);
    assert_string_equal(r.name, "otelcol");
    assert_int_equal(r.type, PKGSTORE_TYPE_PRIMARY);
    assert_string_equal(r.artifact.format, "binary");
    assert_string_equal(r.artifact.entrypoint, "otelcol");
    pkgstore_digest manifest_digest;
    assert_int_equal(pkgstore_registry_get(NULL, &manifest_digest, f->reg, "otelcol", "0.98.0"),
                     0);
    assert_true(pkgstore_digest_equal(&manifest_digest, &r.manifest_digest));

    /* NULL platform means the host's: same answer as naming the host, and
     * "script" has an any/any artifact, so it always resolves */
    pkgstore_platform host;
    char host_text[PKGSTORE_PLATFORM_STR_SIZE];
    pkgstore_resolution named;
    assert_int_equal(pkgstore_platform_host(&host), 0);
    pkgstore_platform_format(host_text, &host);
    assert_int_equal(pkgstore_registry_resolve(&named, f->reg, "script", NULL, host_text), 0);
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "script", NULL, NULL), 0);
    assert_string_equal(r.version, named.version);
    assert_string_equal(r.artifact.platform, named.artifact.platform);
}

static void test_registry__remove(void **state)
{
    fixture *f = *state;
    add(f, "otelcol", "1.0.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "1.1.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol", "1.1.0", "linux/arm64", PKGSTORE_TYPE_PRIMARY);
    expect_resolve(f, "otelcol", NULL, "linux/amd64", "1.1.0", "linux/amd64");
    pkgstore_digest manifest_digest;
    assert_int_equal(pkgstore_registry_get(NULL, &manifest_digest, f->reg, "otelcol", "1.1.0"),
                     0);

    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol", "v1.1.0"), 0);
    expect_resolve(f, "otelcol", NULL, "linux/amd64", "1.0.0", "linux/amd64");
    assert_int_equal(pkgstore_registry_get(NULL, NULL, f->reg, "otelcol", "1.1.0"),
                     PKGSTORE_ENOTFOUND);
    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.1.0",
                                                "linux/arm64"),
                     PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.0.0",
                                                "linux/amd64"),
                     0);
    pkgstore_package_record_free(record);
    /* the blobs stay for gc */
    assert_int_equal(pkgstore_store_blob_exists(f->store, &manifest_digest), 1);
    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol", "1.1.0"), PKGSTORE_ENOTFOUND);

    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol", "1.0.0"), 0);
    char **names = NULL;
    size_t count = 0;
    assert_int_equal(pkgstore_registry_names(&names, &count, f->reg), 0);
    assert_int_equal(count, 0);
    pkgstore_registry_strings_free(names, count);
    pkgstore_resolution r;
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "otelcol", NULL, "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
}

static void test_registry__dependency_check(void **state)
{
    fixture *f = *state;
    add(f, "otelcol", "0.98.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "helper", "1.0.0", "linux/amd64", PKGSTORE_TYPE_ADDON);

    pkgstore_artifact a = blob(f, "linux/amd64", "sidecar");
    pkgstore_dependency deps[3];
    memset(deps, 0, sizeof(deps));
    strcpy(deps[0].name, "otelcol");
    strcpy(deps[0].constraint, ">=0.99.0");
    strcpy(deps[1].name, "missing");
    strcpy(deps[1].constraint, "^1");
    strcpy(deps[2].name, "helper");
    strcpy(deps[2].constraint, "*");
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    opts.type = PKGSTORE_TYPE_ADDON;
    opts.dependencies = deps;
    opts.dependency_count = 3;

    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "sidecar", "1.0.0", &a, &opts),
                     PKGSTORE_EDEPENDENCY);
    const char *detail = pkgstore_error_detail();
    assert_non_null(strstr(detail, "otelcol >=0.99.0 (no matching version)"));
    assert_non_null(strstr(detail, "missing ^1 (no such package)"));
    assert_non_null(strstr(detail, "helper * (not a primary package)"));
    assert_int_equal(pkgstore_registry_get(NULL, NULL, f->reg, "sidecar", "1.0.0"),
                     PKGSTORE_ENOTFOUND);

    /* met once the primary exists */
    opts.dependency_count = 1;
    add(f, "otelcol", "0.99.1", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_registry_add(&m, NULL, f->reg, "sidecar", "1.0.0", &a, &opts), 0);
    assert_int_equal(pkgstore_manifest_dependency_count(m), 1);
    assert_string_equal(pkgstore_manifest_dependency(m, 0)->constraint, ">=0.99.0");
    pkgstore_manifest_free(m);

    /* force skips the check */
    opts.dependencies = &deps[1];
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "sidecar", "1.1.0", &a, &opts),
                     PKGSTORE_EDEPENDENCY);
    opts.force = 1;
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "sidecar", "1.1.0", &a, &opts), 0);

    /* an unmet dependency already in the manifest blocks later adds too */
    pkgstore_artifact arm = blob(f, "linux/arm64", "sidecar arm");
    opts.force = 0;
    opts.dependency_count = 0;
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "sidecar", "1.1.0", &arm, &opts),
                     PKGSTORE_EDEPENDENCY);
}

static void test_registry__put_whole_manifest(void **state)
{
    fixture *f = *state;
    pkgstore_artifact a = blob(f, "linux/amd64", "put me");
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "2.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), PKGSTORE_OK);
    assert_int_equal(pkgstore_manifest_annotation_set(m, "org.example.note", "hello"), 0);
    /* size 0 is not "take the blob's" for a whole manifest */
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), PKGSTORE_ESIZE_MISMATCH);
    a.size = strlen("put me");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 1);
    pkgstore_digest digest, expected;
    assert_int_equal(pkgstore_registry_put(&digest, f->reg, m, 0), 0);
    assert_int_equal(pkgstore_manifest_digest(&expected, m), 0);
    assert_true(pkgstore_digest_equal(&digest, &expected));
    pkgstore_manifest *got = NULL;
    assert_int_equal(pkgstore_registry_get(&got, NULL, f->reg, "otelcol", "2.0.0"), 0);
    assert_string_equal(pkgstore_manifest_annotation_get(got, "org.example.note"), "hello");
    pkgstore_manifest_free(got);
    pkgstore_manifest_free(m);
}

static void test_registry__sees_changes_of_other_handles(void **state)
{
    fixture *f = *state;
    pkgstore_registry *other = NULL;
    pkgstore_resolution r;
    assert_int_equal(pkgstore_registry_open(&other, f->store), 0);
    add(f, "otelcol", "1.0.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    assert_int_equal(pkgstore_registry_resolve(&r, other, "otelcol", NULL, "linux/amd64"), 0);
    assert_string_equal(r.version, "1.0.0");
    add(f, "otelcol", "1.1.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    assert_int_equal(pkgstore_registry_resolve(&r, other, "otelcol", NULL, "linux/amd64"), 0);
    assert_string_equal(r.version, "1.1.0");

    /* another process: the child opens its own store handle and adds */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pkgstore_store *store = NULL;
        pkgstore_registry *reg = NULL;
        pkgstore_artifact a;
        memset(&a, 0, sizeof(a));
        strcpy(a.platform, "linux/amd64");
        int ok = open_store(&store, f->dir) == 0 && pkgstore_registry_open(&reg, store) == 0 &&
                 pkgstore_store_add_buffer(&a.digest, store, "child", 5) == 0 &&
                 pkgstore_registry_add(NULL, NULL, reg, "otelcol", "1.2.0", &a, NULL) == 0;
        pkgstore_registry_free(reg);
        pkgstore_store_free(store);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(pkgstore_registry_resolve(&r, other, "otelcol", NULL, "linux/amd64"), 0);
    assert_string_equal(r.version, "1.2.0");
    pkgstore_registry_free(other);
}

static void test_registry__new_platforms_are_ranked(void **state)
{
    fixture *f = *state;
    pkgstore_resolution r;
    pkgstore_registry *other = NULL;
    add(f, "script", "1.0.0", "linux/amd64", PKGSTORE_TYPE_ADDON);
    assert_int_equal(pkgstore_registry_resolve(&r, f->reg, "script", NULL, "darwin/arm64"),
                     PKGSTORE_ENOTFOUND);
    /* a platform the handle has never seen, then one every node can run */
    add(f, "script", "0.9.0", "darwin/arm64", PKGSTORE_TYPE_ADDON);
    expect_resolve(f, "script", NULL, "darwin/arm64", "0.9.0", "darwin/arm64");
    add(f, "script", "1.0.0", "any/any", PKGSTORE_TYPE_ADDON);
    expect_resolve(f, "script", NULL, "darwin/arm64", "1.0.0", "any/any");
    expect_resolve(f, "script", NULL, "linux/amd64", "1.0.0", "linux/amd64");
    /* a second handle in the same thread keeps its own platform ids */
    assert_int_equal(pkgstore_registry_open(&other, f->store), 0);
    assert_int_equal(pkgstore_registry_resolve(&r, other, "script", "<1", "darwin/arm64"), 0);
    assert_string_equal(r.artifact.platform, "darwin/arm64");
    assert_int_equal(pkgstore_registry_resolve(&r, other, "script", NULL, "windows/386"), 0);
    assert_string_equal(r.artifact.platform, "any/any");
    pkgstore_registry_free(other);
    expect_resolve(f, "script", "<1", "darwin/arm64", "0.9.0", "darwin/arm64");
}

typedef struct adder {
    fixture *f;
    int index;
    int rc;
} adder;

static void *add_thread(void *arg)
{
    adder *a = arg;
    static const char *const platforms[] = {"linux/amd64", "linux/arm64", "linux/386",
                                            "linux/arm/v7", "darwin/amd64", "darwin/arm64"};
    char content[32];
    pkgstore_artifact artifact;
    memset(&artifact, 0, sizeof(artifact));
    snprintf(content, sizeof(content), "thread %d", a->index);
    strcpy(artifact.platform, platforms[a->index]);
    a->rc = pkgstore_store_add_buffer(&artifact.digest, a->f->store, content, strlen(content));
    if (a->rc == 0)
        a->rc = pkgstore_registry_add(NULL, NULL, a->f->reg, "otelcol", "3.0.0", &artifact, NULL);
    return NULL;
}

static void test_registry__concurrent_adds_are_all_kept(void **state)
{
    fixture *f = *state;
    pthread_t threads[6];
    adder adders[6];
    for (int i = 0; i < 6; i++) {
        adders[i] = (adder){f, i, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, add_thread, &adders[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(adders[i].rc, 0);
    }
    pkgstore_manifest *m = NULL;
    assert_int_equal(pkgstore_registry_get(&m, NULL, f->reg, "otelcol", "3.0.0"), 0);
    assert_int_equal(pkgstore_manifest_artifact_count(m), 6);
    pkgstore_manifest_free(m);
    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "3.0.0",
                                                "darwin/arm64"),
                     0);
    pkgstore_package_record_free(record);
}

static void test_registry__archives_are_detected_and_checked(void **state)
{
    fixture *f = *state;
    const entry_spec good[] = {{"otelcol/README", 0644, "read me"},
                               {"otelcol/bin/otelcol", 0755, "#!/bin/sh\necho hi\n"}};
    pkgstore_artifact a = archive_blob(f, "linux/amd64", good, 2);
    pkgstore_manifest *m = NULL;

    /* no format, no entrypoint: detected, and the only executable */
    assert_int_equal(pkgstore_registry_add(&m, NULL, f->reg, "otelcol", "1.0.0", &a, NULL), 0);
    assert_string_equal(pkgstore_manifest_artifact(m, 0)->format, "tar+zstd");
    assert_string_equal(pkgstore_manifest_artifact(m, 0)->entrypoint, "otelcol/bin/otelcol");
    pkgstore_manifest_free(m);

    /* an explicit entrypoint, spelled loosely */
    pkgstore_artifact named = a;
    strcpy(named.format, "tar+zstd");
    strcpy(named.entrypoint, "./otelcol/.//README/");
    assert_int_equal(pkgstore_registry_add(&m, NULL, f->reg, "otelcol", "1.0.1", &named, NULL), 0);
    assert_string_equal(pkgstore_manifest_artifact(m, 0)->entrypoint, "otelcol/README");
    pkgstore_manifest_free(m);

    /* the entrypoint must be in it, and a regular file */
    strcpy(named.entrypoint, "otelcol/bin/missing");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.2", &named, NULL),
                     PKGSTORE_ENOTFOUND);
    strcpy(named.entrypoint, "otelcol/bin");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.2", &named, NULL),
                     PKGSTORE_ENOTFOUND); /* a directory only implied by a path */
    assert_non_null(strstr(pkgstore_error_detail(), "not in the archive"));

    /* the declared format must be the real one */
    strcpy(named.format, "tar+gzip");
    strcpy(named.entrypoint, "otelcol/bin/otelcol");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.2", &named, NULL),
                     PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "tar+zstd"));

    /* two executables and no entrypoint: which one? */
    const entry_spec two[] = {{"a", 0755, "a"}, {"b", 0755, "b"}};
    pkgstore_artifact ambiguous = archive_blob(f, "linux/amd64", two, 2);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.3", &ambiguous,
                                           NULL),
                     PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "entrypoint"));

    /* unsafe entries are refused at upload */
    const entry_spec traversal[] = {{"../evil", 0755, "x"}, {"ok", 0755, "y"}};
    pkgstore_artifact evil = archive_blob(f, "linux/amd64", traversal, 2);
    strcpy(evil.entrypoint, "ok");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.4", &evil, NULL),
                     PKGSTORE_EUNSAFE);
    const entry_spec link[] = {{"bin/otelcol", 0755, "x"}, {"escape", 0777, NULL}};
    pkgstore_artifact escaping = archive_blob(f, "linux/amd64", link, 2);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.5", &escaping,
                                           NULL),
                     PKGSTORE_EUNSAFE);

    /* none of the refused versions exists */
    char **versions = NULL;
    size_t count = 0;
    assert_int_equal(pkgstore_registry_versions(&versions, &count, f->reg, "otelcol"), 0);
    assert_int_equal(count, 2);
    pkgstore_registry_strings_free(versions, count);
}

/* ---------------------------------------------------------------- one transaction per change */

static uint64_t commits(fixture *f)
{
    return ps_index_last_txnid(ps_store_index(f->store));
}

/* Issue 10 section 3: manifest, package records and generation commit in
 * one LMDB transaction per change (it was 5 for one new artifact). */
static void test_registry__one_transaction_per_change(void **state)
{
    fixture *f = *state;
    pkgstore_artifact amd = blob(f, "linux/amd64", "amd64 build");
    pkgstore_artifact arm = blob(f, "linux/arm64", "arm64 build");
    uint64_t before = commits(f);

    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &amd, NULL), 0);
    assert_int_equal(commits(f) - before, 1);
    before = commits(f);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &arm, NULL), 0);
    assert_int_equal(commits(f) - before, 1);
    /* the same artifact again writes nothing at all */
    before = commits(f);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &arm, NULL), 0);
    assert_int_equal(commits(f) - before, 0);
    /* the manifest blob got its blob record in that transaction */
    pkgstore_digest manifest_digest;
    pkgstore_blob_record blob_record;
    assert_int_equal(pkgstore_registry_get(NULL, &manifest_digest, f->reg, "otelcol", "1.0.0"), 0);
    assert_int_equal(pkgstore_index_blob_get(&blob_record, f->store, &manifest_digest), 0);

    before = commits(f);
    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol", "1.0.0"), 0);
    assert_int_equal(commits(f) - before, 1);
    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.0.0",
                                                "linux/arm64"),
                     PKGSTORE_ENOTFOUND);

    /* a whole manifest: one transaction too */
    pkgstore_manifest *m = NULL;
    amd.size = strlen("amd64 build");
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "2.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &amd), 0);
    before = commits(f);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), 0);
    assert_int_equal(commits(f) - before, 1);
    pkgstore_manifest_free(m);
}

/* In batch mode the manifest blob (and the artifact) are synced before
 * the transaction that names them: the store records a batch blob only
 * after its sync, so their blob records exist as soon as the add returns
 * (store-format.md, invariant 2). */
static void test_registry__batch_mode_records_only_synced_blobs(void **state)
{
    fixture *f = *state;
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_blob_record record;
    pkgstore_digest manifest_digest;
    pkgstore_artifact a;
    char dir[128];

    snprintf(dir, sizeof(dir), "%s/batch", f->dir);
    opts.durability = PKGSTORE_DURABILITY_BATCH;
    assert_int_equal(pkgstore_store_open(&store, dir, &opts), 0);
    assert_int_equal(pkgstore_registry_open(&reg, store), 0);
    memset(&a, 0, sizeof(a));
    strcpy(a.platform, "linux/amd64");
    assert_int_equal(pkgstore_store_add_buffer(&a.digest, store, "batched", 7), 0);
    /* not synced yet, so not recorded yet */
    assert_int_equal(pkgstore_index_blob_get(&record, store, &a.digest), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_registry_add(NULL, &manifest_digest, reg, "otelcol", "1.0.0", &a,
                                           NULL),
                     0);
    assert_int_equal(pkgstore_index_blob_get(&record, store, &manifest_digest), 0);
    assert_int_equal(pkgstore_index_blob_get(&record, store, &a.digest), 0);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
}

/* ---------------------------------------------------------------- immutable versions */

static void test_registry__versions_are_immutable(void **state)
{
    fixture *f = *state;
    pkgstore_artifact first = blob(f, "linux/amd64", "first build");
    pkgstore_artifact second = blob(f, "linux/amd64", "second build");
    pkgstore_digest before, after;
    pkgstore_manifest *m = NULL;

    assert_int_equal(pkgstore_registry_add(NULL, &before, f->reg, "otelcol", "1.0.0", &first,
                                           NULL),
                     0);
    /* a different artifact for (otelcol, 1.0.0, linux/amd64): refused */
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &second, NULL),
                     PKGSTORE_ECONFLICT);
    assert_non_null(strstr(pkgstore_error_detail(),
                           "otelcol 1.0.0 linux/amd64: already has a different artifact"));
    assert_non_null(strstr(pkgstore_error_detail(), "only with replace"));
    /* so is another entrypoint for the same bytes */
    pkgstore_artifact renamed = first;
    strcpy(renamed.entrypoint, "collector");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &renamed, NULL),
                     PKGSTORE_ECONFLICT);
    assert_int_equal(pkgstore_registry_get(&m, &after, f->reg, "otelcol", "1.0.0"), 0);
    assert_true(pkgstore_digest_equal(&before, &after));
    assert_true(pkgstore_digest_equal(&pkgstore_manifest_artifact(m, 0)->digest, &first.digest));
    pkgstore_manifest_free(m);

    /* the identical artifact again is fine */
    assert_int_equal(pkgstore_registry_add(NULL, &after, f->reg, "otelcol", "1.0.0", &first, NULL),
                     0);
    assert_true(pkgstore_digest_equal(&before, &after));

    /* a version-1 options struct has no replace: still refused */
    pkgstore_registry_add_options v1;
    assert_int_equal(pkgstore_registry_add_options_init(&v1, 1), 0);
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &second, &v1),
                     PKGSTORE_ECONFLICT);

    /* replace: done, said (returns 1), and the old artifact handed back */
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    pkgstore_artifact old;
    memset(&old, 0, sizeof(old));
    opts.replace = 1;
    opts.replaced = &old;
    assert_int_equal(pkgstore_registry_add(&m, NULL, f->reg, "otelcol", "1.0.0", &second, &opts),
                     1);
    assert_true(pkgstore_digest_equal(&old.digest, &first.digest));
    assert_true(pkgstore_digest_equal(&pkgstore_manifest_artifact(m, 0)->digest, &second.digest));
    pkgstore_manifest_free(m);
    /* replace with the same artifact: nothing replaced */
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &second, &opts),
                     0);

    /* a whole manifest may add platforms, not change or drop one */
    pkgstore_artifact arm = blob(f, "linux/arm64", "arm build");
    arm.size = strlen("arm build");
    first.size = strlen("first build");
    second.size = strlen("second build");
    assert_int_equal(pkgstore_registry_get(&m, NULL, f->reg, "otelcol", "1.0.0"), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &arm), 0);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &first), 1);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), PKGSTORE_ECONFLICT);
    assert_int_equal(pkgstore_manifest_remove_artifact(m, "linux/amd64"), 0);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), PKGSTORE_ECONFLICT);
    assert_non_null(strstr(pkgstore_error_detail(), "drops this artifact"));
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, PKGSTORE_REGISTRY_REPLACE), 1);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0x80), PKGSTORE_EINVALID);
    pkgstore_manifest_free(m);
    pkgstore_package_record *record = NULL;
    assert_int_equal(pkgstore_index_package_get(&record, f->store, "otelcol", "1.0.0",
                                                "linux/amd64"),
                     PKGSTORE_ENOTFOUND);
}

/* ---------------------------------------------------------------- policies */

typedef struct raw_policy {
    const char *name;
    const char *json;
} raw_policy;

static int write_policy(MDB_txn *txn, ps_index *index, void *payload)
{
    raw_policy *policy = payload;
    MDB_val key = {strlen(policy->name), (void *)policy->name};
    MDB_val val = {strlen(policy->json), (void *)policy->json};
    int rc = mdb_put(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, &val, 0);
    return rc ? ps_index_error(rc, "test: write policy") : 0;
}

/* A policy record as policy_to_record() in policy.c writes it. */
static void put_policy(fixture *f, const char *name, const char *package, const char *version)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"created\":1795773600,\"name\":\"%s\",\"package\":\"%s\",\"priority\":0,"
             "\"selector\":\"env=prod\",\"type\":\"primary\",\"updated\":1795773600,"
             "\"version\":\"%s\"}",
             name, package, version);
    raw_policy policy = {name, json};
    assert_int_equal(ps_index_write(ps_store_index(f->store), write_policy, &policy), 0);
}

static int drop_policy(MDB_txn *txn, ps_index *index, void *payload)
{
    MDB_val key = {strlen(payload), payload};
    int rc = mdb_del(txn, ps_index_dbi(index, PS_DB_POLICIES), &key, NULL);
    return rc ? ps_index_error(rc, "test: drop policy") : 0;
}

/* Issue 10 section 2: the check that a version a policy references is not
 * removed (or replaced) lives in the registry's own transaction, so every
 * program gets it, not only the server. */
static void test_registry__policies_pin_their_versions(void **state)
{
    fixture *f = *state;
    add(f, "otelcol-contrib", "0.98.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    add(f, "otelcol-contrib", "0.99.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    put_policy(f, "canary", "otelcol-contrib", "0.98.0");

    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol-contrib", "v0.98.0"),
                     PKGSTORE_ECONFLICT);
    assert_string_equal(pkgstore_error_detail(),
                        "otelcol-contrib 0.98.0 is referenced by policy canary");
    assert_int_equal(pkgstore_registry_get(NULL, NULL, f->reg, "otelcol-contrib", "0.98.0"), 0);
    /* not even with replace */
    pkgstore_artifact other = blob(f, "linux/amd64", "a rebuilt 0.98.0");
    pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
    opts.replace = 1;
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol-contrib", "0.98.0", &other,
                                           &opts),
                     PKGSTORE_ECONFLICT);
    assert_string_equal(pkgstore_error_detail(),
                        "otelcol-contrib 0.98.0 is referenced by policy canary");
    /* adding a platform to it is no replacement */
    pkgstore_artifact arm = blob(f, "linux/arm64", "0.98.0 for arm");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol-contrib", "0.98.0", &arm,
                                           NULL),
                     0);

    /* every referencing policy is named */
    put_policy(f, "prod", "otelcol-contrib", "0.98.0");
    put_policy(f, "other", "otelcol-contrib", "0.99.0");
    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.98.0"),
                     PKGSTORE_ECONFLICT);
    assert_string_equal(pkgstore_error_detail(),
                        "otelcol-contrib 0.98.0 is referenced by policies canary, prod");

    /* once nothing references it, it goes */
    assert_int_equal(ps_index_write(ps_store_index(f->store), drop_policy, "canary"), 0);
    assert_int_equal(ps_index_write(ps_store_index(f->store), drop_policy, "prod"), 0);
    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.98.0"), 0);

    /* a policy record that cannot be read might reference anything */
    raw_policy broken = {"broken", "{not json"};
    assert_int_equal(ps_index_write(ps_store_index(f->store), write_policy, &broken), 0);
    assert_int_equal(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.99.0"),
                     PKGSTORE_ECORRUPT);
    assert_non_null(strstr(pkgstore_error_detail(), "policy record broken"));
}

/* ---------------------------------------------------------------- formats from the content */

/* Issue 9: the format is detected from the content even when one is
 * declared; a declaration the content contradicts is refused. */
static void test_registry__format_comes_from_the_content(void **state)
{
    fixture *f = *state;
    const entry_spec traversal[] = {{"../evil", 0755, "x"}, {"otelcol", 0755, "y"}};
    pkgstore_artifact evil = archive_blob(f, "linux/amd64", traversal, 2);

    /* a tar declared a binary would be installed whole and unchecked */
    strcpy(evil.format, "binary");
    strcpy(evil.entrypoint, "otelcol");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &evil, NULL),
                     PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(),
                           "artifact.format: declared binary, but blob sha256:"));
    assert_non_null(strstr(pkgstore_error_detail(), "is a tar+zstd archive"));
    /* undeclared, it is detected, checked and refused as unsafe */
    evil.format[0] = '\0';
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &evil, NULL),
                     PKGSTORE_EUNSAFE);
    assert_non_null(strstr(pkgstore_error_detail(), "../evil"));

    /* a binary declared an archive */
    pkgstore_artifact binary = blob(f, "linux/amd64", "\x7f" "ELF not an archive");
    strcpy(binary.format, "tar+gzip");
    strcpy(binary.entrypoint, "otelcol");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &binary, NULL),
                     PKGSTORE_EFORMAT);
    assert_non_null(strstr(pkgstore_error_detail(), "declared tar+gzip, but blob"));
    assert_non_null(strstr(pkgstore_error_detail(), "is not an archive"));
    /* and a whole manifest gets the same checks */
    pkgstore_manifest *m = NULL;
    strcpy(evil.format, "binary");
    evil.size = 0;
    assert_int_equal(pkgstore_store_blob_stat(&evil.size, f->store, &evil.digest), 0);
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &evil), 0);
    assert_int_equal(pkgstore_registry_put(NULL, f->reg, m, 0), PKGSTORE_EINVALID);
    assert_non_null(strstr(pkgstore_error_detail(), "artifacts[0].format: declared binary"));
    pkgstore_manifest_free(m);

    /* the honest binary goes in */
    strcpy(binary.format, "binary");
    assert_int_equal(pkgstore_registry_add(NULL, NULL, f->reg, "otelcol", "1.0.0", &binary, NULL),
                     0);
}

/* ---------------------------------------------------------------- a full disk */

/* The child's side of the test below; 0 when all went as it should. */
static int full_disk_child(const char *dir)
{
    char store_dir[256], filler[256];
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_artifact a, b;
    pkgstore_fsck_report report;
    char **versions = NULL;
    size_t count = 0;

    snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    memset(&a, 0, sizeof(a));
    strcpy(a.platform, "linux/amd64");
    b = a;
    if (pkgstore_store_open(&store, store_dir, NULL) != 0 ||
        pkgstore_registry_open(&reg, store) != 0 ||
        pkgstore_store_add_buffer(&a.digest, store, "1.0.0 build", 11) != 0 ||
        pkgstore_store_add_buffer(&b.digest, store, "1.1.0 build", 11) != 0 ||
        pkgstore_registry_add(NULL, NULL, reg, "otelcol", "1.0.0", &a, NULL) != 0) {
        fprintf(stderr, "set-up: %s\n", pkgstore_error_detail());
        return 10;
    }
    /* two pages left: one for the manifest blob, one for LMDB, whose write
     * of more then comes short */
    if (small_disk_fill(filler, 8192) != 0)
        return 11;
    int error = pkgstore_registry_add(NULL, NULL, reg, "otelcol", "1.1.0", &b, NULL);
    fprintf(stderr, "full disk: %s\n", pkgstore_error_detail());
    if (error != PKGSTORE_ENOSPC)
        return 12;
    /* nothing half-done, nothing broken */
    if (pkgstore_registry_versions(&versions, &count, reg, "otelcol") != 0 || count != 1)
        return 13;
    pkgstore_registry_strings_free(versions, count);
    if (pkgstore_store_fsck(&report, store, 0, NULL, NULL) != 0 ||
        report.missing + report.corrupt + report.stray != 0) {
        fprintf(stderr, "fsck: missing %llu corrupt %llu stray %llu\n",
                (unsigned long long)report.missing, (unsigned long long)report.corrupt,
                (unsigned long long)report.stray);
        return 14;
    }
    /* room again: the same add goes through */
    if (unlink(filler) != 0 ||
        pkgstore_registry_add(NULL, NULL, reg, "otelcol", "1.1.0", &b, NULL) != 0) {
        fprintf(stderr, "after: %s\n", pkgstore_error_detail());
        return 15;
    }
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    return 0;
}

/* Issue 9: a registry change on a full disk fails with ENOSPC (LMDB's
 * short write is EIO to it), changes nothing, and works once there is
 * room again. */
static void test_registry__full_disk(void **state)
{
    fixture *f = *state;
    small_disk_test(f->dir, full_disk_child);
}

/* What a dlopen()ed copy of the library does in a thread: open, resolve
 * (which makes the thread's memo), free everything, dlclose(). The thread
 * then exits; a pthread key left behind would run its destructor in the
 * unloaded library. */
static const char *dl_path;
static void *dl_thread(void *arg)
{
    const char *dir = arg;
    void *lib = dlopen(dl_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen %s: %s\n", dl_path, dlerror());
        _exit(2);
    }
    int (*store_open)(pkgstore_store **, const char *, const pkgstore_store_options *) =
        (int (*)(pkgstore_store **, const char *, const pkgstore_store_options *))dlsym(
            lib, "pkgstore_store_open");
    void (*store_free)(pkgstore_store *) = (void (*)(pkgstore_store *))dlsym(lib, "pkgstore_store_free");
    int (*reg_open)(pkgstore_registry **, pkgstore_store *) =
        (int (*)(pkgstore_registry **, pkgstore_store *))dlsym(lib, "pkgstore_registry_open");
    void (*reg_free)(pkgstore_registry *) =
        (void (*)(pkgstore_registry *))dlsym(lib, "pkgstore_registry_free");
    int (*resolve)(pkgstore_resolution *, pkgstore_registry *, const char *, const char *,
                   const char *) =
        (int (*)(pkgstore_resolution *, pkgstore_registry *, const char *, const char *,
                 const char *))dlsym(lib, "pkgstore_registry_resolve");
    if (!store_open || !store_free || !reg_open || !reg_free || !resolve)
        _exit(3);
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    static pkgstore_resolution r;
    if (store_open(&store, dir, NULL) != 0 || reg_open(&reg, store) != 0)
        _exit(4);
    if (resolve(&r, reg, "otelcol", ">=1.0.0", "linux/amd64") != 0)
        _exit(5);
    reg_free(reg);
    store_free(store);
    dlclose(lib);
    return NULL;
}

static void test_registry__leaves_nothing_behind_after_dlclose(void **state)
{
    fixture *f = *state;
    static char path[4096];
    const char *build = getenv("PKGSTORE_BUILD");
    snprintf(path, sizeof(path), "%s/lib/libpkgstore.so", build ? build : "build");
    if (access(path, R_OK) != 0)
        fail_msg("%s: not found (set PKGSTORE_BUILD to the build directory)", path);
    dl_path = path;
    add(f, "otelcol", "1.0.0", "linux/amd64", PKGSTORE_TYPE_PRIMARY);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t thread;
        signal(SIGSEGV, SIG_DFL); /* not cmocka's handler: die of it, for the parent to see */
        signal(SIGBUS, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        if (pthread_create(&thread, NULL, dl_thread, f->dir) != 0)
            _exit(6);
        pthread_join(thread, NULL); /* the thread's exit ran the key destructors */
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("the process died of signal %d after dlclose()", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry__add_creates_and_indexes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__add_regenerates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__add_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__name_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__lists_in_precedence_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__resolve_platforms_and_constraints, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__dependency_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__put_whole_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__sees_changes_of_other_handles, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__concurrent_adds_are_all_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__archives_are_detected_and_checked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__new_platforms_are_ranked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__leaves_nothing_behind_after_dlclose, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__one_transaction_per_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__batch_mode_records_only_synced_blobs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__versions_are_immutable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__policies_pin_their_versions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__format_comes_from_the_content, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_registry__full_disk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
