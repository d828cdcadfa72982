/*
 * test_policy.c - the library's policies on a real store: the policy object
 * and its validation, put/get/delete/retry through a registry handle, the
 * ranked sets and their staleness across handles and processes, corrupt
 * records, and pkgstore_policy_evaluate(). The fleet that uses them
 * (nodes, heartbeats, history, views) is tested in test_fleet.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkgstore.h"
/* private: to plant records that the public API cannot write */
#include "index.h"
#include "store.h"

#include "helpers/policy_fixture.h"

struct fixture {
    char dir[64];
    pkgstore_store *store;
    pkgstore_registry *reg;
    pkgstore_digest contrib97_amd64, contrib98_amd64, contrib98_arm64, sidecar_amd64;
};

static void assert_fails(int rc, int code, const char *needle)
{
    if (rc != code || !strstr(pkgstore_error_detail(), needle)) {
        print_error("expected %d with '%s', got %d '%s'\n", code, needle, rc,
                    pkgstore_error_detail());
        fail();
    }
}

/* fixture_add_artifact() on the fixture's store. */
static void add_artifact(struct fixture *f, const char *name, const char *version,
                         pkgstore_package_type type, const char *platform, const char *bytes,
                         pkgstore_digest *digest_out, const pkgstore_dependency *deps, size_t ndeps)
{
    CHECK(fixture_add_artifact(digest_out, f->store, f->reg, name, version, type, platform, bytes,
                               deps, ndeps));
}

static int open_store(pkgstore_store **store, pkgstore_registry **reg, const char *dir)
{
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    int rc = pkgstore_store_open(store, dir, &sopts);
    if (rc == 0)
        rc = pkgstore_registry_open(reg, *store);
    return rc;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_policy.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    CHECK(open_store(&f->store, &f->reg, f->dir));
    add_artifact(f, "otelcol-contrib", "0.97.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.97.0 amd64", &f->contrib97_amd64, NULL, 0);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64",
                 "contrib 0.98.0 amd64", &f->contrib98_amd64, NULL, 0);
    add_artifact(f, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/arm64",
                 "contrib 0.98.0 arm64", &f->contrib98_arm64, NULL, 0);
    add_artifact(f, "log-sidecar", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.0.0 amd64", &f->sidecar_amd64, NULL, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    pkgstore_registry_free(f->reg);
    pkgstore_store_free(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A new policy with the given selector and priority (NULL selector: none). */
static pkgstore_policy *make_policy(const char *name, const char *package, const char *version,
                                    const char *selector, int priority)
{
    pkgstore_policy *policy = NULL;
    CHECK(pkgstore_policy_new(&policy, name, package, version));
    if (selector)
        CHECK(pkgstore_policy_set_selector(policy, selector));
    CHECK(pkgstore_policy_set_priority(policy, priority));
    return policy;
}

static void put_policy(struct fixture *f, const char *name, const char *package,
                       const char *version, const char *selector, int priority)
{
    CHECK(fixture_put_policy(f->reg, name, package, version, selector, priority));
}

static pkgstore_policies *load(struct fixture *f)
{
    pkgstore_policies *set = NULL;
    CHECK(pkgstore_policies_load(&set, f->reg));
    assert_non_null(set);
    return set;
}

/* ---------------------------------------------------------------- the object */

static void test_policy__new_validates_its_fields(void **state)
{
    (void)state;
    pkgstore_policy *policy = (pkgstore_policy *)0x1;
    char long_name[PKGSTORE_POLICY_NAME_MAX + 2];

    assert_fails(pkgstore_policy_new(&policy, "Bad", "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: invalid character 'B' at position 1");
    assert_null(policy);
    assert_fails(pkgstore_policy_new(&policy, "-x", "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: invalid character '-' at position 1");
    assert_fails(pkgstore_policy_new(&policy, "a b", "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: invalid character ' ' at position 2");
    assert_fails(pkgstore_policy_new(&policy, "", "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: empty");
    assert_fails(pkgstore_policy_new(&policy, NULL, "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: missing");
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_fails(pkgstore_policy_new(&policy, long_name, "otelcol", "1.0.0"), PKGSTORE_EINVALID,
                 "policy name: longer than 128");
    long_name[PKGSTORE_POLICY_NAME_MAX] = '\0'; /* exactly the limit */
    CHECK(pkgstore_policy_name_validate(long_name));
    CHECK(pkgstore_policy_name_validate("a.b_c-9"));

    assert_fails(pkgstore_policy_new(&policy, "ok", NULL, "1.0.0"), PKGSTORE_EINVALID,
                 "package: missing");
    assert_fails(pkgstore_policy_new(&policy, "ok", "Bad/Name", "1.0.0"), PKGSTORE_EINVALID,
                 "package");
    assert_fails(pkgstore_policy_new(&policy, "ok", "otelcol", NULL), PKGSTORE_EINVALID,
                 "version: missing");
    assert_fails(pkgstore_policy_new(&policy, "ok", "otelcol", ""), PKGSTORE_EINVALID,
                 "version: missing");
    assert_fails(pkgstore_policy_new(&policy, "ok", "otelcol", "1.0"), PKGSTORE_EINVALID,
                 "version");
    assert_null(policy);

    /* the defaults: every node, priority 0, the package's type, never stored */
    CHECK(pkgstore_policy_new(&policy, "canary", "otelcol-contrib", "v0.98.0"));
    assert_string_equal(pkgstore_policy_name(policy), "canary");
    assert_string_equal(pkgstore_policy_package(policy), "otelcol-contrib");
    assert_string_equal(pkgstore_policy_version(policy), "0.98.0"); /* the "v" dropped */
    assert_string_equal(pkgstore_policy_selector_text(policy), "");
    assert_non_null(pkgstore_policy_selector(policy));
    assert_int_equal(pkgstore_policy_priority(policy), 0);
    assert_int_equal(pkgstore_policy_type(policy), PKGSTORE_TYPE_PRIMARY);
    assert_int_equal(pkgstore_policy_created(policy), 0);
    assert_int_equal(pkgstore_policy_updated(policy), 0);
    assert_int_equal(pkgstore_policy_retry_generation(policy), 0);
    pkgstore_policy_free(policy);
}

static void test_policy__selector_is_canonical_and_errors_name_a_position(void **state)
{
    (void)state;
    pkgstore_policy *policy = NULL;
    char long_selector[PKGSTORE_SELECTOR_MAX + 16];

    CHECK(pkgstore_policy_new(&policy, "p", "otelcol", "1.0.0"));
    CHECK(pkgstore_policy_set_selector(policy, " env = dev , canary "));
    assert_string_equal(pkgstore_policy_selector_text(policy), "canary,env=dev");
    CHECK(pkgstore_policy_set_selector(policy, "zone notin (b,a,b), ring in (z, y)"));
    assert_string_equal(pkgstore_policy_selector_text(policy), "ring in (y,z),zone notin (a,b)");

    /* a failure leaves the policy as it was */
    assert_fails(pkgstore_policy_set_selector(policy, "env in (a"), PKGSTORE_EINVALID,
                 "selector: position 10");
    assert_string_equal(pkgstore_policy_selector_text(policy), "ring in (y,z),zone notin (a,b)");
    assert_fails(pkgstore_policy_set_selector(policy, "env=dev,,x"), PKGSTORE_EINVALID,
                 "selector: position ");
    memset(long_selector, 'k', sizeof(long_selector) - 1);
    long_selector[sizeof(long_selector) - 1] = '\0';
    assert_int_equal(pkgstore_policy_set_selector(policy, long_selector), PKGSTORE_ELIMIT);
    assert_string_equal(pkgstore_policy_selector_text(policy), "ring in (y,z),zone notin (a,b)");

    /* NULL and "" both mean every node */
    CHECK(pkgstore_policy_set_selector(policy, NULL));
    assert_string_equal(pkgstore_policy_selector_text(policy), "");
    pkgstore_label label = {"env", "dev"};
    assert_int_equal(pkgstore_selector_matches(pkgstore_policy_selector(policy), &label, 1), 1);
    pkgstore_policy_free(policy);
}

static void test_policy__priority_and_type_are_checked(void **state)
{
    (void)state;
    pkgstore_policy *policy = NULL;

    CHECK(pkgstore_policy_new(&policy, "p", "otelcol", "1.0.0"));
    CHECK(pkgstore_policy_set_priority(policy, PKGSTORE_POLICY_PRIORITY_MAX));
    assert_int_equal(pkgstore_policy_priority(policy), PKGSTORE_POLICY_PRIORITY_MAX);
    CHECK(pkgstore_policy_set_priority(policy, PKGSTORE_POLICY_PRIORITY_MIN));
    assert_fails(pkgstore_policy_set_priority(policy, PKGSTORE_POLICY_PRIORITY_MAX + 1),
                 PKGSTORE_EINVALID, "priority: 1000001 is outside -1000000..1000000");
    assert_fails(pkgstore_policy_set_priority(policy, PKGSTORE_POLICY_PRIORITY_MIN - 1),
                 PKGSTORE_EINVALID, "priority: -1000001 is outside");
    assert_int_equal(pkgstore_policy_priority(policy), PKGSTORE_POLICY_PRIORITY_MIN);

    CHECK(pkgstore_policy_set_type(policy, PKGSTORE_TYPE_ADDON));
    assert_int_equal(pkgstore_policy_type(policy), PKGSTORE_TYPE_ADDON);
    assert_fails(pkgstore_policy_set_type(policy, (pkgstore_package_type)7), PKGSTORE_EINVALID,
                 "type: must be primary or addon");
    assert_int_equal(pkgstore_policy_type(policy), PKGSTORE_TYPE_ADDON);
    pkgstore_policy_free(policy);
}

static void test_policy__stored_policies_are_read_only(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = make_policy("canary", "otelcol-contrib", "0.98.0", "env=dev", 3);
    pkgstore_policy *stored = NULL, *got = NULL;

    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    CHECK(pkgstore_policy_get(&got, f->reg, "canary"));
    pkgstore_policies *set = load(f);
    pkgstore_policy *in_set = (pkgstore_policy *)pkgstore_policies_at(set, 0);
    pkgstore_policy *read_only[] = {stored, got, in_set};

    for (size_t i = 0; i < 3; i++) {
        assert_non_null(read_only[i]);
        assert_fails(pkgstore_policy_set_selector(read_only[i], "env=prod"), PKGSTORE_EINVALID,
                     "policy canary is read-only");
        assert_fails(pkgstore_policy_set_priority(read_only[i], 9), PKGSTORE_EINVALID, "read-only");
        assert_fails(pkgstore_policy_set_type(read_only[i], PKGSTORE_TYPE_ADDON), PKGSTORE_EINVALID,
                     "read-only");
        assert_string_equal(pkgstore_policy_selector_text(read_only[i]), "env=dev");
        assert_int_equal(pkgstore_policy_priority(read_only[i]), 3);
        assert_int_equal(pkgstore_policy_type(read_only[i]), PKGSTORE_TYPE_PRIMARY);
    }
    /* the caller's own object stays writable */
    CHECK(pkgstore_policy_set_priority(policy, 4));
    pkgstore_policies_free(set);
    pkgstore_policy_free(got);
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
}

/* ---------------------------------------------------------------- stored policies */

struct plant {
    enum ps_index_db db;
    const char *key;
    const char *value; /* NULL: delete the key */
};

static int plant_txn(MDB_txn *txn, ps_index *index, void *payload)
{
    struct plant *plant = payload;
    MDB_val key = {strlen(plant->key), (void *)plant->key};
    int rc;
    if (plant->value) {
        MDB_val val = {strlen(plant->value), (void *)plant->value};
        rc = mdb_put(txn, ps_index_dbi(index, plant->db), &key, &val, 0);
    } else {
        rc = mdb_del(txn, ps_index_dbi(index, plant->db), &key, NULL);
    }
    return rc == 0 ? 0 : PKGSTORE_EIO;
}

static void plant(struct fixture *f, const char *key, const char *value)
{
    struct plant p = {PS_DB_POLICIES, key, value};
    CHECK(ps_index_write(ps_store_index(f->store), plant_txn, &p));
}

static void test_policy__put_get_delete_round_trip(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = make_policy("zeta", "otelcol-contrib", "v0.98.0", " env = dev ", 5);
    pkgstore_policy *stored = NULL, *got = NULL;
    int64_t before = (int64_t)time(NULL);

    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_string_equal(pkgstore_policy_name(stored), "zeta");
    assert_string_equal(pkgstore_policy_selector_text(stored), "env=dev");
    assert_string_equal(pkgstore_policy_version(stored), "0.98.0");
    assert_int_equal(pkgstore_policy_priority(stored), 5);
    assert_int_equal(pkgstore_policy_type(stored), PKGSTORE_TYPE_PRIMARY);
    assert_true(pkgstore_policy_created(stored) >= before);
    assert_int_equal(pkgstore_policy_created(stored), pkgstore_policy_updated(stored));
    assert_int_equal(pkgstore_policy_retry_generation(stored), 0);
    /* the caller's object is not changed by the put */
    assert_int_equal(pkgstore_policy_created(policy), 0);

    CHECK(pkgstore_policy_get(&got, f->reg, "zeta"));
    assert_string_equal(pkgstore_policy_selector_text(got), "env=dev");
    assert_string_equal(pkgstore_policy_package(got), "otelcol-contrib");
    assert_string_equal(pkgstore_policy_version(got), "0.98.0");
    assert_int_equal(pkgstore_policy_priority(got), 5);
    assert_int_equal(pkgstore_policy_created(got), pkgstore_policy_created(stored));
    assert_int_equal(pkgstore_policy_updated(got), pkgstore_policy_updated(stored));
    pkgstore_policy_free(got);
    got = NULL;
    pkgstore_policy_free(stored);
    stored = NULL;

    /* a replacement keeps created and sets updated: make the stored times
     * old so that both are visible within one second */
    plant(f, "zeta",
          "{\"created\":1000,\"name\":\"zeta\",\"package\":\"otelcol-contrib\","
          "\"priority\":5,\"retry\":0,\"selector\":\"env=dev\",\"type\":\"primary\","
          "\"updated\":2000,\"version\":\"0.98.0\"}");
    CHECK(pkgstore_policy_set_priority(policy, 7));
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_int_equal(pkgstore_policy_created(stored), 1000);
    assert_true(pkgstore_policy_updated(stored) >= before);
    assert_int_equal(pkgstore_policy_priority(stored), 7);
    CHECK(pkgstore_policy_get(&got, f->reg, "zeta"));
    assert_int_equal(pkgstore_policy_created(got), 1000);
    assert_int_equal(pkgstore_policy_priority(got), 7);

    /* a policy read back can be put again as it is */
    pkgstore_policy_free(stored);
    stored = NULL;
    CHECK(pkgstore_policy_put(&stored, f->reg, got));
    assert_int_equal(pkgstore_policy_created(stored), 1000);
    assert_string_equal(pkgstore_policy_selector_text(stored), "env=dev");

    CHECK(pkgstore_policy_delete(f->reg, "zeta"));
    pkgstore_policy_free(got);
    got = (pkgstore_policy *)0x1;
    assert_fails(pkgstore_policy_get(&got, f->reg, "zeta"), PKGSTORE_ENOTFOUND,
                 "policy zeta not found");
    assert_null(got);
    assert_fails(pkgstore_policy_delete(f->reg, "zeta"), PKGSTORE_ENOTFOUND, "not found");
    assert_fails(pkgstore_policy_get(&got, f->reg, "Bad"), PKGSTORE_EINVALID, "policy name");
    assert_fails(pkgstore_policy_delete(f->reg, "Bad"), PKGSTORE_EINVALID, "policy name");
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
}

static void test_policy__retry_generation_is_kept_and_raised(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = make_policy("canary", "otelcol-contrib", "0.98.0", NULL, 0);
    pkgstore_policy *stored = NULL;

    CHECK(pkgstore_policy_put(NULL, f->reg, policy));
    CHECK(pkgstore_policy_retry(&stored, f->reg, "canary"));
    assert_int_equal(pkgstore_policy_retry_generation(stored), 1);
    pkgstore_policy_free(stored);
    stored = NULL;
    CHECK(pkgstore_policy_retry(NULL, f->reg, "canary"));

    /* a put (a new version for the same policy) keeps the generation */
    pkgstore_policy_free(policy);
    policy = make_policy("canary", "otelcol-contrib", "0.97.0", "env=dev", 1);
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_int_equal(pkgstore_policy_retry_generation(stored), 2);
    assert_string_equal(pkgstore_policy_version(stored), "0.97.0");
    pkgstore_policy_free(stored);
    stored = NULL;
    CHECK(pkgstore_policy_get(&stored, f->reg, "canary"));
    assert_int_equal(pkgstore_policy_retry_generation(stored), 2);
    assert_string_equal(pkgstore_policy_selector_text(stored), "env=dev");
    pkgstore_policy_free(stored);
    stored = (pkgstore_policy *)0x1;

    assert_fails(pkgstore_policy_retry(&stored, f->reg, "nope"), PKGSTORE_ENOTFOUND,
                 "policy nope not found");
    assert_null(stored);
    /* a deleted and re-created policy starts again from 0 */
    CHECK(pkgstore_policy_delete(f->reg, "canary"));
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_int_equal(pkgstore_policy_retry_generation(stored), 0);
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
}

static void test_policy__type_comes_from_the_package(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = NULL, *stored = NULL;

    /* not given: the package's own type */
    CHECK(pkgstore_policy_new(&policy, "side", "log-sidecar", "1.0.0"));
    assert_int_equal(pkgstore_policy_type(policy), PKGSTORE_TYPE_PRIMARY);
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_int_equal(pkgstore_policy_type(stored), PKGSTORE_TYPE_ADDON);
    pkgstore_policy_free(stored);
    stored = NULL;
    CHECK(pkgstore_policy_get(&stored, f->reg, "side"));
    assert_int_equal(pkgstore_policy_type(stored), PKGSTORE_TYPE_ADDON);
    pkgstore_policy_free(stored);
    stored = (pkgstore_policy *)0x1;

    /* given and wrong: refused, nothing written */
    CHECK(pkgstore_policy_set_type(policy, PKGSTORE_TYPE_PRIMARY));
    assert_fails(pkgstore_policy_put(&stored, f->reg, policy), PKGSTORE_EINVALID,
                 "type: log-sidecar 1.0.0 is an addon package, not primary");
    assert_null(stored);
    pkgstore_policy_free(policy);
    CHECK(pkgstore_policy_new(&policy, "collector", "otelcol-contrib", "0.98.0"));
    CHECK(pkgstore_policy_set_type(policy, PKGSTORE_TYPE_ADDON));
    assert_fails(pkgstore_policy_put(NULL, f->reg, policy), PKGSTORE_EINVALID,
                 "type: otelcol-contrib 0.98.0 is a primary package, not addon");
    assert_int_equal(pkgstore_policy_get(&stored, f->reg, "collector"), PKGSTORE_ENOTFOUND);

    /* given and right */
    CHECK(pkgstore_policy_set_type(policy, PKGSTORE_TYPE_PRIMARY));
    CHECK(pkgstore_policy_put(NULL, f->reg, policy));
    pkgstore_policy_free(policy);
}

static void test_policy__put_needs_the_package_version(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = NULL, *stored = (pkgstore_policy *)0x1;
    pkgstore_policies *before = load(f);

    CHECK(pkgstore_policy_new(&policy, "ok", "otelcol-contrib", "0.99.0"));
    assert_fails(pkgstore_policy_put(&stored, f->reg, policy), PKGSTORE_ENOTFOUND,
                 "package otelcol-contrib version 0.99.0 not found");
    assert_null(stored);
    pkgstore_policy_free(policy);
    CHECK(pkgstore_policy_new(&policy, "ok", "no-such", "1.0.0"));
    assert_fails(pkgstore_policy_put(NULL, f->reg, policy), PKGSTORE_ENOTFOUND,
                 "package no-such version 1.0.0 not found");
    pkgstore_policy_free(policy);

    /* a refused put changes nothing: not even the generation */
    assert_int_equal(pkgstore_policies_current(before, f->reg), 1);
    pkgstore_policies_free(before);
    assert_int_equal(pkgstore_policy_get(&stored, f->reg, "ok"), PKGSTORE_ENOTFOUND);
}

static void test_policy__referenced_versions_cannot_be_removed(void **state)
{
    struct fixture *f = *state;
    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);

    assert_fails(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.98.0"), PKGSTORE_ECONFLICT,
                 "otelcol-contrib 0.98.0 is referenced by policy canary");
    assert_fails(pkgstore_registry_remove(f->reg, "otelcol-contrib", "v0.98.0"), PKGSTORE_ECONFLICT,
                 "canary");
    assert_fails(pkgstore_registry_remove(f->reg, "log-sidecar", "1.0.0"), PKGSTORE_ECONFLICT,
                 "policy side");
    /* still there for resolve and for the policy */
    pkgstore_manifest *manifest = NULL;
    CHECK(pkgstore_registry_get(&manifest, NULL, f->reg, "otelcol-contrib", "0.98.0"));
    pkgstore_manifest_free(manifest);

    /* a policy record that cannot be read might name the version: refused */
    plant(f, "broken", "not json");
    assert_fails(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.97.0"), PKGSTORE_ECORRUPT,
                 "policy record broken has no readable package and version");
    assert_fails(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.90.0"), PKGSTORE_ENOTFOUND,
                 "no such version");
    CHECK(pkgstore_policy_delete(f->reg, "broken"));

    /* an unreferenced version goes; once the policy is gone, so does this one */
    CHECK(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.97.0"));
    CHECK(pkgstore_policy_delete(f->reg, "canary"));
    CHECK(pkgstore_registry_remove(f->reg, "otelcol-contrib", "0.98.0"));
}

/* ---------------------------------------------------------------- sets */

static void test_policy__sets_rank_by_priority_then_name(void **state)
{
    struct fixture *f = *state;
    static const char *const rank_order[] = {"top", "alpha", "beta", "zero", "below"};
    static const char *const name_order[] = {"alpha", "below", "beta", "top", "zero"};

    put_policy(f, "beta", "otelcol-contrib", "0.98.0", NULL, 5);
    put_policy(f, "zero", "otelcol-contrib", "0.98.0", NULL, 0);
    put_policy(f, "alpha", "otelcol-contrib", "0.97.0", NULL, 5);
    put_policy(f, "below", "log-sidecar", "1.0.0", NULL, -3);
    put_policy(f, "top", "otelcol-contrib", "0.97.0", NULL, 100);
    pkgstore_policies *set = load(f);

    assert_int_equal(pkgstore_policies_count(set), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(pkgstore_policy_name(pkgstore_policies_at(set, i)), rank_order[i]);
    assert_null(pkgstore_policies_at(set, 5));
    for (size_t i = 0; i < 5; i++) {
        size_t rank = 99;
        const pkgstore_policy *policy = pkgstore_policies_by_name(set, i, &rank);
        assert_string_equal(pkgstore_policy_name(policy), name_order[i]);
        assert_ptr_equal(pkgstore_policies_at(set, rank), policy);
        size_t found_rank = 99;
        assert_ptr_equal(pkgstore_policies_find(set, name_order[i], &found_rank), policy);
        assert_int_equal(found_rank, rank);
    }
    assert_null(pkgstore_policies_by_name(set, 5, NULL));
    assert_null(pkgstore_policies_find(set, "nope", NULL));
    assert_null(pkgstore_policies_find(set, "", NULL));
    assert_non_null(pkgstore_policies_find(set, "zero", NULL));
    assert_int_equal(pkgstore_policy_type(pkgstore_policies_find(set, "below", NULL)),
                     PKGSTORE_TYPE_ADDON);
    pkgstore_policies_free(set);

    /* an empty store gives an empty set */
    for (size_t i = 0; i < 5; i++)
        CHECK(pkgstore_policy_delete(f->reg, name_order[i]));
    set = load(f);
    assert_int_equal(pkgstore_policies_count(set), 0);
    assert_null(pkgstore_policies_at(set, 0));
    assert_null(pkgstore_policies_find(set, "top", NULL));
    pkgstore_policies_free(set);
}

static void test_policy__sets_go_stale_on_changes_by_other_handles(void **state)
{
    struct fixture *f = *state;
    pkgstore_store *other_store = NULL;
    pkgstore_registry *other = NULL;
    pkgstore_policies *set;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    CHECK(open_store(&other_store, &other, f->dir));

    set = load(f);
    assert_int_equal(pkgstore_policies_current(set, f->reg), 1);
    assert_int_equal(pkgstore_policies_current(set, other), 1);

    /* a put by another handle */
    pkgstore_policy *policy = make_policy("second", "otelcol-contrib", "0.97.0", NULL, 1);
    CHECK(pkgstore_policy_put(NULL, other, policy));
    pkgstore_policy_free(policy);
    assert_int_equal(pkgstore_policies_current(set, f->reg), 0);
    pkgstore_policies_free(set);
    set = load(f);
    assert_int_equal(pkgstore_policies_count(set), 2);
    assert_int_equal(pkgstore_policies_current(set, f->reg), 1);

    /* a delete by another handle */
    CHECK(pkgstore_policy_delete(other, "second"));
    assert_int_equal(pkgstore_policies_current(set, f->reg), 0);
    pkgstore_policies_free(set);
    set = load(f);
    assert_int_equal(pkgstore_policies_count(set), 1);

    /* a retry by another handle */
    CHECK(pkgstore_policy_retry(NULL, other, "canary"));
    assert_int_equal(pkgstore_policies_current(set, f->reg), 0);
    pkgstore_policies_free(set);
    set = load(f);
    assert_int_equal(pkgstore_policy_retry_generation(pkgstore_policies_at(set, 0)), 1);
    pkgstore_registry_free(other);
    pkgstore_store_free(other_store);

    /* and a retry by another process */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pkgstore_store *child_store = NULL;
        pkgstore_registry *child = NULL;
        int ok = open_store(&child_store, &child, f->dir) == 0 &&
                 pkgstore_policy_retry(NULL, child, "canary") == 0;
        pkgstore_registry_free(child);
        pkgstore_store_free(child_store);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(pkgstore_policies_current(set, f->reg), 0);
    pkgstore_policies_free(set);
    set = load(f);
    assert_int_equal(pkgstore_policy_retry_generation(pkgstore_policies_at(set, 0)), 2);
    pkgstore_policies_free(set);
}

static void test_policy__corrupt_records_are_named(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *value;
        const char *detail;
    } corrupt[] = {
        {"not json", "not JSON"},
        {"{\"name\":\"mangled\",\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
         "\"selector\":\"env in (\",\"type\":\"primary\",\"priority\":0}",
         "selector: position"},
        {"{\"name\":\"mangled\",\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
         "\"selector\":\"\",\"type\":\"sidecar\",\"priority\":0}",
         "type: not primary or addon"},
        {"{\"name\":\"mangled\",\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
         "\"selector\":\"\",\"type\":\"primary\",\"priority\":\"high\"}",
         "priority or retry: not an integer"},
        {"{\"name\":\"mangled\",\"package\":\"otelcol-contrib\",\"type\":\"primary\","
         "\"selector\":\"\",\"priority\":0}",
         "version: missing"},
        {"{\"name\":\"mangled\",\"package\":\"otelcol-contrib\",\"version\":\"0.98.0\","
         "\"type\":\"primary\",\"priority\":0}",
         "selector: missing"},
    };
    pkgstore_policies *set = (pkgstore_policies *)0x1;
    pkgstore_policy *got = (pkgstore_policy *)0x1;

    put_policy(f, "good", "otelcol-contrib", "0.98.0", NULL, 0);
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(*corrupt); i++) {
        plant(f, "mangled", corrupt[i].value);
        assert_fails(pkgstore_policies_load(&set, f->reg), PKGSTORE_ECORRUPT,
                     "index: policy record 'mangled'");
        assert_null(set);
        assert_fails(pkgstore_policies_load(&set, f->reg), PKGSTORE_ECORRUPT, corrupt[i].detail);
        assert_fails(pkgstore_policy_get(&got, f->reg, "mangled"), PKGSTORE_ECORRUPT,
                     "policy record 'mangled'");
        assert_null(got);
    }
    /* the good one stays readable, and the bad one can be removed or replaced */
    CHECK(pkgstore_policy_get(&got, f->reg, "good"));
    pkgstore_policy_free(got);
    CHECK(pkgstore_policy_delete(f->reg, "mangled"));
    set = load(f);
    assert_int_equal(pkgstore_policies_count(set), 1);
    pkgstore_policies_free(set);
    plant(f, "mangled", "not json");
    put_policy(f, "mangled", "otelcol-contrib", "0.97.0", NULL, 0);
    set = load(f);
    assert_int_equal(pkgstore_policies_count(set), 2);
    pkgstore_policies_free(set);
}

/* ---------------------------------------------------------------- evaluation */

/* The manifest lookup: straight from the registry, the manifests kept
 * until the test is done with the decisions. fail_package fails with
 * fail_error instead. */
struct lookup {
    pkgstore_registry *reg;
    pkgstore_manifest *held[64];
    size_t count;
    unsigned int calls;
    const char *fail_package;
    int fail_error;
};

static int lookup_manifest(const pkgstore_manifest **out, const char *package, const char *version,
                           void *payload)
{
    struct lookup *lookup = payload;
    pkgstore_manifest *manifest = NULL;
    int error;

    lookup->calls++;
    if (lookup->fail_package && strcmp(package, lookup->fail_package) == 0)
        return lookup->fail_error;
    if (lookup->count == sizeof(lookup->held) / sizeof(*lookup->held))
        return PKGSTORE_ELIMIT;
    if ((error = pkgstore_registry_get(&manifest, NULL, lookup->reg, package, version)) < 0)
        return error;
    lookup->held[lookup->count++] = manifest;
    *out = manifest;
    return 0;
}

static void lookup_done(struct lookup *lookup)
{
    for (size_t i = 0; i < lookup->count; i++)
        pkgstore_manifest_free(lookup->held[i]);
    lookup->count = 0;
}

struct evaluation {
    struct lookup lookup;
    pkgstore_decision decisions[64];
    size_t count;
};

/* Evaluate a node against the stored policies into ev (CHECKed). */
static void evaluate(struct evaluation *ev, struct fixture *f, pkgstore_policies *set,
                     const pkgstore_node_facts *node)
{
    memset(ev, 0, sizeof(*ev));
    ev->lookup.reg = f->reg;
    CHECK(pkgstore_policy_evaluate(ev->decisions, 64, &ev->count, set, node, lookup_manifest,
                                   &ev->lookup));
}

/* The decision for package, or fail. */
static const pkgstore_decision *decision_for(const struct evaluation *ev, const char *package)
{
    for (size_t i = 0; i < ev->count; i++) {
        if (strcmp(pkgstore_policy_package(ev->decisions[i].policy), package) == 0)
            return &ev->decisions[i];
    }
    print_error("no decision for %s\n", package);
    fail();
    return NULL;
}

static void test_policy__evaluate_priority_and_tie_break(void **state)
{
    struct fixture *f = *state;
    pkgstore_label labels[] = {{"env", "dev"}};
    pkgstore_node_facts node = {"linux/amd64", labels, 1, NULL, 0};
    struct evaluation ev;

    put_policy(f, "low", "otelcol-contrib", "0.97.0", "env=dev", 1);
    put_policy(f, "high", "otelcol-contrib", "0.98.0", "env", 2);
    put_policy(f, "other-env", "otelcol-contrib", "0.97.0", "env=prod", 50);
    pkgstore_policies *set = load(f);
    evaluate(&ev, f, set, &node);
    assert_int_equal(ev.count, 1); /* one primary slot */
    assert_string_equal(pkgstore_policy_name(ev.decisions[0].policy), "high");
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER);
    assert_memory_equal(ev.decisions[0].artifact->digest.bytes, f->contrib98_amd64.bytes,
                        PKGSTORE_DIGEST_SIZE);
    size_t rank = 99;
    assert_non_null(pkgstore_policies_find(set, "high", &rank));
    assert_int_equal(ev.decisions[0].rank, rank);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);

    /* equal priority: the name first in byte order wins */
    put_policy(f, "aaa", "otelcol-contrib", "0.97.0", "env=dev", 2);
    set = load(f);
    evaluate(&ev, f, set, &node);
    assert_int_equal(ev.count, 1);
    assert_string_equal(pkgstore_policy_name(ev.decisions[0].policy), "aaa");
    assert_memory_equal(ev.decisions[0].artifact->digest.bytes, f->contrib97_amd64.bytes,
                        PKGSTORE_DIGEST_SIZE);
    /* the losers were never looked up */
    assert_int_equal(ev.lookup.calls, 1);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);

    /* a node no selector matches gets no decision */
    pkgstore_label staging[] = {{"zone", "z1"}};
    pkgstore_node_facts bare = {"linux/amd64", staging, 1, NULL, 0};
    set = load(f);
    evaluate(&ev, f, set, &bare);
    assert_int_equal(ev.count, 0);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_one_primary_slot_and_one_per_addon(void **state)
{
    struct fixture *f = *state;
    enum { ADDONS = 40 };
    char name[32], bytes[32];
    pkgstore_node_facts node = {"linux/amd64", NULL, 0, NULL, 0};
    struct evaluation ev;

    add_artifact(f, "otelcol-core", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/amd64", "core 1.0.0",
                 NULL, NULL, 0);
    add_artifact(f, "log-sidecar", "1.1.0", PKGSTORE_TYPE_ADDON, "linux/amd64",
                 "sidecar 1.1.0 amd64", NULL, NULL, 0);
    /* two primary packages compete for the one primary slot */
    put_policy(f, "contrib", "otelcol-contrib", "0.98.0", NULL, 10);
    put_policy(f, "core", "otelcol-core", "1.0.0", NULL, 5);
    /* two versions of one addon compete for its slot */
    put_policy(f, "logs-old", "log-sidecar", "1.0.0", NULL, 1);
    put_policy(f, "logs-new", "log-sidecar", "1.1.0", NULL, 2);
    /* and many more addons than any small array holds, each in its slot */
    for (int i = 0; i < ADDONS; i++) {
        snprintf(name, sizeof(name), "addon-%02d", i);
        snprintf(bytes, sizeof(bytes), "addon %02d", i);
        add_artifact(f, name, "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", bytes, NULL, NULL, 0);
        put_policy(f, name, name, "1.0.0", NULL, 0);
    }
    pkgstore_policies *set = load(f);
    evaluate(&ev, f, set, &node);
    assert_int_equal(ev.count, 1 + 1 + ADDONS);
    size_t primaries = 0;
    for (size_t i = 0; i < ev.count; i++) {
        const pkgstore_decision *d = &ev.decisions[i];
        assert_int_equal(d->verdict, PKGSTORE_VERDICT_OFFER);
        if (i > 0)
            assert_true(d->rank > ev.decisions[i - 1].rank); /* in rank order */
        if (pkgstore_policy_type(d->policy) == PKGSTORE_TYPE_PRIMARY) {
            primaries++;
            assert_string_equal(pkgstore_policy_name(d->policy), "contrib");
        }
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(pkgstore_policy_package(d->policy),
                                    pkgstore_policy_package(ev.decisions[j].policy));
    }
    assert_int_equal(primaries, 1);
    assert_string_equal(pkgstore_policy_name(decision_for(&ev, "log-sidecar")->policy), "logs-new");
    assert_string_equal(pkgstore_policy_name(decision_for(&ev, "addon-39")->policy), "addon-39");
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_current_when_the_node_runs_the_digest(void **state)
{
    struct fixture *f = *state;
    pkgstore_node_package runs[] = {
        {"otelcol-contrib", PKGSTORE_TYPE_PRIMARY, "0.98.0", &f->contrib98_amd64},
        {"log-sidecar", PKGSTORE_TYPE_ADDON, "1.0.0", NULL}, /* digest unknown */
    };
    pkgstore_node_facts node = {"linux/amd64", NULL, 0, runs, 2};
    struct evaluation ev;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);
    pkgstore_policies *set = load(f);
    evaluate(&ev, f, set, &node);
    assert_int_equal(ev.count, 2);
    const pkgstore_decision *d = decision_for(&ev, "otelcol-contrib");
    assert_int_equal(d->verdict, PKGSTORE_VERDICT_CURRENT);
    assert_non_null(d->artifact);
    assert_non_null(d->manifest);
    /* a version without a digest proves nothing: offered */
    assert_int_equal(decision_for(&ev, "log-sidecar")->verdict, PKGSTORE_VERDICT_OFFER);
    lookup_done(&ev.lookup);

    /* the same version's other artifact is not what an amd64 node runs */
    runs[0].digest = &f->contrib98_arm64;
    evaluate(&ev, f, set, &node);
    assert_int_equal(decision_for(&ev, "otelcol-contrib")->verdict, PKGSTORE_VERDICT_OFFER);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_incompatible_and_compatible_fallbacks(void **state)
{
    struct fixture *f = *state;
    pkgstore_digest lite386, edge_v6;
    struct evaluation ev;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    pkgstore_policies *set = load(f);
    pkgstore_node_facts riscv = {"linux/riscv64", NULL, 0, NULL, 0};
    evaluate(&ev, f, set, &riscv);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_INCOMPATIBLE);
    assert_null(ev.decisions[0].artifact);
    assert_non_null(ev.decisions[0].manifest);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);

    /* docs/platforms.md: an amd64 node runs 386, an arm/v7 node runs arm/v6 */
    add_artifact(f, "otelcol-lite", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/386", "lite 386",
                 &lite386, NULL, 0);
    add_artifact(f, "otelcol-lite", "1.0.0", PKGSTORE_TYPE_PRIMARY, "linux/arm/v6", "lite v6",
                 &edge_v6, NULL, 0);
    CHECK(pkgstore_policy_delete(f->reg, "canary"));
    put_policy(f, "lite", "otelcol-lite", "1.0.0", NULL, 0);
    set = load(f);
    pkgstore_node_facts amd64 = {"linux/amd64", NULL, 0, NULL, 0};
    evaluate(&ev, f, set, &amd64);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER);
    assert_string_equal(ev.decisions[0].artifact->platform, "linux/386");
    assert_memory_equal(ev.decisions[0].artifact->digest.bytes, lite386.bytes,
                        PKGSTORE_DIGEST_SIZE);
    lookup_done(&ev.lookup);
    pkgstore_node_facts armv7 = {"linux/arm/v7", NULL, 0, NULL, 0};
    evaluate(&ev, f, set, &armv7);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER);
    assert_string_equal(ev.decisions[0].artifact->platform, "linux/arm/v6");
    lookup_done(&ev.lookup);
    /* never the other way round */
    pkgstore_node_facts i386 = {"linux/386", NULL, 0, NULL, 0};
    pkgstore_node_facts armv5 = {"linux/arm/v5", NULL, 0, NULL, 0};
    evaluate(&ev, f, set, &i386);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER); /* its own: exact */
    lookup_done(&ev.lookup);
    evaluate(&ev, f, set, &armv5);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_INCOMPATIBLE);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_unmet_dependency_until_the_node_meets_it(void **state)
{
    struct fixture *f = *state;
    pkgstore_dependency needs;
    struct evaluation ev;

    memset(&needs, 0, sizeof(needs));
    snprintf(needs.name, sizeof(needs.name), "otelcol-contrib");
    snprintf(needs.constraint, sizeof(needs.constraint), ">=0.98.0");
    add_artifact(f, "log-shipper", "1.0.0", PKGSTORE_TYPE_ADDON, "linux/amd64", "shipper", NULL,
                 &needs, 1);
    put_policy(f, "ship", "log-shipper", "1.0.0", NULL, 0);
    pkgstore_policies *set = load(f);

    /* the node does not run the package at all */
    pkgstore_node_facts bare = {"linux/amd64", NULL, 0, NULL, 0};
    evaluate(&ev, f, set, &bare);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_UNMET);
    assert_non_null(ev.decisions[0].unmet);
    assert_string_equal(ev.decisions[0].unmet->name, "otelcol-contrib");
    assert_string_equal(ev.decisions[0].unmet->constraint, ">=0.98.0");
    assert_non_null(ev.decisions[0].artifact); /* it would fit: the dependency stops it */
    lookup_done(&ev.lookup);

    /* it runs a version that does not meet the constraint, or an unknown one */
    pkgstore_node_package runs = {"otelcol-contrib", PKGSTORE_TYPE_PRIMARY, "0.97.0", NULL};
    pkgstore_node_facts old = {"linux/amd64", NULL, 0, &runs, 1};
    evaluate(&ev, f, set, &old);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_UNMET);
    lookup_done(&ev.lookup);
    runs.version = NULL;
    evaluate(&ev, f, set, &old);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_UNMET);
    lookup_done(&ev.lookup);
    runs.version = "not-semver";
    evaluate(&ev, f, set, &old);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_UNMET);
    lookup_done(&ev.lookup);

    /* once it runs a version that meets it, the addon is offered */
    runs.version = "0.98.0";
    evaluate(&ev, f, set, &old);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER);
    assert_null(ev.decisions[0].unmet);
    lookup_done(&ev.lookup);
    runs.version = "v0.99.1";
    evaluate(&ev, f, set, &old);
    assert_int_equal(ev.decisions[0].verdict, PKGSTORE_VERDICT_OFFER);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_unresolved_keeps_the_lookup_error(void **state)
{
    struct fixture *f = *state;
    pkgstore_node_facts node = {"linux/amd64", NULL, 0, NULL, 0};
    struct evaluation ev;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);
    pkgstore_policies *set = load(f);
    memset(&ev, 0, sizeof(ev));
    ev.lookup.reg = f->reg;
    ev.lookup.fail_package = "log-sidecar";
    ev.lookup.fail_error = PKGSTORE_ECORRUPT;
    CHECK(pkgstore_policy_evaluate(ev.decisions, 64, &ev.count, set, &node, lookup_manifest,
                                   &ev.lookup));
    assert_int_equal(ev.count, 2);
    const pkgstore_decision *d = decision_for(&ev, "log-sidecar");
    assert_int_equal(d->verdict, PKGSTORE_VERDICT_UNRESOLVED);
    assert_int_equal(d->error, PKGSTORE_ECORRUPT);
    assert_null(d->manifest);
    assert_null(d->artifact);
    /* one slot's failure is not the other's */
    assert_int_equal(decision_for(&ev, "otelcol-contrib")->verdict, PKGSTORE_VERDICT_OFFER);
    lookup_done(&ev.lookup);

    /* the version was removed behind the policy's back: the lookup's ENOTFOUND */
    memset(&ev, 0, sizeof(ev));
    ev.lookup.reg = f->reg;
    ev.lookup.fail_package = "otelcol-contrib";
    ev.lookup.fail_error = PKGSTORE_ENOTFOUND;
    CHECK(pkgstore_policy_evaluate(ev.decisions, 64, &ev.count, set, &node, lookup_manifest,
                                   &ev.lookup));
    assert_int_equal(decision_for(&ev, "otelcol-contrib")->verdict, PKGSTORE_VERDICT_UNRESOLVED);
    assert_int_equal(decision_for(&ev, "otelcol-contrib")->error, PKGSTORE_ENOTFOUND);
    lookup_done(&ev.lookup);
    pkgstore_policies_free(set);
}

static void test_policy__evaluate_refuses_a_small_capacity(void **state)
{
    struct fixture *f = *state;
    pkgstore_node_facts node = {"linux/amd64", NULL, 0, NULL, 0};
    pkgstore_decision decisions[2];
    struct lookup lookup = {f->reg, {0}, 0, 0, NULL, 0};
    size_t count = 99;

    put_policy(f, "canary", "otelcol-contrib", "0.98.0", NULL, 0);
    put_policy(f, "side", "log-sidecar", "1.0.0", NULL, 0);
    put_policy(f, "unused", "otelcol-contrib", "0.97.0", "env=none", 0);
    pkgstore_policies *set = load(f);
    assert_fails(
        pkgstore_policy_evaluate(decisions, 1, &count, set, &node, lookup_manifest, &lookup),
        PKGSTORE_ELIMIT, "room for 1 decisions");
    assert_int_equal(count, pkgstore_policies_count(set)); /* what always fits */
    lookup_done(&lookup);
    assert_int_equal(
        pkgstore_policy_evaluate(NULL, 0, &count, set, &node, lookup_manifest, &lookup),
        PKGSTORE_ELIMIT);
    lookup_done(&lookup);
    /* exactly enough is enough */
    CHECK(pkgstore_policy_evaluate(decisions, 2, &count, set, &node, lookup_manifest, &lookup));
    assert_int_equal(count, 2);
    lookup_done(&lookup);
    /* nothing to decide needs no room */
    pkgstore_label labels[] = {{"env", "none"}};
    pkgstore_policies *empty = NULL;
    CHECK(pkgstore_policy_delete(f->reg, "canary"));
    CHECK(pkgstore_policy_delete(f->reg, "side"));
    CHECK(pkgstore_policy_delete(f->reg, "unused"));
    CHECK(pkgstore_policies_load(&empty, f->reg));
    pkgstore_node_facts labelled = {"linux/amd64", labels, 1, NULL, 0};
    CHECK(pkgstore_policy_evaluate(NULL, 0, &count, empty, &labelled, lookup_manifest, &lookup));
    assert_int_equal(count, 0);
    pkgstore_policies_free(empty);
    pkgstore_policies_free(set);
}

/* ---------------------------------------------------------------- misuse */

static int never_called(const pkgstore_manifest **out, const char *package, const char *version,
                        void *payload)
{
    (void)out;
    (void)package;
    (void)version;
    (void)payload;
    fail_msg("the lookup was called");
    return PKGSTORE_EINTERNAL;
}

static void test_policy__misuse_is_refused(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = NULL, *out = (pkgstore_policy *)0x1;
    pkgstore_policies *set = (pkgstore_policies *)0x1;
    pkgstore_decision decisions[4];
    pkgstore_node_facts node = {"linux/amd64", NULL, 0, NULL, 0};
    size_t count = 99;

    assert_int_equal(pkgstore_policy_new(NULL, "p", "otelcol", "1.0.0"), PKGSTORE_EINVALID);
    CHECK(pkgstore_policy_new(&policy, "p", "otelcol-contrib", "0.98.0"));
    assert_int_equal(pkgstore_policy_set_selector(NULL, "a"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_set_priority(NULL, 1), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_set_type(NULL, PKGSTORE_TYPE_ADDON), PKGSTORE_EINVALID);

    assert_int_equal(pkgstore_policy_put(&out, NULL, policy), PKGSTORE_EINVALID);
    assert_null(out);
    assert_int_equal(pkgstore_policy_put(NULL, f->reg, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_get(NULL, f->reg, "p"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_get(&out, NULL, "p"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_get(&out, f->reg, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_delete(NULL, "p"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_delete(f->reg, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_retry(&out, NULL, "p"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_retry(NULL, f->reg, NULL), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policies_load(NULL, f->reg), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policies_load(&set, NULL), PKGSTORE_EINVALID);
    assert_null(set);
    assert_int_equal(pkgstore_policies_current(NULL, f->reg), PKGSTORE_EINVALID);
    set = load(f);
    assert_int_equal(pkgstore_policies_current(set, NULL), PKGSTORE_EINVALID);

    assert_int_equal(pkgstore_policy_evaluate(decisions, 4, NULL, set, &node, never_called, NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(
        pkgstore_policy_evaluate(decisions, 4, &count, NULL, &node, never_called, NULL),
        PKGSTORE_EINVALID);
    assert_int_equal(count, 0);
    assert_int_equal(pkgstore_policy_evaluate(decisions, 4, &count, set, NULL, never_called, NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_evaluate(decisions, 4, &count, set, &node, NULL, NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_policy_evaluate(NULL, 4, &count, set, &node, never_called, NULL),
                     PKGSTORE_EINVALID);

    /* accessors and frees take NULL */
    assert_string_equal(pkgstore_policy_name(NULL), "");
    assert_string_equal(pkgstore_policy_selector_text(NULL), "");
    assert_null(pkgstore_policy_selector(NULL));
    assert_int_equal(pkgstore_policy_priority(NULL), 0);
    assert_int_equal(pkgstore_policies_count(NULL), 0);
    assert_null(pkgstore_policies_at(NULL, 0));
    assert_null(pkgstore_policies_find(NULL, "p", NULL));
    assert_null(pkgstore_policies_find(set, NULL, NULL));
    pkgstore_policy_free(NULL);
    pkgstore_policies_free(NULL);

    /* names of verdicts and rollout states */
    assert_string_equal(pkgstore_verdict_name(PKGSTORE_VERDICT_OFFER), "offer");
    assert_string_equal(pkgstore_verdict_name(PKGSTORE_VERDICT_UNRESOLVED), "unresolved");
    assert_null(pkgstore_verdict_name((pkgstore_verdict)5));
    assert_null(pkgstore_verdict_name((pkgstore_verdict)-1));
    assert_string_equal(pkgstore_rollout_state_name(PKGSTORE_ROLLOUT_INCOMPATIBLE), "Incompatible");
    assert_null(pkgstore_rollout_state_name(PKGSTORE_ROLLOUT_COUNT));
    pkgstore_rollout_state st;
    assert_fails(pkgstore_rollout_state_parse(&st, "Pending"), PKGSTORE_EINVALID,
                 "status: 'Pending' is not one of");
    assert_int_equal(pkgstore_rollout_state_parse(&st, "Unknown"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_rollout_state_parse(NULL, "Verifying"), PKGSTORE_EINVALID);
    CHECK(pkgstore_rollout_state_parse(&st, "RollbackFailed"));
    assert_int_equal(st, PKGSTORE_ROLLOUT_ROLLBACK_FAILED);
    for (int s = PKGSTORE_ROLLOUT_DOWNLOADING; s <= PKGSTORE_ROLLOUT_ROLLBACK_FAILED; s++) {
        CHECK(pkgstore_rollout_state_parse(&st, pkgstore_rollout_state_name(s)));
        assert_int_equal(st, s);
    }
    pkgstore_policies_free(set);
    pkgstore_policy_free(policy);
}


/* ---------------------------------------------------------------- rollout strategies */

static pkgstore_rollout_amount amount(const char *text)
{
    pkgstore_rollout_amount a;
    CHECK(pkgstore_rollout_amount_parse(&a, text));
    return a;
}

static void test_policy__rollout_amounts_parse_and_format(void **state)
{
    (void)state;
    static const char *const round_trip[] = {"0", "1", "250", "5%", "0.5%", "0.25%", "100%", "12.3%"};
    for (size_t i = 0; i < sizeof(round_trip) / sizeof(*round_trip); i++) {
        char text[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE];
        pkgstore_rollout_amount a = amount(round_trip[i]);
        pkgstore_rollout_amount_format(text, &a);
        assert_string_equal(text, round_trip[i]);
    }
    assert_int_equal(amount("0.5%").value, 50);
    assert_int_equal(amount("0.5%").percent, 1);
    assert_int_equal(amount("7").value, 7);
    pkgstore_rollout_amount a;
    assert_fails(pkgstore_rollout_amount_parse(&a, "101%"), PKGSTORE_EINVALID, "more than 100%");
    assert_fails(pkgstore_rollout_amount_parse(&a, "1.5"), PKGSTORE_EINVALID, "whole number");
    assert_fails(pkgstore_rollout_amount_parse(&a, "0.125%"), PKGSTORE_EINVALID, "two decimals");
    assert_fails(pkgstore_rollout_amount_parse(&a, "5 %"), PKGSTORE_EINVALID, "not a count");
    assert_fails(pkgstore_rollout_amount_parse(&a, "-1"), PKGSTORE_EINVALID, "not a count");
    assert_fails(pkgstore_rollout_amount_parse(&a, ""), PKGSTORE_EINVALID, "empty");
    assert_fails(pkgstore_rollout_amount_parse(&a, "99999999999"), PKGSTORE_EINVALID, "more than");
}

static pkgstore_rollout_strategy strategy_of(const char *json)
{
    pkgstore_rollout_strategy s;
    CHECK(pkgstore_rollout_strategy_parse(&s, json, strlen(json)));
    return s;
}

static void test_policy__rollout_strategy_validation_names_the_member(void **state)
{
    (void)state;
    pkgstore_rollout_strategy s;
#define REFUSED(json, needle) \
    assert_fails(pkgstore_rollout_strategy_parse(&s, json, strlen(json)), PKGSTORE_EINVALID, needle)
    REFUSED("{\"batches\":[1,\"5%\"]}", "batches[1]: the last batch must be \"100%\"");
    REFUSED("{\"batches\":[\"5%\",\"5%\",\"100%\"]}", "batches[1]: 5% is not more than");
    REFUSED("{\"batches\":[3,2,\"100%\"]}", "batches[1]: 2 is not more than");
    REFUSED("{\"batches\":[0,\"100%\"]}", "batches[0]: a batch must admit more than 0");
    REFUSED("{\"batches\":[]}", "batches: not an array");
    REFUSED("{\"batches\":[true,\"100%\"]}", "batches[0]: not a count");
    REFUSED("{\"soak_s\":-1}", "soak_s: not a non-negative integer");
    REFUSED("{\"soak_s\":40000000}", "soak_s: 40000000 is more than");
    REFUSED("{\"max_failures\":\"x\"}", "max_failures: amount 'x'");
    REFUSED("{\"batch\":[1]}", "batch: unknown field");
    REFUSED("[1]", "strategy: not an object");
#undef REFUSED
    s = strategy_of("{\"batches\":[1,\"5%\",\"25%\",\"100%\"],\"soak_s\":60,"
                    "\"max_failures\":\"10%\",\"deadline_s\":600,\"max_parallel\":5}");
    assert_int_equal(s.nbatches, 4);
    assert_int_equal(s.soak_s, 60);
    assert_int_equal(s.has_max_failures, 1);
    char *text = NULL;
    CHECK(pkgstore_rollout_strategy_format(&text, &s));
    assert_string_equal(text, "{\"batches\":[1,\"5%\",\"25%\",\"100%\"],\"deadline_s\":600,"
                              "\"max_failures\":\"10%\",\"max_parallel\":5,\"soak_s\":60}");
    free(text);
    /* a single 100% batch is the default spelled out */
    s = strategy_of("{\"batches\":[\"100%\"]}");
    assert_int_equal(s.nbatches, 0);
    assert_int_equal(pkgstore_rollout_batch_count(&s), 1);
}

static void test_policy__rollout_batch_sizes_round_up_and_are_cumulative(void **state)
{
    (void)state;
    pkgstore_rollout_strategy s = strategy_of("{\"batches\":[1,\"5%\",\"25%\",\"100%\"]}");
    /* 6 nodes: 1, ceil(0.3)=1, ceil(1.5)=2, 6 */
    assert_int_equal(pkgstore_rollout_batch_size(&s, 0, 6), 1);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 1, 6), 1);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 2, 6), 2);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 3, 6), 6);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 9, 6), 6);
    /* 100000 nodes: 1, 5000, 25000, 100000 */
    assert_int_equal(pkgstore_rollout_batch_size(&s, 0, 100000), 1);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 1, 100000), 5000);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 2, 100000), 25000);
    /* 20001 nodes: 5% is 1000.05, rounded up */
    assert_int_equal(pkgstore_rollout_batch_size(&s, 1, 20001), 1001);
    /* an empty selector: every batch is empty */
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(pkgstore_rollout_batch_size(&s, k, 0), 0);
    /* a count larger than the fleet is capped; a count after a larger
     * percentage never shrinks the batch */
    s = strategy_of("{\"batches\":[\"50%\",3,\"100%\"]}");
    assert_int_equal(pkgstore_rollout_batch_size(&s, 0, 2), 1);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 1, 2), 2);
    assert_int_equal(pkgstore_rollout_batch_size(&s, 1, 100), 50);
    /* huge totals do not overflow */
    assert_true(pkgstore_rollout_batch_size(&s, 0, UINT64_MAX) == UINT64_MAX / 2 + 1);
    /* the default: one batch of everything */
    pkgstore_rollout_strategy d = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    assert_int_equal(pkgstore_rollout_batch_size(&d, 0, 7), 7);
}

static void test_policy__rollout_failures_allowed_round_down(void **state)
{
    (void)state;
    pkgstore_rollout_strategy s = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    assert_true(pkgstore_rollout_failures_allowed(&s, 10) == UINT64_MAX);
    s = strategy_of("{\"max_failures\":\"10%\"}");
    assert_int_equal(pkgstore_rollout_failures_allowed(&s, 6), 0);
    assert_int_equal(pkgstore_rollout_failures_allowed(&s, 19), 1);
    assert_int_equal(pkgstore_rollout_failures_allowed(&s, 100000), 10000);
    s = strategy_of("{\"max_failures\":2}");
    assert_int_equal(pkgstore_rollout_failures_allowed(&s, 6), 2);
    s = strategy_of("{\"max_failures\":0}");
    assert_int_equal(pkgstore_rollout_failures_allowed(&s, 6), 0);
}

static void test_policy__rollout_rank_is_stable_and_per_policy(void **state)
{
    (void)state;
    /* fixed values: the order must not change between releases */
    assert_true(pkgstore_rollout_rank("canary", "node-1") == pkgstore_rollout_rank("canary", "node-1"));
    assert_true(pkgstore_rollout_rank("canary", "node-1") != pkgstore_rollout_rank("canary", "node-2"));
    assert_true(pkgstore_rollout_rank("canary", "node-1") != pkgstore_rollout_rank("prod", "node-1"));
    /* "ab"+"c" and "a"+"bc" differ */
    assert_true(pkgstore_rollout_rank("ab", "c") != pkgstore_rollout_rank("a", "bc"));
    /* fair: about half of 10000 nodes fall below the middle of the range */
    unsigned int below = 0;
    for (int i = 0; i < 10000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "node-%d", i);
        below += pkgstore_rollout_rank("prod", id) < (UINT64_MAX / 2);
    }
    assert_in_range(below, 4700, 5300);
}

static void test_policy__rollout_strategy_is_stored_and_old_records_read(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = NULL, *stored = NULL;
    pkgstore_rollout_strategy s = strategy_of("{\"batches\":[1,\"50%\",\"100%\"],\"soak_s\":5,"
                                              "\"max_failures\":1}");
    CHECK(pkgstore_policy_new(&policy, "staged", "otelcol-contrib", "0.98.0"));
    CHECK(pkgstore_policy_set_strategy(policy, &s));
    s.nbatches = 2; /* last batch not 100% */
    assert_fails(pkgstore_policy_set_strategy(policy, &s), PKGSTORE_EINVALID, "batches[1]");
    CHECK(pkgstore_policy_put(NULL, f->reg, policy));
    pkgstore_policy_free(policy);
    CHECK(pkgstore_policy_get(&stored, f->reg, "staged"));
    const pkgstore_rollout_strategy *got = pkgstore_policy_strategy(stored);
    assert_int_equal(got->nbatches, 3);
    assert_int_equal(got->batches[1].value, 5000);
    assert_int_equal(got->soak_s, 5);
    assert_int_equal(got->has_max_failures, 1);
    assert_int_equal(got->max_failures.value, 1);
    assert_int_equal(pkgstore_policy_set_strategy(stored, NULL), PKGSTORE_EINVALID);
    pkgstore_policy_free(stored);

    /* a policy without a strategy stores no "strategy" member, and reads as
     * one batch of 100% */
    CHECK(pkgstore_policy_new(&policy, "plain", "otelcol-contrib", "0.98.0"));
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_int_equal(pkgstore_policy_strategy(stored)->nbatches, 0);
    assert_int_equal(pkgstore_rollout_batch_count(pkgstore_policy_strategy(stored)), 1);
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
}

/* ---------------------------------------------------------------- addon configurations */

static void test_policy__addon_config_validation_names_the_member(void **state)
{
    (void)state;
    pkgstore_policy *policy = NULL;
    CHECK(pkgstore_policy_new(&policy, "cfg", "log-sidecar", "1.0.0"));
#define CONFIG_REFUSED(json, needle)                                                            \
    assert_fails(pkgstore_policy_set_config(policy, json, strlen(json)), PKGSTORE_EINVALID, needle)
    CONFIG_REFUSED("[1]", "config: not a JSON object");
    CONFIG_REFUSED("{\"args\":\"--x\"}", "config.args: not an array of strings");
    CONFIG_REFUSED("{\"args\":[\"a\",2]}", "config.args[1]: not a string");
    CONFIG_REFUSED("{\"args\":[\"a\\u0000b\"]}", "config: line 1 column 19: \\u0000 is not allowed");
    CONFIG_REFUSED("{\"env\":[]}", "config.env: not an object of strings");
    CONFIG_REFUSED("{\"env\":{\"1X\":\"a\"}}", "config.env.1X: not a variable name");
    CONFIG_REFUSED("{\"env\":{\"A-B\":\"a\"}}", "config.env.A-B: not a variable name");
    CONFIG_REFUSED("{\"env\":{\"PKGSTORE_AGENT_CHILD\":\"x\"}}", "config.env.PKGSTORE_AGENT_CHILD: reserved");
    CONFIG_REFUSED("{\"env\":{\"A\":1}}", "config.env.A: not a string");
    CONFIG_REFUSED("{\"file\":true}", "config.file: not a string");
    CONFIG_REFUSED("{\"argz\":[]}", "config.argz: unknown member");
    CONFIG_REFUSED("{\"args\":[],\"args\":[]}", "config: line 1");
    /* the bounds: 64 arguments, 64 variables, 4096 bytes a string, 64 KiB a file */
    char *big = malloc(PKGSTORE_ADDON_CONFIG_FILE_MAX + 64);
    assert_non_null(big);
    strcpy(big, "{\"args\":[");
    for (int i = 0; i <= PKGSTORE_ADDON_CONFIG_ARGS_MAX; i++)
        strcat(big, i ? ",\"a\"" : "\"a\"");
    strcat(big, "]}");
    CONFIG_REFUSED(big, "config.args: 65 arguments, more than 64");
    strcpy(big, "{\"env\":{");
    for (int i = 0; i <= PKGSTORE_ADDON_CONFIG_ENV_MAX; i++)
        sprintf(big + strlen(big), "%s\"V%d\":\"x\"", i ? "," : "", i);
    strcat(big, "}}");
    CONFIG_REFUSED(big, "config.env: 65 variables, more than 64");
    strcpy(big, "{\"args\":[\"");
    memset(big + strlen(big), 'a', PKGSTORE_ADDON_CONFIG_STRING_MAX + 1);
    strcpy(big + 10 + PKGSTORE_ADDON_CONFIG_STRING_MAX + 1, "\"]}");
    CONFIG_REFUSED(big, "config.args[0]: 4097 bytes, more than 4096");
    strcpy(big, "{\"file\":\"");
    memset(big + 9, 'a', PKGSTORE_ADDON_CONFIG_FILE_MAX + 1);
    strcpy(big + 9 + PKGSTORE_ADDON_CONFIG_FILE_MAX + 1, "\"}");
    CONFIG_REFUSED(big, "config.file: 65537 bytes, more than 65536");
    /* exactly at the cap is fine */
    strcpy(big + 9 + PKGSTORE_ADDON_CONFIG_FILE_MAX, "\"}");
    CHECK(pkgstore_policy_set_config(policy, big, strlen(big)));
    free(big);
    /* a refusal leaves the policy as it was */
    CONFIG_REFUSED("{\"env\":{\"1X\":\"a\"}}", "config.env.1X");
    assert_non_null(pkgstore_policy_config(policy));
    /* NULL, null and {} remove it */
    CHECK(pkgstore_policy_set_config(policy, "{}", 2));
    assert_null(pkgstore_policy_config(policy));
    pkgstore_digest digest;
    assert_fails(pkgstore_policy_config_digest(&digest, policy), PKGSTORE_ENOTFOUND,
                 "no addon configuration");
    CHECK(pkgstore_policy_set_config(policy, "{\"args\":[]}", 11));
    CHECK(pkgstore_policy_set_config(policy, "null", 4));
    assert_null(pkgstore_policy_config(policy));
    CHECK(pkgstore_policy_set_config(policy, "{\"args\":[]}", 11));
    CHECK(pkgstore_policy_set_config(policy, NULL, 0));
    assert_null(pkgstore_policy_config(policy));
    pkgstore_policy_free(policy);
#undef CONFIG_REFUSED
}

static void test_policy__addon_config_is_canonical_with_its_digest(void **state)
{
    (void)state;
    pkgstore_policy *a = NULL, *b = NULL;
    const char *one = "{ \"file\": \"ports: [1]\\n\", \"env\": {\"B\": \"2\", \"A\": \"1\"},"
                      " \"args\": [\"--config\", \"{config_file}\"] }";
    const char *two = "{\"args\":[\"--config\",\"{config_file}\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},"
                      "\"file\":\"ports: [1]\\n\"}";
    CHECK(pkgstore_policy_new(&a, "a", "log-sidecar", "1.0.0"));
    CHECK(pkgstore_policy_new(&b, "b", "log-sidecar", "1.0.0"));
    CHECK(pkgstore_policy_set_config(a, one, strlen(one)));
    CHECK(pkgstore_policy_set_config(b, two, strlen(two)));
    /* sorted keys, compact: the same text, so the same digest */
    assert_string_equal(pkgstore_policy_config(a), two);
    assert_string_equal(pkgstore_policy_config(b), two);
    pkgstore_digest da, db, expected;
    CHECK(pkgstore_policy_config_digest(&da, a));
    CHECK(pkgstore_policy_config_digest(&db, b));
    CHECK(pkgstore_digest_buffer(&expected, two, strlen(two)));
    assert_true(pkgstore_digest_equal(&da, &db));
    assert_true(pkgstore_digest_equal(&da, &expected));
    /* another value, another digest */
    CHECK(pkgstore_policy_set_config(b, "{\"env\":{\"A\":\"1\"}}", 17));
    CHECK(pkgstore_policy_config_digest(&db, b));
    assert_false(pkgstore_digest_equal(&da, &db));
    pkgstore_policy_free(a);
    pkgstore_policy_free(b);
}

static void test_policy__addon_config_is_stored_and_refused_on_primaries(void **state)
{
    struct fixture *f = *state;
    pkgstore_policy *policy = NULL, *stored = NULL;
    const char *config = "{\"args\":[\"-v\"],\"file\":\"x: 1\\n\"}";
    pkgstore_digest before, after;

    CHECK(pkgstore_policy_new(&policy, "side", "log-sidecar", "1.0.0"));
    CHECK(pkgstore_policy_set_config(policy, config, strlen(config)));
    CHECK(pkgstore_policy_config_digest(&before, policy));
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    pkgstore_policy_free(policy);
    assert_string_equal(pkgstore_policy_config(stored), config);
    /* read-only once stored */
    assert_int_equal(pkgstore_policy_set_config(stored, NULL, 0), PKGSTORE_EINVALID);
    pkgstore_policy_free(stored);
    CHECK(pkgstore_policy_get(&stored, f->reg, "side"));
    CHECK(pkgstore_policy_config_digest(&after, stored));
    assert_true(pkgstore_digest_equal(&before, &after));
    pkgstore_policy_free(stored);
    /* it survives a set, and a retry keeps it */
    CHECK(pkgstore_policy_retry(&stored, f->reg, "side"));
    assert_string_equal(pkgstore_policy_config(stored), config);
    pkgstore_policy_free(stored);
    pkgstore_policies *set = NULL;
    CHECK(pkgstore_policies_load(&set, f->reg));
    assert_string_equal(pkgstore_policy_config(pkgstore_policies_find(set, "side", NULL)), config);
    pkgstore_policies_free(set);

    /* a primary package's policy: refused when the type is given, and by
     * put when it comes from the package */
    CHECK(pkgstore_policy_new(&policy, "col", "otelcol-contrib", "0.98.0"));
    CHECK(pkgstore_policy_set_type(policy, PKGSTORE_TYPE_PRIMARY));
    assert_fails(pkgstore_policy_set_config(policy, config, strlen(config)), PKGSTORE_EINVALID,
                 "config: policy col is for a primary package");
    pkgstore_policy_free(policy);
    CHECK(pkgstore_policy_new(&policy, "col", "otelcol-contrib", "0.98.0"));
    CHECK(pkgstore_policy_set_config(policy, config, strlen(config)));
    assert_fails(pkgstore_policy_put(NULL, f->reg, policy), PKGSTORE_EINVALID,
                 "config: otelcol-contrib 0.98.0 is a primary package");
    pkgstore_policy_free(policy);
    assert_int_equal(pkgstore_policy_get(&stored, f->reg, "col"), PKGSTORE_ENOTFOUND);

    /* a record without "config" has none; a policy without one stores none */
    CHECK(pkgstore_policy_new(&policy, "plain", "log-sidecar", "1.0.0"));
    CHECK(pkgstore_policy_put(&stored, f->reg, policy));
    assert_null(pkgstore_policy_config(stored));
    pkgstore_policy_free(stored);
    pkgstore_policy_free(policy);
    plant(f, "old", "{\"name\":\"old\",\"package\":\"log-sidecar\",\"version\":\"1.0.0\","
                    "\"selector\":\"\",\"type\":\"addon\",\"priority\":0,\"created\":1,"
                    "\"updated\":1}");
    CHECK(pkgstore_policy_get(&stored, f->reg, "old"));
    assert_null(pkgstore_policy_config(stored));
    pkgstore_policy_free(stored);
    /* a record whose config is not one is corrupt, and says why */
    plant(f, "old", "{\"name\":\"old\",\"package\":\"log-sidecar\",\"version\":\"1.0.0\","
                    "\"selector\":\"\",\"type\":\"addon\",\"priority\":0,"
                    "\"config\":{\"env\":{\"1X\":\"a\"}}}");
    assert_fails(pkgstore_policy_get(&stored, f->reg, "old"), PKGSTORE_ECORRUPT, "config.env.1X");
    CHECK(pkgstore_policy_delete(f->reg, "old"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_policy__new_validates_its_fields),
        T(test_policy__selector_is_canonical_and_errors_name_a_position),
        T(test_policy__priority_and_type_are_checked),
        T(test_policy__stored_policies_are_read_only),
        T(test_policy__put_get_delete_round_trip),
        T(test_policy__retry_generation_is_kept_and_raised),
        T(test_policy__type_comes_from_the_package),
        T(test_policy__put_needs_the_package_version),
        T(test_policy__referenced_versions_cannot_be_removed),
        T(test_policy__sets_rank_by_priority_then_name),
        T(test_policy__sets_go_stale_on_changes_by_other_handles),
        T(test_policy__corrupt_records_are_named),
        T(test_policy__evaluate_priority_and_tie_break),
        T(test_policy__evaluate_one_primary_slot_and_one_per_addon),
        T(test_policy__evaluate_current_when_the_node_runs_the_digest),
        T(test_policy__evaluate_incompatible_and_compatible_fallbacks),
        T(test_policy__evaluate_unmet_dependency_until_the_node_meets_it),
        T(test_policy__evaluate_unresolved_keeps_the_lookup_error),
        T(test_policy__evaluate_refuses_a_small_capacity),
        T(test_policy__misuse_is_refused),
        T(test_policy__rollout_amounts_parse_and_format),
        T(test_policy__rollout_strategy_validation_names_the_member),
        T(test_policy__rollout_batch_sizes_round_up_and_are_cumulative),
        T(test_policy__rollout_failures_allowed_round_down),
        T(test_policy__rollout_rank_is_stable_and_per_policy),
        T(test_policy__rollout_strategy_is_stored_and_old_records_read),
        T(test_policy__addon_config_validation_names_the_member),
        T(test_policy__addon_config_is_canonical_with_its_digest),
        T(test_policy__addon_config_is_stored_and_refused_on_primaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
